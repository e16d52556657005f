"""The daemon's metrics endpoint, served from what the last cycle rendered.

Rendering 10,000 peers' series takes far longer than a scrape should, and the values
only change once per cycle anyway. So the daemon renders its registry once per cycle
(``Rendered.update``), a family at a time, into the textfile and a gzip stream: a
scrape costs a memory copy whatever the peer count, several Prometheus servers cost no
more than one, and what stays in memory between cycles is the compressed text (about
a tenth of it). A client that does not take gzip (curl without --compressed) gets it
decompressed a slice at a time as its socket takes it, never a whole copy.

The server treats every local process as a possible adversary: one thread and one
``selectors`` loop for all connections (no thread per client), at most
``max_connections`` at once (a new one beyond that evicts the one longest without
progress), the request line
and headers bounded in size and in time (a slowloris is dropped), and the whole answer
bounded in time (a client that never reads is dropped). None of it touches the
reconcile loop, which only swaps ``Rendered``'s bytes.
"""

from __future__ import annotations

import contextlib
import gzip
import selectors
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from tuner.exporters.exposition import chunks
from tuner.files import Strict, atomic_writer

MAX_CONNECTIONS = 32
MAX_REQUEST = 8 * 1024
"""Request line and headers: a Prometheus scrape sends a few hundred bytes."""
READ_TIMEOUT = 5.0
WRITE_TIMEOUT = 30.0
_SLICE = 4 * 1024
"""Compressed bytes decompressed at a time for a plain-text client (about 40 KiB out)."""


@dataclass(frozen=True, slots=True)
class _Exposition:
    gzipped: bytes
    plain_length: int


class Rendered:
    """The newest exposition, gzipped, swapped whole so a reader never sees half of one."""

    def __init__(self) -> None:
        self._current = _Exposition(gzip.compress(b""), 0)

    def update(self, registry: CollectorRegistry, textfile: Path | None = None) -> None:
        """Render ``registry`` once; then, when given, write ``textfile`` from it (atomic,
        0644 in a 0755 directory: node_exporter reads it unprivileged). An OSError
        writing the textfile is raised after the served text was already updated."""
        packer = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
        parts, length = [], 0
        for chunk in chunks(registry.collect()):
            raw = chunk.encode("utf-8")
            length += len(raw)
            parts.append(packer.compress(raw))
        parts.append(packer.flush())
        self._current = current = _Exposition(b"".join(parts), length)  # one swap
        if textfile is not None:
            with atomic_writer(textfile, 0o644, dir_mode=0o755, strict=Strict.WARN) as out:
                for piece in _plain_pieces(current.gzipped):
                    out.write(piece)

    def current(self) -> _Exposition:
        return self._current

    def body(self, *, gzipped: bool = False) -> bytes:
        packed = self._current.gzipped
        return packed if gzipped else gzip.decompress(packed)


def _plain_pieces(packed: bytes) -> Iterator[bytes]:
    unpacker = zlib.decompressobj(31)
    view = memoryview(packed)
    for start in range(0, len(packed), _SLICE):
        piece = unpacker.decompress(view[start : start + _SLICE])
        if piece:
            yield piece
    tail = unpacker.flush()
    if tail:
        yield tail


def _gzip_pieces(packed: bytes) -> Iterator[memoryview]:
    view = memoryview(packed)
    for start in range(0, len(packed), 64 * 1024):
        yield view[start : start + 64 * 1024]


