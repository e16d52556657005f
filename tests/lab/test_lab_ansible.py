"""The wg_tuner Ansible module with real ansible-core, run inside a lab host's namespace."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, WG_TUNER
from tests.helpers.labkeys import lab_secrets
from tests.hoststate import capture
from tests.reliability import FigureFn
from tests.schemas import validate_items
from tuner.lab.lab import Lab

BIN = Path(sys.executable).parent


def playbook(lab: Lab, state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        ANSIBLE_LIBRARY=str(REPO / "ansible" / "library"),
        ANSIBLE_CONFIG=str(REPO / "ansible" / "ansible.cfg"),
        ANSIBLE_LOCAL_TEMP=str(state / "ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
    )
    argv = [
        "ip",
        "netns",
        "exec",
        lab.topo.a.netns,
        str(BIN / "ansible-playbook"),
        "-i",
        "localhost,",
        "-c",
        "local",
        str(REPO / "ansible" / "playbooks" / "tune.yml"),
        "-e",
        "wg_tuner_hosts=localhost",
        "-e",
        "ansible_become=false",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        "-e",
        f"wg_tuner_executable={WG_TUNER}",
        "-e",
        f"wg_tuner_state_dir={state}",
        "-e",
        "wg_tuner_verify_window=4",
        "-e",
        "wg_tuner_settle=0.5",
        "-e",
        "wg_tuner_grace=2",
        *extra,
    ]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)


def recap(out: str) -> dict[str, int]:
    m = re.search(
        r"localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out
    )
    assert m, out[-2000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups()), strict=True))


@pytest.fixture
def blackhole(lab: Lab):  # type: ignore[no-untyped-def]
    lab.fault("mtu-blackhole", True, mtu=1400)
    try:
        yield lab
    finally:
        lab.fault("mtu-blackhole", False)
        subprocess.run(
            ["ip", "-n", lab.topo.a.netns, "link", "set", lab.topo.a.wg, "mtu", "1420"], check=False
        )


def test_check_diff_then_apply_then_nothing(
    blackhole: Lab, tmp_path: Path, figure: FigureFn
) -> None:
    lab = blackhole
    a = lab.topo.a
    before = capture(a.netns, a.wg)
    check = playbook(lab, tmp_path, "--check", "--diff")
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-2000:]
    assert recap(check.stdout)["changed"] == 1
    assert re.search(rf"-mtu {re.escape(a.wg)}: ['\"]?1420", check.stdout), check.stdout
    assert re.search(rf"\+mtu {re.escape(a.wg)}: ['\"]?1340", check.stdout), check.stdout
    assert capture(a.netns, a.wg) == before  # check mode changed nothing
    real = playbook(lab, tmp_path, "--diff")
    assert real.returncode == 0, real.stdout[-3000:]
    assert recap(real.stdout)["changed"] == 1
    bulk = lab.traffic(2.0)
    assert bulk["ok"] and bulk["bytes"] > 1_000_000, bulk
    again = playbook(lab, tmp_path)
    assert again.returncode == 0
    assert recap(again.stdout)["changed"] == 0
    keys = lab_secrets(lab)
    results = "\n".join(p.stdout + p.stderr for p in (check, real, again))
    leaked = [k for k in keys if k in results]
    figure(
        "Security",
        f"{len(keys)} lab keys searched in Ansible results (check/diff, apply, rerun) -> matches",
        len(leaked),
    )
    assert leaked == []
    undo = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            a.netns,
            WG_TUNER,
            "rollback",
            "--all",
            "--state-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert undo.returncode == 0, undo.stderr


def test_module_result_is_json_with_changes(blackhole: Lab, tmp_path: Path) -> None:
    lab = blackhole
    env = dict(os.environ, ANSIBLE_LIBRARY=str(REPO / "ansible" / "library"))
    args = json.dumps({"executable": WG_TUNER, "state_dir": str(tmp_path)})
    proc = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            lab.topo.a.netns,
            str(BIN / "ansible"),
            "localhost",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-m",
            "wg_tuner",
            "-a",
            args,
            "--check",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    body = proc.stdout[proc.stdout.index("{") :]
    result = json.loads(body)
    assert result["changed"] is True
    assert result["msg"] == "1 change(s) would be applied"
    assert [c["kind"] for c in result["changes"]] == ["mtu"]
    validate_items("change", result["changes"], "plan")  # the module returns the schema's
    validate_items("finding", result["findings"], "plan")
