"""UDP receive-buffer overflow: a paused wireguard-go under a flood.

The overflow, its observation and the decision run in the lab: wireguard-go in
namespace a is starved (SIGSTOPped 200 ms of every 230: paused long enough to overflow,
running long enough to answer its config socket, like a daemon that cannot keep up)
while b floods it. The remedy, net.core.rmem_max, exists only in the
initial namespace, so wg-tuner in the lab rightly holds it; the second test shows on
loopback in the initial namespace that the actuator's raise is what stops a paused
socket's drops, and restores the host's value.
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

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO, cli, require_privileges
from tests.reliability import FigureFn
from tuner.actuators.base import Target
from tuner.actuators.sysctl import SysctlActuator
from tuner.lab.lab import Lab
from tuner.observe.paths import HostPaths

RMEM_MAX = Target("sysctl", "net.core.rmem_max")


def rcvbuf_errors(lab: Lab) -> float:
    """Udp RcvbufErrors of namespace a, as wg-tuner exports it."""
    text = cli(["metrics"], netns=lab.topo.a.netns, check=True).stdout
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("protocol") == "Udp" and s.labels.get("counter") == "RcvbufErrors":
                return s.value
    raise AssertionError("no Udp RcvbufErrors series")


def flood(lab: Lab, seconds: float) -> None:
    """Datagrams from b to a's WireGuard port, as fast as b can send them."""
    a = lab.topo.a
    code = (
        "import socket,sys,time\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "end=time.monotonic()+float(sys.argv[3]);p=b'x'*1200\n"
        "while time.monotonic()<end:\n"
        "    for _ in range(200): s.sendto(p,(sys.argv[1],int(sys.argv[2])))\n"
        "    time.sleep(0.001)\n"
    )
    subprocess.run(
        [
            *("ip", "netns", "exec", lab.topo.b.netns, sys.executable, "-c", code),
            *(a.underlay_addr, str(a.listen_port), str(seconds)),
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
    path.write_text(path.read_text().replace("for: 60s\n        cycles: 3", "cycles: 1", 1))
    before = rcvbuf_errors(lab)
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
    assert after - before > 1000, (before, after)
    data = json.loads(planned.stdout)
    assert "udp-rcvbuf" in {f["policy"] for f in data["findings"]}, data["findings"]
    (change,) = [c for c in data["changes"] if c["policy"] == "udp-rcvbuf"]
    assert change["target"].endswith("net.core.rmem_max")
    assert change["verdict"]["decision"] == "hold"
    assert "initial network namespace" in change["verdict"]["reason"]
    assert lab.wait_handshake(30) >= 0  # the resumed wireguard-go still works
    figure(
        "Remediation",
        "wireguard-go starved (stopped 200 of every 230 ms) in a namespace under a 12 s "
        "UDP flood -> RcvbufErrors "
        "seen by wg-tuner; udp-rcvbuf decision",
        f"+{after - before:.0f}; raise net.core.rmem_max, held: only the initial "
        "namespace may write it",
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
