"""Traffic into a VM's NIC from outside it: a UDP sender at the tap's host end.

Receive work caused by a sender inside the guest runs on a guest core itself, which is
what a softirq measurement must not see. ``Vm(host_sender=True)`` runs ``serve`` in the
tap's namespace for the whole run; the guest asks it for a flood over TCP on the same
NIC (``flood``), and the datagrams come in through the NIC's queues like a peer's.

It sends only to the guest's address, at a bounded rate, for a bounded time, and stops
as soon as the guest closes the connection.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

CONTROL_PORT = 9050
MAX_RATE = 200_000
MAX_SECONDS = 300.0
MAX_FLOWS = 256
MAX_SIZE = 1400
TICK = 0.002


@dataclass(frozen=True, slots=True)
class Request:
    rate: int
    """Datagrams per second, all flows together."""
    seconds: float
    port: int
    flows: int = 1
    """Distinct source ports: one flow per peer, as RPS hashes them."""
    size: int = 64

    @classmethod
    def parse(cls, line: bytes) -> Request:
        raw = json.loads(line)
        req = cls(
            int(raw["rate"]),
            float(raw["seconds"]),
            int(raw["port"]),
            int(raw.get("flows", 1)),
            int(raw.get("size", 64)),
        )
        if not (
            0 < req.rate <= MAX_RATE
            and 0 < req.seconds <= MAX_SECONDS
            and 0 < req.port < 65536
            and 0 < req.flows <= MAX_FLOWS
            and 0 < req.size <= MAX_SIZE
        ):
            raise ValueError(f"out of bounds: {req}")
        return req


def _send(conn: socket.socket, req: Request, guest: str) -> int:
    """Paced datagrams to ``guest`` until the time is up or ``conn`` is closed."""
    flows = []
    for _ in range(req.flows):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.connect((guest, req.port))
        flows.append(s)
    payload = os.urandom(req.size)
    conn.setblocking(False)
    sent = 0
    began = time.monotonic()
    try:
        while (now := time.monotonic()) - began < req.seconds:
            with contextlib.suppress(BlockingIOError):
                if conn.recv(1) == b"":
                    break  # the guest hung up: stop now
            due = int((now - began) * req.rate) - sent
            for i in range(due):
                with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                    flows[i % req.flows].send(payload)
            sent += max(0, due)
            time.sleep(TICK)
    finally:
        for s in flows:
            s.close()
    return sent


def serve(
    host: str, guest: str, port: int = CONTROL_PORT, stop: threading.Event | None = None
) -> None:
    """Answer the guest's requests, one at a time, until killed (or ``stop`` is set)."""
    with socket.create_server((host, port)) as server:
        sel = selectors.DefaultSelector()
        sel.register(server, selectors.EVENT_READ)
        while stop is None or not stop.is_set():
            if not sel.select(timeout=0.2):
                continue
            conn, _ = server.accept()
            with conn:
                try:
                    line = conn.makefile("rb").readline(4096)
                    req = Request.parse(line)
                    conn.sendall(b"started\n")
                    sent = _send(conn, req, guest)
                    conn.setblocking(True)
                    with contextlib.suppress(OSError):
                        conn.sendall(json.dumps({"sent": sent}).encode() + b"\n")
                except (ValueError, KeyError, OSError) as exc:
                    with contextlib.suppress(OSError):
                        conn.sendall(json.dumps({"error": str(exc)}).encode() + b"\n")


@contextlib.contextmanager
def flood(host: str, req: Request, port: int = CONTROL_PORT) -> Iterator[None]:
    """In the guest: the host end floods ``req`` into this NIC while the block runs."""
    body = {
        "rate": req.rate,
        "seconds": req.seconds,
        "port": req.port,
        "flows": req.flows,
        "size": req.size,
    }
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.sendall(json.dumps(body).encode() + b"\n")
        reply = conn.makefile("rb").readline(4096)
        if reply != b"started\n":
            raise RuntimeError(f"the host sender refused: {reply!r}")
        yield


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
