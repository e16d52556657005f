"""systemd as PID 1, for real, in a VM: commit-confirmed's transient timers, the deploy
playbook and the shipped unit.

One boot runs ``guest_systemd.py`` with this machine's systemd as the guest's init. The
playbook installs wg-tuner with pip from a wheelhouse built here (the VM has no network).
A missing kernel, QEMU, virtme-ng or wheel fails the module, never skips it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, require_privileges
from tests.reliability import FigureFn
from tests.vm.test_vm_kernel import only_env, passed
from tuner.lab.vm import Vm

# One boot runs the playbook twice under emulation (each about 7 minutes).
# The VM's own limits (tuner.lab.vm: a stall, a cap scaled by the load) decide; this is
# only the backstop.
pytestmark = [pytest.mark.vm, pytest.mark.timeout(7200)]

WHEEL_CACHE = Path("/var/cache/wg-tuner/wheels")


def wheelhouse(into: Path) -> Path:
    """wg-tuner's wheel (built now, from this tree) beside its dependencies' wheels
    (cached between runs)."""
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "-q", "wheel", "--wheel-dir"]
    subprocess.run([*pip, str(into), "--no-deps", str(REPO)], check=True, timeout=600)
    (wheel,) = into.glob("wg_tuner-*.whl")
    subprocess.run(
        [*pip, str(WHEEL_CACHE), "--find-links", str(WHEEL_CACHE), str(wheel)],
        check=True,
        timeout=600,
    )
    for dep in WHEEL_CACHE.glob("*.whl"):
        if not dep.name.startswith("wg_tuner-"):
            (into / dep.name).write_bytes(dep.read_bytes())
    return into


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    require_privileges()
    with tempfile.TemporaryDirectory(prefix="wg-tuner-wheels-", dir="/var/tmp") as tmp:
        wheels = wheelhouse(Path(tmp))
        vm = Vm(
            queues=0,
            systemd=True,
            timeout=1700,
            expose=(REPO, wheels),
            bundle_extra=((REPO, "tests/__init__.py"), (REPO, "tests/vm")),
        )
        result = vm.run(
            [sys.executable, "-S", "-m", "tests.vm.guest_systemd", str(REPO), str(wheels)],
            env=only_env(),
        )
    assert result.rc == 0, result.stderr[-3000:] or result.console[-3000:]
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    data["_vm"] = {"seconds": round(result.seconds, 1)}
    return data


def test_systemd_is_the_guests_init(report: dict[str, Any]) -> None:
    passed(report, "systemd_is_pid1")


def test_a_transient_timer_reverts_a_killed_apply(report: dict[str, Any], figure: FigureFn) -> None:
    entry = passed(report, "a_transient_timer_reverts_a_killed_apply")
    assert entry["guard"] == "systemd"
    # No wg-tuner command is started after the kill: the timer's unit reverts. The lab on
    # this machine holds guards to 5 s; under emulation beside the suite a Python step
    # costs seconds more (as for the process guard in test_vm_lab.py).
    assert -1.0 < entry["late"] < 15.0, entry
    figure(
        "Kernel (VM)",
        "apply killed (-9) during a window, systemd as PID 1 -> seconds from the deadline "
        "to the transient timer's revert (the guard starts 15 s early and waits)",
        entry["late"],
        "s",
    )


def test_a_verified_apply_cancels_its_timer(report: dict[str, Any]) -> None:
    assert passed(report, "a_verified_apply_cancels_its_timer")["states"][-1] == "verified"


def test_the_deploy_playbook_installs_enables_and_starts_the_unit(report: dict[str, Any]) -> None:
    entry = passed(report, "deploy_playbook_installs_enables_and_starts")
    assert entry["changed"] > 0 and entry["enabled"] == "enabled"
    # Type=notify: systemd calls it active only once wg-tuner has sent READY=1.
    assert (entry["Type"], entry["ActiveState"], entry["SubState"]) == (
        "notify",
        "active",
        "running",
    )


def test_the_watchdog_is_fed(report: dict[str, Any]) -> None:
    entry = passed(report, "the_watchdog_is_fed")
    assert entry["fed_within_us"] > 0


def test_the_deployed_daemon_reads_the_kernel_log(report: dict[str, Any]) -> None:
    assert passed(report, "the_deployed_daemon_reads_the_kernel_log")["series"] >= 5


def test_the_deployed_daemon_counts_wireguard_gos_journal(
    report: dict[str, Any], figure: FigureFn
) -> None:
    """wireguard-go under a unit of its own logs to the real journald; the deployed
    daemon (its sandbox, journalctl from a cursor) counts the retries."""
    entry = passed(report, "the_deployed_daemon_counts_wireguard_gos_journal")
    assert entry["handshake_retry"] >= 1, entry
    figure(
        "Kernel (VM)",
        "wireguard-go (LOG_LEVEL=verbose) under its own unit with a peer nobody answers "
        "(systemd VM, real journald) -> the deployed daemon's journal counters",
        f"handshake_retry {entry['handshake_retry']:.0f}, send_error "
        f"{entry['send_error']:.0f} ({entry['journal_lines']} wireguard-go lines)",
    )


def test_the_units_sandbox_lets_the_socket_resize_happen_only_when_opted_in(
    report: dict[str, Any],
) -> None:
    entry = passed(report, "the_units_sandbox_lets_udp_socket_grow_resize_only_when_opted_in")
    assert entry["opted_in"]["grown"] == "7340032"
    assert entry["opted_in"]["restored"] == entry["opted_in"]["prior"]
    assert "CAP_SYS_PTRACE" in entry["default"]["check"]


def test_a_second_deploy_changes_nothing(report: dict[str, Any]) -> None:
    assert passed(report, "second_deploy_changes_nothing")["changed"] == 0
