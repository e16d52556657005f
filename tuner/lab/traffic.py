"""Traffic helpers run inside a lab namespace (``python -m tuner.lab.traffic ...``).

Kept as a module with a command line so the lab starts it with ``ip netns exec NS``
and an argument list: no code strings, no shell.
"""

from __future__ import annotations

import argparse
import socket
import time


def kick(address: str, port: int, count: int, interval: float) -> None:
    """Send a few small UDP datagrams so WireGuard performs a handshake."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(count):
            sock.sendto(b"wg-tuner-lab", (address, port))
            time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuner.lab.traffic")
    sub = parser.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("kick")
    k.add_argument("address")
    k.add_argument("--port", type=int, default=9)
    k.add_argument("--count", type=int, default=3)
    k.add_argument("--interval", type=float, default=0.2)
    args = parser.parse_args(argv)
    kick(args.address, args.port, args.count, args.interval)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
