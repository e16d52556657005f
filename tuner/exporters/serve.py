"""The daemon's metrics endpoint, served from what the last cycle rendered.

Rendering 10,000 peers' series takes far longer than a scrape should, and the values
only change once per cycle anyway. So the daemon renders its registry once per cycle
(``Rendered.update``), a family at a time, into the textfile and a gzip stream: a
scrape costs a memory copy whatever the peer count, several Prometheus servers cost no
more than one, and what stays in memory between cycles is the compressed text (about
a tenth of it; 17 MB of text at 50,000 peers was held twice over before). A client
that does not take gzip (curl without --compressed) gets it decompressed.
"""

from __future__ import annotations

import gzip
import socket
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from tuner.exporters.exposition import chunks
from tuner.files import Strict, atomic_writer


class Rendered:
    """The newest exposition, gzipped, swapped whole so a reader never sees half of one."""

    def __init__(self) -> None:
        self._gzipped = gzip.compress(b"")

    def update(self, registry: CollectorRegistry, textfile: Path | None = None) -> None:
        """Render ``registry`` once; then, when given, write ``textfile`` from it (atomic,
        0644 in a 0755 directory: node_exporter reads it unprivileged). An OSError
        writing the textfile is raised after the served text was already updated."""
        packer = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
        parts = [packer.compress(chunk.encode("utf-8")) for chunk in chunks(registry.collect())]
        parts.append(packer.flush())
        self._gzipped = packed = b"".join(parts)  # one reference swap: old or new, whole
        if textfile is not None:
            unpacker = zlib.decompressobj(31)
            with atomic_writer(textfile, 0o644, dir_mode=0o755, strict=Strict.WARN) as out:
                for start in range(0, len(packed), 1 << 18):
                    out.write(unpacker.decompress(packed[start : start + (1 << 18)]))
                out.write(unpacker.flush())

    def body(self, *, gzipped: bool = False) -> bytes:
        packed = self._gzipped
        return packed if gzipped else gzip.decompress(packed)


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