def _response(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _error(status: str) -> bytes:
    body = status.encode("ascii") + b"\n"
    head = {"Content-Type": "text/plain", "Content-Length": str(len(body)), "Connection": "close"}
    return _response(status, head) + body


def _wants_gzip(header_block: str) -> bool:
    for line in header_block.split("\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "accept-encoding":
            for coding in value.split(","):
                token, _, params = coding.strip().partition(";")
                if token.strip().lower() == "gzip" and params.replace(" ", "") != "q=0":
                    return True
    return False


@dataclass(slots=True)
class _Connection:
    sock: socket.socket
    progressed: float
    """When it was accepted or last took bytes of its answer: the one longest without
    progress is evicted first (a slowloris or a client that stopped reading, never an
    honest scrape mid-transfer)."""
    deadline: float
    request: bytearray = field(default_factory=bytearray)
    pending: memoryview | None = None
    rest: Iterator[bytes | memoryview] | None = None
    writing: bool = False


class MetricsServer:
    """Serves ``Rendered`` from one thread; see the module for its bounds."""

    def __init__(
        self,
        address: str,
        port: int,
        rendered: Rendered,
        *,
        max_connections: int = MAX_CONNECTIONS,
        read_timeout: float = READ_TIMEOUT,
        write_timeout: float = WRITE_TIMEOUT,
    ) -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((address, port))
            self._listener.listen(64)
            self._listener.setblocking(False)
        except OSError:
            self._listener.close()
            raise
        self.server_address = self._listener.getsockname()
        self.rendered = rendered
        self.max_connections = max_connections
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.served = self.dropped = 0
        self._conns: dict[int, _Connection] = {}
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="metrics", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def shutdown(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def server_close(self) -> None:
        for conn in list(self._conns.values()):
            self._close(conn)
        self._selector.close()
        self._listener.close()

    def connections(self) -> int:
        return len(self._conns)

    def _loop(self) -> None:
        while not self._stop.is_set():
            listener_ready = False
            for key, _ in self._selector.select(timeout=0.25):
                if key.fileobj is self._listener:
                    listener_ready = True
                    continue
                conn = self._conns.get(key.fd)
                if conn is None:
                    continue
                try:
                    self._write(conn) if conn.writing else self._read(conn)
                except OSError:
                    self._close(conn, dropped=True)
            if listener_ready:  # after the others: a request that arrived is read first
                self._accept()
            now = time.monotonic()
            for conn in [c for c in self._conns.values() if c.deadline < now]:
                self._close(conn, dropped=True)

    def _accept(self) -> None:
        # A few a round, so a flood of new connections cannot evict an honest scrape
        # before its request (already sent) is read in the next round.
        for _ in range(max(1, self.max_connections // 4)):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # EMFILE and the like: the next select tries again
            if len(self._conns) >= self.max_connections:
                self._close(min(self._conns.values(), key=lambda c: c.progressed), dropped=True)
            sock.setblocking(False)
            now = time.monotonic()
            conn = _Connection(sock, now, now + self.read_timeout)
            self._conns[sock.fileno()] = conn
            self._selector.register(sock, selectors.EVENT_READ)

    def _read(self, conn: _Connection) -> None:
        chunk = conn.sock.recv(4096)
        if not chunk:
            self._close(conn)
            return
        conn.request += chunk
        end = conn.request.find(b"\r\n\r\n")
        if end < 0:
            end = conn.request.find(b"\n\n")
        if end < 0:
            if len(conn.request) > MAX_REQUEST:
                self._answer(conn, _error("431 Request Header Fields Too Large"))
            return
        if end > MAX_REQUEST:
            self._answer(conn, _error("431 Request Header Fields Too Large"))
            return
        head = conn.request[:end].decode("latin-1").replace("\r\n", "\n")
        method, _, rest = head.partition("\n")[0].partition(" ")
        target = rest.partition(" ")[0]
        if method not in ("GET", "HEAD"):
            self._answer(conn, _error("405 Method Not Allowed"))
        elif target.split("?", 1)[0] not in ("/", "/metrics"):
            self._answer(conn, _error("404 Not Found"))
        else:
            self._metrics(conn, gzipped=_wants_gzip(head), head_only=method == "HEAD")

    def _metrics(self, conn: _Connection, *, gzipped: bool, head_only: bool) -> None:
        exposition = self.rendered.current()
        headers = {"Content-Type": CONTENT_TYPE_LATEST, "Connection": "close"}
        if gzipped:
            headers["Content-Length"] = str(len(exposition.gzipped))
            headers["Content-Encoding"] = "gzip"
            body: Iterator[bytes | memoryview] = _gzip_pieces(exposition.gzipped)
        else:
            headers["Content-Length"] = str(exposition.plain_length)
            body = _plain_pieces(exposition.gzipped)
        self._answer(conn, _response("200 OK", headers), iter(()) if head_only else body)

    def _answer(
        self, conn: _Connection, head: bytes, body: Iterator[bytes | memoryview] | None = None
    ) -> None:
        conn.writing = True
        conn.request = bytearray()
        conn.pending = memoryview(head)
        conn.rest = body if body is not None else iter(())
        conn.deadline = time.monotonic() + self.write_timeout
        self._selector.modify(conn.sock, selectors.EVENT_WRITE)
        self._write(conn)

    def _write(self, conn: _Connection) -> None:
        while True:
            if conn.pending is None or not len(conn.pending):
                piece = next(conn.rest, None) if conn.rest is not None else None
                if piece is None:
                    self.served += 1
                    with contextlib.suppress(OSError):
                        conn.sock.shutdown(socket.SHUT_WR)
                    self._close(conn)
                    return
                conn.pending = memoryview(piece)
            try:
                sent = conn.sock.send(conn.pending)
            except (BlockingIOError, InterruptedError):
                return  # the socket is full: wait for the selector
            conn.pending = conn.pending[sent:]
            conn.progressed = time.monotonic()

    def _close(self, conn: _Connection, *, dropped: bool = False) -> None:
        if self._conns.pop(conn.sock.fileno(), None) is None:
            return
        self.dropped += dropped
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)
        conn.sock.close()


def serve(address: str, port: int, rendered: Rendered) -> MetricsServer:
    """Serve ``rendered`` on ``address:port`` from a daemon thread; OSError when the
    port is taken or refused (the caller says which port)."""
    return MetricsServer(address, port, rendered).start()
