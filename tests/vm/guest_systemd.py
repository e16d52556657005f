"""Runs inside the VM with systemd as PID 1: the Ansible role's deploy playbook and the
shipped unit under a real service manager.

``python -m tests.vm.guest_systemd REPO WHEELS``: REPO is the repository (its ansible/
tree, read-only), WHEELS a directory of wheels (wg-tuner and its dependencies) that pip
installs from, since the VM has no network. One JSON report, one test per check, as in
guest_lab.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.vm.guest_kernel import REPORT, check
from tests.vm.guest_lab import wait_for

REPO = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
WHEELS = sys.argv[2] if len(sys.argv) > 2 else "/nonexistent"
ANSIBLE = Path(sys.executable).parent / "ansible-playbook"
RECAP = r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=0\s+failed=0"


def show(unit: str, *props: str) -> dict[str, str]:
    out = subprocess.run(
        ["systemctl", "show", unit, *(f"--property={p}" for p in props)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal(unit: str) -> str:
    """The unit's status and last journal lines, for a failure's message."""
    status = subprocess.run(
        ["systemctl", "status", "--no-pager", "-l", unit],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = subprocess.run(
        ["journalctl", "-u", unit, "--no-pager", "-n", "40", "-o", "cat"],
        capture_output=True,
        text=True,
        check=False,
    )
    return status.stdout + lines.stdout


def deploy() -> dict[str, Any]:
    """ansible-playbook deploy.yml against this machine; returns the recap's counts."""
    variables = {
        "wg_tuner_hosts": "localhost",
        "wg_tuner_package": "wg-tuner",
        "wg_tuner_pip_extra_args": f"--no-index --find-links {WHEELS}",
        "wg_tuner_interval": 1,
        "ansible_python_interpreter": "/usr/bin/python3",  # apt needs the system's python3-apt
    }
    began = time.monotonic()
    # ansible-core from the venv, imported with its site (not from our bundle).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"ANSIBLE_CONFIG": str(REPO / "ansible/ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(ANSIBLE), "-i", "localhost,", "-c", "local",
         str(REPO / "ansible/playbooks/deploy.yml"), "-e", json.dumps(variables)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # to stderr as it comes: the run's log, read live on the host
        lines.append(line)
        sys.stderr.write(f"{time.monotonic() - began:7.1f} {line}")
        sys.stderr.flush()
    proc.wait(timeout=60)
    out = "".join(lines)
    assert proc.returncode == 0, out[-3000:] + journal("wg-tuner")
    recap = re.search(RECAP, out)
    assert recap, out[-3000:]
    return {"ok": int(recap[1]), "changed": int(recap[2]), "seconds": time.monotonic() - began}


def main() -> int:
    @check("systemd_is_pid1")
    def pid1() -> dict[str, Any]:
        comm = Path("/proc/1/comm").read_text().strip()
        assert comm == "systemd" and Path("/run/systemd/system").is_dir(), comm
        return {"uptime": float(Path("/proc/uptime").read_text().split()[0])}

    @check("deploy_playbook_installs_enables_and_starts")
    def first() -> dict[str, Any]:
        # No network here: the apt cache counts as fresh and pip installs from WHEELS.
        stamp = Path("/var/lib/apt/periodic/update-success-stamp")
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
        result = deploy()
        enabled = subprocess.run(
            ["systemctl", "is-enabled", "wg-tuner"], capture_output=True, text=True, check=False
        ).stdout.strip()
        wait_for(
            "wg-tuner active",
            lambda: show("wg-tuner", "ActiveState")["ActiveState"] in ("active", "failed"),
            120,
        )
        state = show("wg-tuner", "ActiveState", "SubState", "Type", "NotifyAccess", "StatusText")
        assert (enabled, state["ActiveState"]) == ("enabled", "active"), journal("wg-tuner")
        return {**result, "enabled": enabled, **state}

    def deployed() -> None:
        assert REPORT["deploy_playbook_installs_enables_and_starts"]["ok"], "no deployed unit"

    @check("the_watchdog_is_fed")
    def watchdog() -> dict[str, Any]:
        deployed()
        props = ("WatchdogUSec", "WatchdogTimestampMonotonic", "NRestarts", "ActiveState")
        before = show("wg-tuner", *props)
        time.sleep(6)
        after = show("wg-tuner", *props)
        fed = int(after["WatchdogTimestampMonotonic"]) - int(before["WatchdogTimestampMonotonic"])
        assert fed > 0 and after["NRestarts"] == "0" and after["ActiveState"] == "active", after
        return {"watchdog_usec": after["WatchdogUSec"], "fed_within_us": fed}

    @check("second_deploy_changes_nothing")
    def second() -> dict[str, Any]:
        deployed()
        result = deploy()
        assert result["changed"] == 0, result
        return result

    print(json.dumps(REPORT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
