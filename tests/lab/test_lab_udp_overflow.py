"""UDP receive-buffer overflow: a paused wireguard-go under a flood, and what its socket
answers to.

The overflow, its observation and the decision run in the lab: wireguard-go in
namespace a is starved (SIGSTOPped 200 ms of every 230: paused long enough to overflow,
running long enough to answer its config socket, like a daemon that cannot keep up)
while b floods it. wg-tuner sees the drops on wireguard-go's own socket (sock_diag),
reports udp-socket-default's lasting fix and proposes udp-socket-grow; `apply` resizes
the running socket in place and verifies it by that socket's drops stopping (ADR 0013).
Then the measurement behind the choice (docs/adr/0009): this wireguard-go's socket keeps
the buffer it opened with until its listen port is set again; a raised
net.core.rmem_max helps only a socket opened after it. Those touch host-wide sysctls
from the initial namespace and restore them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO, cli, require_privileges
from tests.reliability import FigureFn
from tuner.actuators.base import Target
from tuner.actuators.sysctl import SysctlActuator
from tuner.lab.lab import Lab
from tuner.observe.paths import HostPaths

RMEM_MAX = Target("sysctl", "net.core.rmem_max")


def rcvbuf_errors(lab: Lab) -> float:
    """Udp RcvbufErrors of namespace a, as wg-tuner exports it for a host without
    node_exporter (``--host-series``; node_exporter has it as node_netstat_Udp_RcvbufErrors)."""
    text = cli(["metrics", "--host-series"], netns=lab.topo.a.netns, check=True).stdout
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("protocol") == "Udp" and s.labels.get("counter") == "RcvbufErrors":
                return s.value
    raise AssertionError("no Udp RcvbufErrors series")


def socket_metric(lab: Lab, name: str) -> float:
    """A wg_tuner_socket_* series of a's interface, as wg-tuner exports it."""
    text = cli(["metrics"], netns=lab.topo.a.netns, check=True).stdout
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels.get("interface") == lab.topo.a.wg:
                return s.value
    raise AssertionError(f"no {name} series for {lab.topo.a.wg}")


def flood(lab: Lab, seconds: float, per_tick: int = 0) -> None:
    """Datagrams from b to a's WireGuard port: ``per_tick`` every 10 ms (a steady rate
    that a buffer of the right size absorbs across a's pauses), or with 0 as fast as b
    can send them."""
    a = lab.topo.a
    code = (
        "import socket,sys,time\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "n=int(sys.argv[4]);p=b'x'*1200;t=time.monotonic();end=t+float(sys.argv[3])\n"
        "while t<end:\n"
        "    for _ in range(n or 200): s.sendto(p,(sys.argv[1],int(sys.argv[2])))\n"
        "    if n: t+=0.01;time.sleep(max(0.0,t-time.monotonic()))\n"
        "    else: time.sleep(0.001);t=time.monotonic()\n"
    )
    subprocess.run(
        [
            *("ip", "netns", "exec", lab.topo.b.netns, sys.executable, "-c", code),
            *(a.underlay_addr, str(a.listen_port), str(seconds), str(per_tick)),
        ],
        check=True,
        timeout=seconds + 30,
    )


