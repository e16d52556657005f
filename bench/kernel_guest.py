"""Runs inside the VM: read a kernel WireGuard interface of N peers three ways.

``wg show IF dump`` (a subprocess, what a script runs), wg-tuner's lean dump parser
(``tuner.adapters.wgdump``) and pyroute2's WireGuard family (what wg-tuner used
before). Prints one JSON line: a row per size, medians in milliseconds.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tuner.adapters import wgdump
from tuner.adapters.wgdump import GenlSocket, dump_device

WG = "wgbench0"


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return round(statistics.median(times) * 1000, 1)


def with_peers(n: int) -> None:
    """WG with ``n`` peers, each a random public key and its own /32 (one setconf)."""
    subprocess.run(["ip", "link", "del", WG], capture_output=True, check=False)
    subprocess.run(["ip", "link", "add", WG, "type", "wireguard"], check=True)
    lines = ["[Interface]", "ListenPort = 51820"]
    for i in range(n):
        key = base64.b64encode(os.urandom(32)).decode()
        lines += [
            "[Peer]",
            f"PublicKey = {key}",
            f"AllowedIPs = 10.{i >> 16}.{(i >> 8) & 255}.{i & 255}/32",
        ]
    conf = Path("/run/wgbench.conf")
    conf.write_text("\n".join(lines) + "\n")
    subprocess.run(["wg", "setconf", WG, str(conf)], check=True)


def recv_only() -> int:
    """The same dump received and thrown away: the kernel's side of a read."""
    sock = GenlSocket()
    try:
        family = sock.family_id("wireguard")
        flags = wgdump.NLM_F_REQUEST | wgdump.NLM_F_ACK | wgdump.NLM_F_DUMP
        attrs = wgdump._nla(wgdump.DEV_IFNAME, WG.encode() + b"\0")
        seq = sock.request(family, wgdump.WG_CMD_GET_DEVICE, wgdump.WG_GENL_VERSION, flags, attrs)
        return sum(1 for _ in sock.replies(seq))
    finally:
        sock.close()


def pyroute2_read() -> int:
    from pyroute2 import WireGuard

    with WireGuard() as wg:
        return sum(len(m.get_attr("WGDEVICE_A_PEERS") or ()) for m in wg.info(WG))


def main() -> int:
    subprocess.run(["modprobe", "wireguard"], check=True)
    sizes = [int(s) for s in sys.argv[1].split(",")] if len(sys.argv) > 1 else [0, 1000, 10000]
    rows = []
    for n in sizes:
        with_peers(n)
        if len(dump_device(WG).peers) != n:
            raise SystemExit(f"the dump of {WG} does not hold its {n} peers")
        repeat = 7 if n <= 1000 else 5
        rows.append(
            {
                "peers": n,
                "wg_show_dump_ms": median_ms(
                    lambda: subprocess.run(
                        ["wg", "show", WG, "dump"], capture_output=True, check=True
                    ),
                    repeat,
                ),
                "lean_ms": median_ms(lambda: dump_device(WG), repeat),
                "recv_ms": median_ms(recv_only, repeat),
                "pyroute2_ms": median_ms(pyroute2_read, 1 if n > 1000 else 3),
            }
        )
    subprocess.run(["ip", "link", "del", WG], check=True)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
