"""NIC offloads on a forwarding host, on real veths: wg-tuner turns GRO and then UDP GRO
forwarding on for host a's underlay, verifies both, and rolls them back exactly.

Host a is made a forwarding host for the test (net.ipv4.ip_forward in its namespace) and
put back after; the features are checked with the ethtool binary, not wg-tuner's own
netlink path.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import cli
from tests.lab.test_lab_apply import FAST
from tests.reliability import FigureFn
from tuner.lab.lab import Lab


def ethtool_k(lab: Lab) -> dict[str, str]:
    a = lab.topo.a
    out = subprocess.run(
        ["ip", "netns", "exec", a.netns, "ethtool", "-k", a.veth],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pairs = (line.split(":", 1) for line in out.splitlines()[1:] if ":" in line)
    return {k.strip(): v.split()[0] for k, v in pairs}


@contextmanager
def forwarding(lab: Lab) -> Iterator[None]:
    a = lab.topo.a
    key = "net.ipv4.ip_forward"
    argv = ["ip", "netns", "exec", a.netns, "sysctl", "-q", "-w"]
    subprocess.run([*argv, f"{key}=1"], check=True)
    try:
        yield
    finally:
        subprocess.run([*argv, f"{key}=0"], check=True)
        feats = ["ip", "netns", "exec", a.netns, "ethtool", "-K", a.veth]
        subprocess.run([*feats, "rx-udp-gro-forwarding", "off", "gro", "off"], check=False)


def offload_changes(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [c for c in json.loads(proc.stdout)["changes"] if c["kind"] == "offload"]


def test_a_forwarding_hosts_underlay_gets_gro_then_udp_gro_forwarding(
    lab: Lab, tmp_path: Path, figure: FigureFn
) -> None:
    a = lab.topo.a
    before = ethtool_k(lab)
    assert (before["generic-receive-offload"], before["rx-udp-gro-forwarding"]) == ("off", "off")
    run = ["apply", "--format", "json", "--state-dir", str(tmp_path), *FAST, "--probe-max", "0"]
    with forwarding(lab):
        # One apply, two rounds: GRO first (UDP GRO forwarding needs it), then the other.
        gro, udp = offload_changes(cli(run, netns=a.netns, timeout=120))
        after = ethtool_k(lab)
        assert offload_changes(cli(run, netns=a.netns, timeout=120)) == []  # nothing left
        moved = lab.traffic(2.0)
        for _ in range(2):
            back = cli(
                ["rollback", "--last", "--format", "json", "--state-dir", str(tmp_path)],
                netns=a.netns,
                timeout=120,
            )
            assert back.returncode == 0, back.stderr[-2000:]
        restored = ethtool_k(lab)
    assert (gro["policy"], gro["target"], gro["status"]) == (
        "gro-forwarding-host",
        f"{a.veth}/rx-gro",
        "verified",
    )
    assert (udp["policy"], udp["target"], udp["status"]) == (
        "udp-gro-forwarding",
        f"{a.veth}/rx-udp-gro-forwarding",
        "verified",
    )
    assert (after["generic-receive-offload"], after["rx-udp-gro-forwarding"]) == ("on", "on")
    assert moved["ok"] and moved["bytes"] > 1_000_000, moved
    assert (restored["generic-receive-offload"], restored["rx-udp-gro-forwarding"]) == (
        "off",
        "off",
    )  # exact revert
    figure(
        "Remediation",
        "forwarding host, veth underlay with GRO off -> one apply: gro-forwarding-host, "
        "then udp-gro-forwarding, each verified; bulk TCP after; two rollbacks",
        f"GRO off -> on, UDP GRO forwarding off -> on; "
        f"{moved['bytes'] * 8 / 2.0 / 1e6:.0f} Mbit/s; back to off/off",
    )


def csum_errors(netns: str) -> int:
    """IpExt InCsumErrors of ``netns`` (/proc/net/netstat, read by the ip tool's view)."""
    text = subprocess.run(
        ["ip", "netns", "exec", netns, "cat", "/proc/net/netstat"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = [line.split() for line in text.splitlines() if line.startswith("IpExt:")]
    return int(dict(zip(lines[0], lines[1], strict=True))["InCsumErrors"])


def errors_per_second(netns: str, seconds: float = 3.0) -> float:
    first = csum_errors(netns)
    time.sleep(seconds)
    return (csum_errors(netns) - first) / seconds


@contextmanager
def bulk_tcp(lab: Lab, seconds: int = 150) -> Iterator[None]:
    """Eight TCP streams of 20 Mbit/s from b to a's underlay address (not through the
    tunnel), for as long as the block runs; the processes are killed by the PIDs started
    here. Paced: once the fault is gone, the recovered streams must not starve the
    verifying wg-tuner of CPU (unpaced, they take both cores)."""
    a, b = lab.topo.a, lab.topo.b
    port = "5299"
    server = subprocess.Popen(
        ["ip", "netns", "exec", a.netns, "iperf3", "-s", "-1", "-p", port, "-B", a.underlay_addr],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = None
    try:
        time.sleep(0.5)
        client = subprocess.Popen(
            [
                *("ip", "netns", "exec", b.netns, "iperf3", "-c", a.underlay_addr, "-p", port),
                *("-P", "8", "-b", "20M", "-t", str(seconds)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        yield
    finally:
        for proc in (client, server):
            if proc is not None:
                proc.kill()
                proc.wait(timeout=10)


def set_gro(lab: Lab, state: str) -> None:
    a = lab.topo.a
    subprocess.run(
        ["ip", "netns", "exec", a.netns, "ethtool", "-K", a.veth, "gro", state], check=True
    )


def test_errors_after_gro_was_turned_on_turn_it_off_and_keep_it_off(
    lab: Lab, tmp_path: Path, figure: FigureFn
) -> None:
    """Someone turns GRO on under a driver that breaks its aggregates (the lab's
    bad-gro fault); checksum errors rise. offload-errors turns exactly that feature
    off, verified by the errors stopping; gro-forwarding-host does not turn it back on
    while that change stands; a rollback restores the operator's value."""
    a = lab.topo.a
    run = ["apply", "--format", "json", "--state-dir", str(tmp_path), *FAST, "--probe-max", "0"]
    lab.fault("bad-gro", True)
    try:
        with bulk_tcp(lab):
            seen_off = cli(run, netns=a.netns, timeout=120)  # remembers GRO off
            assert offload_changes(seen_off) == []
            clean = errors_per_second(a.netns)
            set_gro(lab, "on")  # not wg-tuner
            broken = errors_per_second(a.netns)
            fixed = cli(run, netns=a.netns, timeout=120)
            [change] = offload_changes(fixed)
            gro_after = ethtool_k(lab)["generic-receive-offload"]
            stopped = errors_per_second(a.netns)
            with forwarding(lab):
                held = cli(run, netns=a.netns, timeout=120)
                gro_held = ethtool_k(lab)["generic-receive-offload"]
            set_gro(lab, "off")  # forwarding() turned GRO off: back to what the change left
            back = cli(
                ["rollback", "--last", "--format", "json", "--state-dir", str(tmp_path)],
                netns=a.netns,
                timeout=120,
            )
            restored = ethtool_k(lab)["generic-receive-offload"]
    finally:
        lab.fault("bad-gro", False)
        set_gro(lab, "off")
    assert clean == 0.0, clean  # the fault is harmless while GRO is off
    assert broken >= 2.0, broken  # ...and breaks aggregates once it is on
    assert (change["policy"], change["target"], change["status"]) == (
        "offload-errors",
        f"{a.veth}/rx-gro",
        "verified",
    ), change
    checks = {c["name"]: c for c in change["verification"]["checks"]}
    assert checks["rx_errors_stop"]["passed"], checks
    assert (gro_after, stopped) == ("off", 0.0)
    [hold] = [c for c in offload_changes(held) if c["policy"] == "gro-forwarding-host"]
    assert (hold["target"], hold["status"], hold["verdict"]["guard"]) == (
        f"{a.veth}/rx-gro",
        "held",
        "sticky",
    ), hold
    assert gro_held == "off"
    assert back.returncode == 0, back.stderr[-2000:]
    assert restored == "on"  # exactly what the operator had set
    figure(
        "Remediation",
        "someone turns GRO on under a driver that corrupts its aggregates (lab bad-gro "
        "fault, 8 paced TCP streams into host a) -> apply; then a forwarding host -> apply",
        f"checksum errors {clean:.0f}/s -> {broken:.0f}/s with GRO on; offload-errors "
        "turned the underlay's rx-gro off, verified (rx_errors_stop: "
        f"{checks['rx_errors_stop']['detail']}); {stopped:.0f}/s after; "
        "gro-forwarding-host held (sticky); rollback restored on",
    )


def test_gro_that_breaks_aggregates_at_once_is_rolled_back_by_its_own_verification(
    lab: Lab, tmp_path: Path, figure: FigureFn
) -> None:
    """gro-forwarding-host turns GRO on under the same broken driver: the checksum
    errors start inside its verification window, rx_errors_not_worse (every offload
    change runs it) fails, and GRO goes back off at once."""
    a = lab.topo.a
    run = ["apply", "--format", "json", "--state-dir", str(tmp_path), *FAST, "--probe-max", "0"]
    lab.fault("bad-gro", True)
    try:
        with bulk_tcp(lab), forwarding(lab):
            proc = cli(run, netns=a.netns, timeout=120)
            gro = ethtool_k(lab)["generic-receive-offload"]
    finally:
        lab.fault("bad-gro", False)
        set_gro(lab, "off")
    assert proc.returncode == 3, proc.stderr[-2000:]  # rolled back
    [change] = [c for c in json.loads(proc.stdout)["changes"] if c["kind"] == "offload"]
    checks = {c["name"]: c for c in change["verification"]["checks"]}
    assert (change["policy"], change["status"], change["code"]) == (
        "gro-forwarding-host",
        "reverted",
        "verification_failed",
    ), change
    assert not checks["rx_errors_not_worse"]["passed"], checks
    assert gro == "off"
    figure(
        "Remediation",
        "a forwarding host, GRO off, the lab bad-gro fault, 8 paced TCP streams into host a -> "
        "apply (gro-forwarding-host)",
        f"GRO on, then rolled back: rx_errors_not_worse {checks['rx_errors_not_worse']['detail']}",
    )


def test_a_running_daemon_sees_gro_turned_on_and_turns_it_off(
    lab: Lab, tmp_path: Path, figure: FigureFn
) -> None:
    """The daemon's memory is the same file: it sees GRO off, then on (by hand), then
    the errors, and turns GRO off within a few cycles."""
    from tests.lab.test_lab_daemon import FAST as DAEMON_FAST
    from tests.lab.test_lab_daemon import daemon

    a = lab.topo.a
    lab.fault("bad-gro", True)
    try:
        with (
            bulk_tcp(lab),
            daemon(lab, tmp_path, "--mode", "enforce", "--metrics-listen", "", *DAEMON_FAST) as d,
        ):
            d.wait_for(lambda: len(d.named("cycle.done")) >= 2, 30, "two cycles")
            set_gro(lab, "on")
            onset = len(d.named("cycle.done"))
            d.wait_for(lambda: bool(d.named("change.applied")), 30, "a change")
            # The cycle in flight when GRO went on may have observed before it.
            cycles = len(d.named("cycle.done")) - onset
            d.wait_for(
                lambda: any(r["state"] == "verified" for r in d.journal()), 60, "a verified change"
            )
            gro = ethtool_k(lab)["generic-receive-offload"]
            assert d.stop() == 0
    finally:
        lab.fault("bad-gro", False)
        set_gro(lab, "off")
    (applied,) = d.named("change.applied")
    assert (applied["policy"], applied["target"], applied["after"]) == (
        "offload-errors",
        f"offload:{a.veth}/rx-gro",
        "off",
    ), applied
    assert gro == "off"
    assert cycles <= 3, cycles
    figure(
        "Remediation",
        "GRO turned on by hand under a running daemon (lab bad-gro fault, 8 paced TCP streams "
        "into host a) -> cycles to the change (interval 2 s); verified",
        f"{cycles} cycles; rx-gro off",
    )
