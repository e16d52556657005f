"""The daemon's metrics endpoint serves what the last cycle rendered, over loopback."""

from __future__ import annotations

import gzip
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from tuner.exporters.serve import Rendered, serve


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
