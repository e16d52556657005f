"""The wg_tuner role in a throwaway root (no systemd as PID 1 here), and ansible-lint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, WG_TUNER
from tuner import __version__

BIN = Path(sys.executable).parent
POLICY = """
- hosts: localhost
  gather_facts: false
  roles:
    - role: wg_tuner
      vars:
        wg_tuner_root: "{root}"
        wg_tuner_install_packages: false
        wg_tuner_install_package: false
        wg_tuner_manage_service: false
        wg_tuner_mode: enforce
        wg_tuner_policies:
          site-keepalive:
            apiVersion: wg-tuner/v1
            kind: Policy
            metadata:
              name: site-keepalive
              summary: Keepalive for the branch offices
              why: Branch routers forget UDP mappings after 30 s.
            spec:
              scope: peer
              when:
                all:
                  - metric: peer.endpoint_changed
                    op: "=="
                    value: 1
              action:
                kind: keepalive
                set: 25
"""


def run(root: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    play = tmp / "play.yml"
    play.write_text(POLICY.replace("{root}", str(root)))
    return run_play(tmp)


def run_play(tmp: Path) -> subprocess.CompletedProcess[str]:
    play = tmp / "play.yml"
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible" / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(REPO / "ansible" / "roles"),
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
    )
    return subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            str(play),
            "-e",
            f"ansible_python_interpreter={sys.executable}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_role_lays_down_policies_and_unit_idempotently(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = run(root, tmp_path)
    assert first.returncode == 0, first.stdout[-3000:]
    policy = root / "etc/wg-tuner/policies/site-keepalive.yaml"
    unit = root / "etc/systemd/system/wg-tuner.service"
    assert policy.exists() and unit.exists()
    assert '--mode "enforce"' in unit.read_text() and "Type=notify" in unit.read_text()
    assert (root / "var/lib/prometheus/node-exporter").is_dir()
    valid = subprocess.run(
        [WG_TUNER, "validate", str(policy.parent)], capture_output=True, text=True, check=False
    )
    assert valid.returncode == 0, valid.stdout
    second = run(root, tmp_path)
    assert "changed=0" in second.stdout, second.stdout[-2000:]


def test_socket_resizing_is_opt_in_and_opens_exactly_what_it_needs(tmp_path: Path) -> None:
    """By default the unit cannot ptrace (udp-socket-grow is refused and reported); the
    opt-in adds CAP_SYS_PTRACE and the one system call, pidfd_getfd, and nothing else."""
    units = {}
    for opt_in in (False, True):
        root = tmp_path / f"root-{opt_in}"
        mode = "        wg_tuner_mode: enforce\n"
        play = POLICY.replace(mode, f"{mode}        wg_tuner_resize_wireguard_sockets: {opt_in}\n")
        (tmp_path / "play.yml").write_text(play.replace("{root}", str(root)))
        done = run_play(tmp_path)
        assert done.returncode == 0, done.stdout[-3000:]
        units[opt_in] = (root / "etc/systemd/system/wg-tuner.service").read_text()
    assert "CAP_SYS_PTRACE" not in units[False] and "pidfd_getfd" not in units[False]
    added = set(units[True].splitlines()) - set(units[False].splitlines())
    settings = {line for line in added if line and not line.startswith("#")}
    assert settings == {
        "CapabilityBoundingSet=CAP_SYS_PTRACE",
        "AmbientCapabilities=CAP_SYS_PTRACE",
        "SystemCallFilter=pidfd_getfd",
    }, settings
    # The allow-list comes after the @debug denial, so it wins for that one call.
    lines = units[True].splitlines()
    assert lines.index("SystemCallFilter=pidfd_getfd") > max(
        i for i, line in enumerate(lines) if line.startswith("SystemCallFilter=~")
    )


def test_ansible_lint_passes() -> None:
    proc = subprocess.run(
        [str(BIN / "ansible-lint"), "--offline"],
        cwd=REPO / "ansible",
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_the_role_pins_the_version_it_installs() -> None:
    defaults = yaml.safe_load((REPO / "ansible/roles/wg_tuner/defaults/main.yml").read_text())
    assert defaults["wg_tuner_version"] == __version__
    tasks = (REPO / "ansible/roles/wg_tuner/tasks/main.yml").read_text()
    assert "'==' ~ wg_tuner_version" in tasks


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("wg_tuner_interval", "10 --mode enforce"),
        ("wg_tuner_metrics_listen", "127.0.0.1:1 --textfile /etc/shadow"),
        ("wg_tuner_textfile_dir", "/var/lib/x\nExecStartPre=/bin/sh"),
        ("wg_tuner_mode", "enforce --policies /tmp"),
    ],
)
def test_the_role_refuses_a_value_that_would_change_the_unit(
    tmp_path: Path, variable: str, value: str
) -> None:
    root = tmp_path / "root"
    mode = "        wg_tuner_mode: enforce\n"
    extra = f"        {variable}: {json.dumps(value)}\n"
    play = POLICY.replace(mode, extra if variable == "wg_tuner_mode" else mode + extra)
    (tmp_path / "play.yml").write_text(play.replace("{root}", str(root)))
    done = run_play(tmp_path)
    assert done.returncode != 0
    assert "wg_tuner_mode must be observe or enforce" in done.stdout
    assert not (root / "etc/systemd/system/wg-tuner.service").exists()
