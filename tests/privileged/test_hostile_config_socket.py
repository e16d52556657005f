"""A config-socket server that is hostile (boringtun answers as nobody) beside a real one.

In one namespace: a real wireguard-go interface, and a tun device whose config socket is
served by a fake that answers with a NUL in an endpoint, terminal escape sequences, a
reply larger than any device, or a reply with no peer boundary. The hostile interface is
an error of its own; the real one is observed; the daemon keeps cycling (a NUL used to
escape as ValueError and end ``run`` with exit 1, a crash loop under the unit).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import WG_TUNER, cli, unique
from tests.fakeuapi import FakeDaemon, make_reply
from tuner.adapters import uapi

SOCKETS = Path("/var/run/wireguard")


def _hostile(kind: str) -> bytes:
    good = make_reply(3).decode()
    if kind == "nul-endpoint":
        return good.replace("endpoint=198.51.0.2:51821", "endpoint=198.51.0.2\x00:51821").encode()
    if kind == "escape-endpoint":
        return good.replace("endpoint=198.51.0.2:51821", "endpoint=\x1b[2J\x1b[31m:1").encode()
    if kind == "oversized":
        head, peer = good[: good.index("public_key=")], good[good.index("public_key=") :]
        peer = peer[: peer.index("errno=")]
        return (head + peer * (uapi.MAX_REPLY // len(peer) + 10) + "errno=0\n\n").encode()
    if kind == "no-peer-boundary":
        return b"listen_port=1\n" + b"x=" + b"y" * 60 + b"\n" * 1 + (b"x=yy\n" * 1_000_000)
    raise AssertionError(kind)


@pytest.fixture
def hostile_tun(wg_netns: tuple[str, str]) -> Iterator[tuple[str, str, str]]:
    netns, real = wg_netns
    name = unique("wgth")
    subprocess.run(["ip", "-n", netns, "tuntap", "add", name, "mode", "tun"], check=True)
    subprocess.run(["ip", "-n", netns, "link", "set", name, "up"], check=True)
    yield netns, real, name


@pytest.mark.parametrize(
    "kind", ["nul-endpoint", "escape-endpoint", "oversized", "no-peer-boundary"]
)
def test_a_hostile_reply_is_its_interfaces_error_and_the_real_one_is_read(
    hostile_tun: tuple[str, str, str], kind: str
) -> None:
    netns, real, name = hostile_tun
    with FakeDaemon(SOCKETS / f"{name}.sock", _hostile(kind), chunk=1 << 20):
        proc = cli(["status", "--format", "json"], netns=netns, timeout=120)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 1, proc.stderr  # status: an interface could not be read
    report = json.loads(proc.stdout)
    assert [i["name"] for i in report["interfaces"]] == [real]
    errors = " ".join(report["errors"])
    assert name in errors
    assert "\x1b" not in proc.stdout and "\x00" not in proc.stdout


def test_the_daemon_keeps_cycling_beside_a_nul_in_an_endpoint(
    hostile_tun: tuple[str, str, str], tmp_path: Path
) -> None:
    netns, _real, name = hostile_tun
    log = tmp_path / "daemon.log"
    argv = ["ip", "netns", "exec", netns, WG_TUNER, "run", "--mode", "observe", "--interval"]
    argv += ["1", "--log-format", "json", "--state-dir", str(tmp_path / "state")]
    argv += ["--metrics-listen", ""]
    with FakeDaemon(SOCKETS / f"{name}.sock", _hostile("nul-endpoint")):
        with open(log, "w") as err:
            daemon = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 60
            cycles: list[dict[str, object]] = []
            while len(cycles) < 3:
                assert daemon.poll() is None, log.read_text()[-2000:]
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.2)
                events = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
                cycles = [e for e in events if e["event"] == "cycle.done"]
            limits = Path(f"/proc/{daemon.pid}/limits").read_text()
            core = next(line for line in limits.splitlines() if line.startswith("Max core"))
            assert core.split()[4:6] == ["0", "0"], core  # it reads private keys: no core
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)
    failed = [e for e in events if e["event"] == "observe.interface_failed"]
    assert failed and all(e["interface"] == name for e in failed)
