"""Echo replies count only when they carry the probe's own payload.

Inside a throwaway namespace whose kernel does not answer echo requests, a forger
answers each with the right ident and sequence number: with the payload changed (what
anyone who sees or guesses the ident could send), and cut short (what a path that
truncates would deliver). Neither is a pass; the honest echo is.
"""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

SCRIPT = r"""
import socket, struct, sys, threading
from tuner.adapters.icmp import Pinger, checksum
mode = sys.argv[1]
forger = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
def answer():
    while True:
        data, addr = forger.recvfrom(65535)
        icmp = data[(data[0] & 0x0F) * 4 :]
        if icmp[0] != 8:
            continue
        ident, seq = struct.unpack("!HH", icmp[4:8])
        payload = icmp[8:]
        if mode == "changed":
            payload = bytes(len(payload))
        elif mode == "short":
            payload = payload[: len(payload) // 2]
        head = struct.pack("!BBHHH", 0, 0, 0, ident, seq)
        reply = struct.pack("!BBHHH", 0, 0, checksum(head + payload), ident, seq) + payload
        forger.sendto(reply, addr)
threading.Thread(target=answer, daemon=True).start()
with Pinger("127.0.0.1") as pinger:
    print(sum(pinger.echo(200, 0.5) is not None for _ in range(5)))
"""


def test_only_an_echo_with_the_probes_payload_is_a_pass(netns: str) -> None:
    run = ["ip", "netns", "exec", netns]
    subprocess.run([*run, "sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1"], check=True)
    passes = {}
    for mode in ("honest", "changed", "short"):
        out = subprocess.run(
            [*run, sys.executable, "-c", SCRIPT, mode],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
            timeout=60,
        ).stdout
        passes[mode] = int(out.strip())
    assert passes == {"honest": 5, "changed": 0, "short": 0}
