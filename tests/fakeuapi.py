"""An in-memory WireGuard config-socket server speaking the same line protocol."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PRIVATE_HEX = hashlib.sha256(b"private").hexdigest()
PSK_HEX = hashlib.sha256(b"preshared").hexdigest()


def peer_key_hex(i: int) -> str:
    return hashlib.sha256(f"peer{i}".encode()).hexdigest()


def make_reply(peers: int, *, handshake: int = 1_700_000_000) -> bytes:
    lines = [f"private_key={PRIVATE_HEX}", "listen_port=51820", "fwmark=0"]
    for i in range(peers):
        lines += [
            f"public_key={peer_key_hex(i)}",
            f"preshared_key={PSK_HEX}",
            "protocol_version=1",
            f"endpoint=198.51.{i // 250 % 250}.{i % 250 + 1}:{51820 + i % 1000}",
            f"last_handshake_time_sec={handshake + i}",
            "last_handshake_time_nsec=500000000",
            f"tx_bytes={i * 1000}",
            f"rx_bytes={i * 2000}",
            f"persistent_keepalive_interval={25 if i % 2 else 0}",
            f"allowed_ip=10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}/32",
            f"allowed_ip=fd00::{i:x}/128",
        ]
    lines += ["errno=0", "", ""]
    return "\n".join(lines).encode()


class FakeDaemon:
    """Serves one socket; ``reply`` is sent in ``chunk``-byte writes, or never (hang)."""

    def __init__(self, path: Path, reply: bytes, chunk: int = 4096, hang: bool = False):
        self.path = path
        self.reply = reply
        self.chunk = chunk
        self.hang = hang
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(8)
        self._sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                data = b""
                while not data.endswith(b"\n\n"):
                    part = conn.recv(65536)
                    if not part:
                        break
                    data += part
                self.requests.append(data)
                if self.hang:
                    self._stop.wait(10)
                    continue
                reply = self.reply if data.startswith(b"get=1") else b"errno=0\n\n"
                try:
                    for i in range(0, len(reply), self.chunk):
                        conn.sendall(reply[i : i + self.chunk])
                except OSError:
                    continue  # the client refused the rest (a reply too large): its right

    def __enter__(self) -> FakeDaemon:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=5)
        self.path.unlink(missing_ok=True)


@contextmanager
def daemon(sock_dir: Path, ifname: str, reply: bytes, **kw: object) -> Iterator[FakeDaemon]:
    sock_dir.mkdir(parents=True, exist_ok=True)
    with FakeDaemon(sock_dir / f"{ifname}.sock", reply, **kw) as d:  # type: ignore[arg-type]
        yield d