def test_starved_wireguard_go_under_a_flood_is_seen_and_diagnosed(
    lab: Lab, tmp_path: Path, figure: FigureFn
) -> None:
    a = lab.topo.a
    record = lab.require()
    (pid,) = [int(p["pid"]) for p in record.processes if p["match"] == a.wg]
    # the shipped policy wants 60 s and 3 cycles; `plan` samples once, so hold it briefly
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    path = policies / "udp-buffers.yaml"
    path.write_text(path.read_text().replace("for: 60s\n        cycles: 3", "cycles: 1"))
    before = rcvbuf_errors(lab)
    drops_before = socket_metric(lab, "wg_tuner_socket_drops_total")
    stop = threading.Event()

    def starve() -> None:
        while not stop.is_set():
            os.kill(pid, signal.SIGSTOP)
            time.sleep(0.2)
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.03)

    starver = threading.Thread(target=starve)
    starver.start()
    try:
        sender = threading.Thread(target=flood, args=(lab, 12.0))
        sender.start()
        time.sleep(0.5)
        planned = cli(
            [
                *("plan", "--format", "json", "--sample", "2", "--probe-timeout", "0.3"),
                *("--policies", str(policies), "--state-dir", str(tmp_path / "state")),
            ],
            netns=a.netns,
            timeout=60,
        )
        sender.join()
    finally:
        stop.set()
        starver.join()
        os.kill(pid, signal.SIGCONT)
    after = rcvbuf_errors(lab)
    drops = socket_metric(lab, "wg_tuner_socket_drops_total") - drops_before
    assert after - before > 1000, (before, after)
    # The host-wide counter and wireguard-go's own socket moved together: the drops are
    # WireGuard's (nothing else in the namespace receives).
    assert drops > 1000 and drops <= after - before, (drops, after - before)
    data = json.loads(planned.stdout)
    reports = ("udp-socket-default", "udp-socket-capped")
    (finding,) = [f for f in data["findings"] if f["policy"] in reports]
    assert finding["policy"] == "udp-socket-default", finding  # 212992 B: rmem_default
    assert finding["interface"] == a.wg
    evidence = {e["metric"]: e["value"] for e in finding["evidence"]}
    assert evidence["iface.socket_drops_rate"] > 0 and evidence["iface.socket_rcvbuf_at_cap"] == 0
    # The remedy that takes effect is proposed (the next test applies it); plan changes
    # nothing, and no host-wide sysctl is among the proposals.
    (grow,) = [c for c in data["changes"] if c["policy"].startswith("udp-")]
    assert (grow["policy"], grow["kind"], grow["after"]) == (
        "udp-socket-grow",
        "socket_buffer",
        7340032,
    )
    assert socket_metric(lab, "wg_tuner_socket_receive_buffer_bytes") == grow["before"]
    assert lab.wait_handshake(30) >= 0  # the resumed wireguard-go still works
    figure(
        "Remediation",
        "wireguard-go starved (stopped 200 of every 230 ms) in a namespace under a 12 s "
        "UDP flood -> drops on its own socket seen by wg-tuner (sock_diag); decision",
        f"+{drops:.0f} (Udp RcvbufErrors +{after - before:.0f}); udp-socket-default "
        "reported with the in-place resize proposed (udp-socket-grow); plan changed nothing",
    )


def test_a_starved_wireguard_gos_socket_is_resized_in_place_until_its_drops_stop(
    lab: Lab, tmp_path: Path, figure: FigureFn
) -> None:
    """udp-socket-grow end to end: the running socket gets 7 MiB (no reopen, no sysctl),
    verified by its own drop counter all but stopping; rollback restores its size."""
    a = lab.topo.a
    record = lab.require()
    (pid,) = [int(p["pid"]) for p in record.processes if p["match"] == a.wg]
    policies = tmp_path / "policies"
    policies.mkdir()
    text = (REPO / "policies" / "udp-buffers.yaml").read_text()
    one_sample = text.replace("for: 60s\n        cycles: 3", "cycles: 1")
    (policies / "udp-buffers.yaml").write_text(one_sample)
    state = tmp_path / "state"
    opened = socket_metric(lab, "wg_tuner_socket_receive_buffer_bytes")
    stop = threading.Event()

    def starve() -> None:  # paused 200 ms of every 230, as in the test above
        while not stop.is_set():
            os.kill(pid, signal.SIGSTOP)
            time.sleep(0.2)
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.03)

    def run(*argv: str) -> Any:
        out = cli(
            [*argv, "--format", "json", "--policies", str(policies), "--state-dir", str(state)],
            netns=a.netns,
            timeout=120,
        )
        return json.loads(out.stdout)

    # 5,000 datagrams a second: about 1,000 (2.3 MB of buffer) arrive in each pause, ten
    # times what the 212,992 bytes of rmem_default hold, a third of what 7 MiB holds.
    sender = threading.Thread(target=flood, args=(lab, 40.0, 50))
    starver = threading.Thread(target=starve)
    try:
        sender.start()
        starver.start()
        time.sleep(1.0)
        applied = run(
            *("apply", "--sample", "2", "--settle", "1", "--verify-window", "6"),
            *("--grace", "3", "--probe-timeout", "0.3"),
        )
        grown = socket_metric(lab, "wg_tuner_socket_receive_buffer_bytes")
        drops_at = socket_metric(lab, "wg_tuner_socket_drops_total")
        time.sleep(4.0)
        drops_later = socket_metric(lab, "wg_tuner_socket_drops_total") - drops_at
    finally:
        stop.set()
        starver.join()
        os.kill(pid, signal.SIGCONT)
        sender.join()
    try:
        (change,) = [c for c in applied["changes"] if c["policy"] == "udp-socket-grow"]
        assert change["status"] == "verified", change
        assert change["before"] == int(opened) and change["after"] == 7340032, change
        checks = {c["name"]: c for c in change["verification"]["checks"]}
        stopped = checks["socket_drops_stop"]
        assert stopped["passed"] and stopped["gate"], stopped
        assert grown == 7340032 and drops_later <= 5, (grown, drops_later)
        rolled = run("rollback", "--last")
        assert socket_metric(lab, "wg_tuner_socket_receive_buffer_bytes") == opened, rolled
    finally:
        # Whatever happened, a's socket leaves with the size it came with (a reopen).
        subprocess.run(
            ["ip", "netns", "exec", a.netns, "wg", "set", a.wg, "listen-port", str(a.listen_port)],
            check=True,
        )
    assert lab.wait_handshake(30) >= 0
    figure(
        "Remediation",
        "wireguard-go starved (stopped 200 of every 230 ms) under 5,000 datagrams/s: "
        "udp-socket-grow resizes its running socket (pidfd_getfd), verified by the socket's "
        "own drops; rollback",
        f"{opened:.0f} -> 7340032 -> {opened:.0f} B; {stopped['detail']}",
    )


