"""The daemon's metrics endpoint serves what the last cycle rendered, over loopback."""

from __future__ import annotations

import gzip
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from tuner.exporters.serve import MetricsServer, Rendered, serve


def get(port: int, path: str = "/metrics", gz: bool = False) -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if gz:
        request.add_header("Accept-Encoding", "gzip")
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - http only
        return answer.read(), dict(answer.headers)


def test_a_scrape_serves_the_last_render_not_the_live_registry() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("wg_tuner_example", "an example", registry=registry)
    gauge.set(1)
    rendered = Rendered()
    rendered.update(registry)
    server = serve("127.0.0.1", 0, rendered)
    port = server.server_address[1]
    try:
        gauge.set(2)  # changed after the render: scrapes do not render again
        body, headers = get(port)
        assert b"wg_tuner_example 1.0" in body
        assert headers["Content-Type"].startswith("text/plain; version=")
        rendered.update(registry)  # the next cycle
        zipped, headers = get(port, gz=True)
        assert headers["Content-Encoding"] == "gzip"
        assert b"wg_tuner_example 2.0" in gzip.decompress(zipped)
        with pytest.raises(urllib.error.HTTPError) as missing:
            get(port, "/other")
        assert missing.value.code == 404
        missing.value.close()
    finally:
        server.shutdown()
        server.server_close()


def test_a_taken_port_is_an_oserror_for_the_caller_to_name() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            serve("127.0.0.1", taken.getsockname()[1], Rendered())


def test_the_textfile_is_the_served_text_and_a_failed_write_keeps_scrapes_fresh(
    tmp_path: Path,
) -> None:
    registry = CollectorRegistry()
    gauge = Gauge("wg_tuner_example", "an example", registry=registry)
    gauge.set(3)
    rendered = Rendered()
    target = tmp_path / "wg_tuner.prom"
    rendered.update(registry, target)
    assert target.read_bytes() == rendered.body() == generate_latest(registry)
    gauge.set(4)
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    with pytest.raises(OSError):
        rendered.update(registry, blocked / "wg_tuner.prom")  # its directory cannot exist
    assert b"wg_tuner_example 4.0" in rendered.body()  # served text moved on regardless


def _server(rendered: Rendered, **bounds: float) -> MetricsServer:
    return MetricsServer("127.0.0.1", 0, rendered, **bounds).start()  # type: ignore[arg-type]


def _big_rendered(lines: int = 200_000) -> Rendered:
    """An exposition far larger than a loopback socket buffers (about 7 MB of text)."""
    registry = CollectorRegistry()
    gauge = Gauge("wg_tuner_big", "big", ["peer"], registry=registry)
    for i in range(lines):
        gauge.labels(peer=f"peer-{i:08d}").set(i)
    rendered = Rendered()
    rendered.update(registry)
    return rendered


def test_a_slowloris_is_dropped_and_never_stops_a_scrape() -> None:
    rendered = _big_rendered(10)
    server = _server(rendered, read_timeout=0.5)
    port = server.server_address[1]
    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
    try:
        for sock in slow:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the end
        body, _ = get(port)  # served while they hang
        assert b"wg_tuner_big" in body
        time.sleep(1.0)
        for sock in slow:
            sock.settimeout(2)
            assert sock.recv(100) == b"", "a slow request must be dropped at its deadline"
        assert server.connections() == 0
    finally:
        for sock in slow:
            sock.close()
        server.shutdown()
        server.server_close()


def test_clients_that_never_read_are_dropped_and_scrapes_go_on() -> None:
    rendered = _big_rendered()
    server = _server(rendered, write_timeout=1.0, max_connections=4)
    port = server.server_address[1]
    stuck = []
    try:
        for _ in range(12):  # three times the cap, none of them reading its answer
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
            stuck.append(sock)
        time.sleep(0.2)
        assert server.connections() <= 4, "the cap holds: the oldest are evicted"
        zipped, _ = get(port, gz=True)
        assert b"wg_tuner_big" in gzip.decompress(zipped)
        time.sleep(1.5)
        assert server.connections() == 0, "a client that never reads is dropped at its deadline"
        assert server.dropped >= 12
    finally:
        for sock in stuck:
            sock.close()
        server.shutdown()
        server.server_close()


def test_a_plain_scrape_streams_the_same_text_the_textfile_holds(tmp_path: Path) -> None:
    rendered = _big_rendered(20_000)
    server = _server(rendered)
    try:
        body, headers = get(server.server_address[1])
        assert int(headers["Content-Length"]) == len(body) == len(rendered.body())
        assert body == rendered.body()
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n", b"431"),
        (b"POST /metrics HTTP/1.1\r\n\r\n", b"405"),
        (b"\x00\x01\x02 / HTTP/1.1\r\n\r\n", b"405"),
        (b"GET /../../etc/shadow HTTP/1.1\r\n\r\n", b"404"),
    ],
)
def test_bad_requests_get_a_status_and_the_connection_closes(
    request_bytes: bytes, status: bytes
) -> None:
    server = _server(Rendered())
    try:
        with socket.create_connection(("127.0.0.1", server.server_address[1])) as sock:
            sock.settimeout(5)
            sock.sendall(request_bytes)
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        assert answer.split(b" ", 2)[1] == status
    finally:
        server.shutdown()
        server.server_close()
