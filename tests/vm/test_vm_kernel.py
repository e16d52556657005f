"""Kernel WireGuard, real IRQs and the initial namespace's sysctls, for real, in a VM.

One boot of Debian's stock kernel (QEMU, software emulation, a 2-queue virtio-net NIC)
runs every check of ``guest_kernel.py`` in one Python process; each test here asserts one
of them. A missing kernel, QEMU or virtme-ng fails the module, never skips it.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest

from tests.conftest import REPO, require_privileges
from tests.reliability import FigureFn
from tuner.engine.health import SPREAD_MIN
from tuner.lab.vm import Vm

# The VM's own limits (tuner.lab.vm: a stall, a cap scaled by the load) decide; this is
# only the backstop.
pytestmark = [pytest.mark.vm, pytest.mark.timeout(7200)]


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    require_privileges()
    vm = Vm(
        queues=2,
        disk_queues=2,
        host_sender=True,
        bundle_extra=((REPO, "tests/__init__.py"), (REPO, "tests/vm")),
    )
    result = vm.run(
        [sys.executable, "-S", "-m", "tests.vm.guest_kernel", str(REPO / "policies")],
        env=only_env(),
    )
    assert result.rc == 0, result.stderr[-3000:] or result.console[-3000:]
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    data["_vm"] = {"seconds": round(result.seconds, 1)}
    return data


def only_env() -> dict[str, str] | None:
    """WGT_VM_ONLY passed on to the guest (a developer's shortcut, see guest_kernel)."""
    only = os.environ.get("WGT_VM_ONLY")
    return {"WGT_VM_ONLY": only} if only else None


def passed(report: dict[str, Any], name: str) -> dict[str, Any]:
    entry = report[name]
    assert entry["ok"], entry.get("trace") or entry
    return entry


def test_status_matches_wg_show_dump_field_by_field(report: dict[str, Any]) -> None:
    entry = passed(report, "status_matches_wg_show_dump")
    assert entry["peers"] == 3


def test_kernel_wireguards_own_sockets_are_found_by_listen_port(report: dict[str, Any]) -> None:
    """Kernel WireGuard's sockets are kernel UDP sockets in the namespace it was made in:
    sock_diag sees both families on its listen port, with their buffers."""
    sock = passed(report, "status_matches_wg_show_dump")["socket"]
    assert sock is not None and sock["sockets"] == 2, sock
    assert sock["rcvbuf"] > 0 and sock["sndbuf"] > 0 and sock["drops"] == 0, sock


def test_metrics_carry_every_peer_and_no_secret(report: dict[str, Any]) -> None:
    assert passed(report, "metrics_match_and_carry_no_secret")["peer_series"] == 3


def test_keepalive_through_generic_netlink_is_exact_and_never_creates_a_peer(
    report: dict[str, Any],
) -> None:
    entry = passed(report, "keepalive_through_genetlink")
    assert entry["peers_before"] == entry["peers_after"] == 3


def test_mtu_through_netlink_on_kernel_wireguard(report: dict[str, Any]) -> None:
    assert passed(report, "mtu_through_netlink")["set"] == 1380


def test_initial_namespace_sysctls_change_and_restore_exactly(
    report: dict[str, Any], figure: FigureFn
) -> None:
    entry = passed(report, "initial_namespace_sysctls")
    keys = entry["changed_and_restored"]
    assert {"net.core.rmem_max", "net.core.netdev_max_backlog"} <= set(keys)
    figure(
        "Kernel (VM)",
        "initial-namespace sysctls changed through the actuator and restored exactly "
        "(Debian's kernel in a VM)",
        len(keys),
        "of 5",
    )


def test_irq_affinity_and_rps_on_real_virtio_queues(
    report: dict[str, Any], figure: FigureFn
) -> None:
    entry = passed(report, "irq_affinity_and_rps_on_virtio_queues")
    assert len(entry["irqs"]) >= 4
    figure(
        "Kernel (VM)",
        "virtio-net queue IRQs moved and restored exactly, plus one RPS mask; VM boot and "
        "all kernel checks",
        len(entry["irqs"]),
        f"IRQs in {report['_vm']['seconds']} s",
    )


def test_a_kernel_managed_irq_refuses_and_is_held_as_not_revertible(
    report: dict[str, Any],
) -> None:
    refused = passed(report, "managed_irq_refuses_and_is_not_revertible")["refused"]
    assert len(refused) >= 2  # one per request queue
    assert all("rejects writes" in why for why in refused.values()), refused


def test_offloads_on_the_real_virtio_net_driver(report: dict[str, Any], figure: FigureFn) -> None:
    """GRO, UDP GRO forwarding and GSO on virtio-net set and reverted exactly (read back
    with the ethtool binary); a feature the driver fixes is refused, nothing changed."""
    entry = passed(report, "offloads_on_virtio_net")
    assert len(entry["toggled"]) == 3 and entry["refused"], entry
    figure(
        "Kernel (VM)",
        "NIC offloads on Debian's virtio-net driver (VM): changeable features set and "
        "reverted through ethtool netlink; a fixed one",
        f"{len(entry['toggled'])} set and reverted exactly; {entry['refused']} refused, "
        "nothing changed",
    )


def test_offload_errors_turn_the_feature_off_on_virtio_net(
    report: dict[str, Any], figure: FigureFn
) -> None:
    """UDP GRO forwarding turned on by hand under a driver that breaks its aggregates:
    checksum errors rise, offload-errors turns that one feature off (verified by the
    errors stopping)."""
    entry = passed(report, "offload_errors_turn_the_feature_off")
    clean, broken, stopped = entry["errors_per_s"]
    assert clean == 0 and broken > 1 and stopped == 0, entry
    assert entry["target"].endswith("/rx-udp-gro-forwarding"), entry
    figure(
        "Kernel (VM)",
        "virtio-net, UDP GRO forwarding turned on by hand, aggregates corrupted (nft), "
        "one-flow UDP flood from outside -> apply; checksum errors/s before, with the "
        "feature on, after",
        f"{clean:.0f} -> {broken:.0f} -> {stopped:.0f}; offload-errors turned "
        f"rx-udp-gro-forwarding off, verified ({entry['verified']})",
    )


def test_a_softirq_hotspot_is_spread_over_the_queue_irqs_until_softirq_moves(
    report: dict[str, Any], figure: FigureFn
) -> None:
    """Traffic from outside the VM, every queue IRQ on CPU 0: softirq-irq-spread gives
    queue 1's IRQs to CPU 1, verified by softirq time moving there; the same flood is
    then worked on by both cores (softirq time, packets, interrupts), and rollback
    restores every mask."""
    entry = passed(report, "softirq_hotspot_spread_over_the_queue_irqs")
    before, after = entry["before"], entry["after"]
    assert before["softirq"][0] > 0.8 and before["softirq"][1] < 0.1, before
    # The same share softirq_spreads asks of the verification window (runs measured
    # 0.73 / 0.27 and 0.87 / 0.21 with 40 % of the packets on CPU 1: the less busy
    # core works in short bursts, which tick accounting undercounts).
    assert after["softirq"][1] / sum(after["softirq"]) >= SPREAD_MIN, after
    assert after["processed"][1] > 0, after
    assert after["interrupts"][1] > 0 and before["interrupts"][1] == 0, (before, after)
    assert set(entry["spread"].values()) == {"0", "1"} and entry["restored"] == entry["stacked"]
    assert "softirq_spreads" in entry["checks"]
    figure(
        "Kernel (VM)",
        "UDP flood from outside the VM (256 flows) into a 2-queue virtio-net NIC, every "
        "queue IRQ on CPU 0 -> softirq-irq-spread; softirq share of [CPU 0, CPU 1] and "
        "packets processed in 3 s, before -> after; rollback restores the masks",
        f"{before['softirq']} -> {after['softirq']}; "
        f"{sum(before['processed'])} -> {sum(after['processed'])} packets",
    )


def test_irq_counts_follow_the_affinity_under_load(
    report: dict[str, Any], figure: FigureFn
) -> None:
    """A ping flood's receive interrupts land on the CPU the actuator's mask names, on
    one CPU and then the other; the exact prior masks come back."""
    entry = passed(report, "irq_counts_follow_the_affinity_under_load")
    figure(
        "Kernel (VM)",
        "virtio-net input queue IRQs moved to CPU 1, then CPU 0, under a ping flood (VM) "
        "-> interrupts counted on [CPU 0, CPU 1]",
        f"{entry['to_cpu1']} then {entry['to_cpu0']}; prior masks restored",
    )
