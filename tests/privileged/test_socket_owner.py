"""The userspace WireGuard process is the one holding its config socket, not SO_PEERCRED's.

wg-quick starts wireguard-go without ``-f``: it listens, hands the socket to a child and
exits, so the pid SO_PEERCRED names is gone and anyone may get it next. wg-tuner finds
the child by the listening socket's inode, and a borrow checks that identity through
the pidfd before and after: a process that merely has the pid (and a UDP socket on the
listen port in a namespace of its own) is refused and its socket left alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, unique

NOBODY = 65534

PROBE = r"""
import json, socket, struct, sys
from pathlib import Path
from tuner.actuators.base import Target
from tuner.actuators.registry import build
from tuner.adapters.uapi import UapiClient
ifname = sys.argv[1]
path = f"/var/run/wireguard/{ifname}.sock"
s = socket.socket(socket.AF_UNIX); s.connect(path)
peercred = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
s.close()
client = UapiClient(Path("/var/run/wireguard"))
owner = client.owner(ifname)
size = build()["socket_buffer"].read(Target("socket_buffer", ifname))
print(json.dumps({"peercred": peercred, "owner": owner.pid, "inode": owner.inode,
                  "port": client.get(ifname).listen_port, "rcvbuf": size}))
"""

ATTACKER = r"""
import socket, sys, time
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
a.bind(("0.0.0.0", int(sys.argv[1])))
print(a.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), flush=True)
sys.stdin.readline()
print(a.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), flush=True)
"""

BORROW = r"""
import sys
from pathlib import Path
from tuner.actuators.base import Target
from tuner.actuators.socket_buffer import SocketBufferActuator
from tuner.adapters.sockowner import SocketOwner
from tuner.errors import NotApplicable
pid, inode, port = (int(x) for x in sys.argv[1:4])
actuator = SocketBufferActuator(lambda _: (SocketOwner(pid, inode), port))
try:
    actuator.apply(Target("socket_buffer", "wgx"), "16777216")
except NotApplicable as exc:
    print("refused:", exc)
else:
    print("resized")
"""


def _wireguard_go_pids(ifname: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"wireguard-go") and ifname.encode() in argv:
            pids.append(int(entry.name))
    return pids


def _probe(netns: str, ifname: str) -> dict[str, int]:
    """What wg-tuner, inside the namespace, finds behind ``ifname``'s config socket."""
    out = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", PROBE, ifname],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=60,
    ).stdout
    found: dict[str, int] = json.loads(out)
    return found


@pytest.fixture
def daemonized(netns: str) -> Iterator[tuple[str, str]]:
    """wireguard-go started as wg-quick starts it: no -f, the starter exits."""
    ifname = unique("wgto")
    env = dict(os.environ, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD="1")
    subprocess.run(
        ["ip", "netns", "exec", netns, "wireguard-go", ifname], env=env, check=True, timeout=30
    )
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/var/run/wireguard/{ifname}.sock").exists():
            assert time.monotonic() < deadline, "wireguard-go did not start"
            time.sleep(0.05)
        subprocess.run(
            ["ip", "netns", "exec", netns, "wg", "set", ifname, "listen-port", "51877"],
            check=True,
        )
        yield netns, ifname
    finally:
        for pid in _wireguard_go_pids(ifname):
            os.kill(pid, signal.SIGTERM)


def test_the_daemonized_wireguard_go_is_found_by_its_socket_and_resizable(
    daemonized: tuple[str, str],
) -> None:
    netns, ifname = daemonized
    seen = _probe(netns, ifname)
    (real,) = _wireguard_go_pids(ifname)
    assert seen["owner"] == real
    assert seen["peercred"] != real and not Path(f"/proc/{seen['peercred']}").exists()
    assert int(seen["rcvbuf"]) > 0  # the socket remedy works under wg-quick's start


def test_a_process_that_only_has_the_pid_is_refused_and_its_socket_left_alone(
    daemonized: tuple[str, str],
) -> None:
    netns, ifname = daemonized
    seen = _probe(netns, ifname)
    # The attacker: nobody, in a user and network namespace of its own, bound to the
    # listen port there: what a recycled pid looked like to the SO_PEERCRED lookup.
    attacker = subprocess.Popen(
        [
            *("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"),
            *("unshare", "--user", "--net", "--map-root-user"),
            *("/usr/bin/python3", "-c", ATTACKER, str(seen["port"])),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert attacker.stdout is not None and attacker.stdin is not None
        before = int(attacker.stdout.readline())
        victim_pid = attacker.pid  # setpriv and unshare exec: the same pid runs python
        out = subprocess.run(
            [sys.executable, "-c", BORROW, str(victim_pid), str(seen["inode"]), str(seen["port"])],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
            timeout=60,
        ).stdout
        attacker.stdin.write("\n")
        attacker.stdin.flush()
        after = int(attacker.stdout.readline())
    finally:
        attacker.kill()
        attacker.communicate()
    assert out.startswith("refused:") and "not the WireGuard process" in out, out
    assert after == before