def test_wireguard_go_keeps_its_buffer_until_its_socket_is_reopened(
    lab: Lab, figure: FigureFn
) -> None:
    """The measurement behind udp-socket-default (docs/adr/0009)."""
    a = lab.topo.a
    default = Target("sysctl", "net.core.rmem_default")
    actuator = SysctlActuator(HostPaths())
    prior = actuator.read(default)
    assert prior is not None and actuator.check(default) is None  # initial namespace
    first = socket_metric(lab, "wg_tuner_socket_receive_buffer_bytes")
    try:
        assert actuator.apply(default, str(4 << 20))
        unchanged = socket_metric(lab, "wg_tuner_socket_receive_buffer_bytes")
        # The same port again: wireguard-go closes and reopens its sockets.
        subprocess.run(
            ["ip", "netns", "exec", a.netns, "wg", "set", a.wg, "listen-port", str(a.listen_port)],
            check=True,
        )
        reopened = socket_metric(lab, "wg_tuner_socket_receive_buffer_bytes")
    finally:
        actuator.revert(default, prior)
    assert actuator.read(default) == prior  # the host's value is back
    assert first == int(prior) and unchanged == first, (prior, first, unchanged)
    assert reopened == 4 << 20, reopened
    assert lab.wait_handshake(30) >= 0  # the tunnel survives the reopen
    figure(
        "Remediation",
        "wireguard-go's socket buffer: opened, after net.core.rmem_default 4 MiB, after "
        "`wg set listen-port` (same port; host value restored)",
        f"{first:.0f} -> {unchanged:.0f} -> {reopened:.0f} B",
    )


def _receiver() -> tuple[subprocess.Popen[str], int]:
    """A paused UDP socket that asks for a 64 MiB buffer, like a userspace WireGuard."""
    code = (
        "import socket,sys,time\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "s.setsockopt(socket.SOL_SOCKET,socket.SO_RCVBUF,64<<20)\n"
        "s.bind(('127.0.0.1',0))\n"
        "print(s.getsockname()[1],flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGSTOP)
    return proc, port


def _socket_drops(port: int) -> int:
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}":
            return int(fields[-1])
    raise AssertionError(f"no socket on 127.0.0.1:{port}")


def _overflow(packets: int) -> int:
    proc, port = _receiver()
    try:
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        payload = b"x" * 1200
        for _ in range(packets):
            out.sendto(payload, ("127.0.0.1", port))
        out.close()
        return _socket_drops(port)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_raising_rmem_max_stops_a_paused_sockets_drops(figure: FigureFn) -> None:
    require_privileges()
    actuator = SysctlActuator(HostPaths())
    prior = actuator.read(RMEM_MAX)
    assert prior is not None and actuator.check(RMEM_MAX) is None  # initial namespace
    raised = str(min(int(prior) * 2, 32 << 20))  # the udp-rcvbuf policy: factor 2, max 32 MiB
    assert int(raised) > int(prior), "rmem_max is already at the policy's cap"
    # ~2.3 KiB of buffer per 1200-byte datagram; the kernel doubles the capped request:
    # enough to overflow 2 x prior, and to fit in 2 x raised
    packets = int(1.4 * 2 * int(prior) / 2304)
    try:
        drops_before = _overflow(packets)
        assert actuator.apply(RMEM_MAX, raised)
        drops_after = _overflow(packets)
    finally:
        actuator.revert(RMEM_MAX, prior)
    assert actuator.read(RMEM_MAX) == prior  # the host's value is back
    assert drops_before > packets // 10, (drops_before, packets)
    assert drops_after < drops_before // 10, (drops_before, drops_after)
    figure(
        "Remediation",
        f"paused socket on loopback, {packets} datagrams -> drops with net.core.rmem_max "
        f"{int(prior) >> 20} MiB, then raised to {int(raised) >> 20} MiB (host value restored)",
        f"{drops_before} -> {drops_after}",
    )
