"""The VM's host-side sender, on loopback: paced datagrams from several source ports to
the one address it serves, stopped when the asker hangs up, bounds refused."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tuner.lab.vm_sender import Request, flood, serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def control() -> Iterator[int]:
    port, stop = free_port(), threading.Event()
    thread = threading.Thread(target=serve, args=("127.0.0.1", "127.0.0.1", port, stop))
    thread.start()
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except ConnectionRefusedError:
            time.sleep(0.02)
    try:
        yield port
    finally:
        stop.set()
        thread.join(timeout=10)


def test_floods_from_several_flows_and_stops_when_the_guest_hangs_up(control: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(0.3)
        request = Request(rate=2000, seconds=60, port=rx.getsockname()[1], flows=4, size=100)
        sources, sizes = set(), set()
        with flood("127.0.0.1", request, control):
            began = time.monotonic()
            while time.monotonic() - began < 0.5:
                data, (_, src) = rx.recvfrom(2048)
                sources.add(src)
                sizes.add(len(data))
        hung_up = time.monotonic()
        while time.monotonic() - hung_up < 1.0:  # what was in flight, for at most 1 s
            try:
                rx.recvfrom(2048)
            except TimeoutError:
                break
        assert len(sources) == 4 and sizes == {100}
        with pytest.raises(TimeoutError):
            rx.recvfrom(2048)  # stopped with the connection, long before its 60 s


@pytest.mark.parametrize(
    "request_",
    [
        Request(rate=10**6, seconds=1, port=9),
        Request(rate=10, seconds=3600, port=9),
        Request(rate=10, seconds=1, port=9, flows=1000),
        Request(rate=10, seconds=1, port=9, size=9000),
    ],
)
def test_out_of_bounds_requests_are_refused(control: int, request_: Request) -> None:
    with pytest.raises(RuntimeError, match="out of bounds"), flood("127.0.0.1", request_, control):
        pass
