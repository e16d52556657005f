"""The daemon's metrics endpoint, served from what the last cycle rendered.

Rendering 10,000 peers' series takes far longer than a scrape should, and the values
only change once per cycle anyway. So the daemon renders its registry once per cycle
(``Rendered.update``), and every scrape and the textfile get those bytes: a scrape
costs a memory copy whatever the peer count, and several Prometheus servers scraping
the same host cost no more than one.
"""

from __future__ import annotations

import gzip
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from tuner.exporters.exposition import render_registry
from tuner.exporters.metrics import write_exposition


class Rendered:
    """The newest exposition text, swapped whole so a reader never sees half of one."""

    def __init__(self) -> None:
        self._body = b""
        self._gzipped: bytes | None = None
        self._lock = threading.Lock()

    def update(self, registry: CollectorRegistry) -> bytes:
        body = render_registry(registry)
        with self._lock:
            self._body, self._gzipped = body, None
        return body

    def body(self, *, gzipped: bool = False) -> bytes:
        with self._lock:
            if not gzipped:
                return self._body
            if self._gzipped is None:  # once per render, for the first scraper asking
                self._gzipped = gzip.compress(self._body, compresslevel=1)
            return self._gzipped

    def write_textfile(self, path: Path) -> None:
        write_exposition(path, self.body().decode("utf-8"))


class _Handler(BaseHTTPRequestHandler):
    rendered: Rendered

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] not in ("/", "/metrics"):
            self.send_error(404)
            return
        gzipped = "gzip" in self.headers.get("Accept-Encoding", "")
        body = self.rendered.body(gzipped=gzipped)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged: one line per scrape would drown the daemon's log."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def serve(address: str, port: int, rendered: Rendered) -> ThreadingHTTPServer:
    """Serve ``rendered`` on ``address:port`` from a daemon thread; OSError when the
    port is taken or refused (the caller says which port)."""
    handler = type("Handler", (_Handler,), {"rendered": rendered})
    server = (_Server6 if ":" in address else _Server)((address, port), handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
