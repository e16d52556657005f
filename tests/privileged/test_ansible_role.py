"""The wg_tuner role in a throwaway root (no systemd as PID 1 here), and ansible-lint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, WG_TUNER

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
    assert "--mode enforce" in unit.read_text() and "Type=notify" in unit.read_text()
    assert (root / "var/lib/prometheus/node-exporter").is_dir()
    valid = subprocess.run(
        [WG_TUNER, "validate", str(policy.parent)], capture_output=True, text=True, check=False
    )
    assert valid.returncode == 0, valid.stdout
    second = run(root, tmp_path)
    assert "changed=0" in second.stdout, second.stdout[-2000:]


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
