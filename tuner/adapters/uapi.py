"""Client for the cross-platform WireGuard configuration protocol (wireguard-go, boringtun).

The protocol is line based over ``/var/run/wireguard/IFACE.sock``: ``get=1`` returns
``key=value`` lines ending in ``errno=N`` and a blank line; ``set=1`` takes such lines.
Keys are hex here and base64 everywhere else. Private and preshared keys are dropped in
``parse_get``, the only place they are ever seen (the interface's public key is derived
from the private key first).
"""

from __future__ import annotations

import base64
import binascii
import re
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from tuner.adapters.x25519 import public_from_private
from tuner.errors import ObserveError, ProtocolError, TransientObserveError, TunerError

MAX_REPLY = 256 * 1024 * 1024
"""A reply larger than this is not a WireGuard device; refuse instead of eating memory."""

_KEY_RE = re.compile(r"^[a-z_]{1,40}$")
_VALUE_RE = re.compile(r"^[\x21-\x3c\x3e-\x7e]{0,256}$")
"""Printable ASCII without space or '=': a value can never carry a newline, NUL or a key."""

SETTABLE_KEYS = frozenset(
    {
        "private_key",
        "listen_port",
        "fwmark",
        "public_key",
        "update_only",
        "preshared_key",
        "endpoint",
        "persistent_keepalive_interval",
        "replace_allowed_ips",
        "allowed_ip",
        "protocol_version",
    }
)
"""``replace_peers`` and ``remove`` are deliberately absent: wg-tuner never drops peers."""


class UapiTimeout(ObserveError):
    """The config socket did not answer in time (a hung daemon)."""


class UapiErrno(TunerError):
    """The daemon answered with a non-zero errno."""

    def __init__(self, ifname: str, errno: int) -> None:
        super().__init__(f"{ifname}: WireGuard config socket returned errno={errno}")
        self.ifname = ifname
        self.errno = errno


@dataclass(frozen=True, slots=True)
class UapiPeer:
    public_key: str
    endpoint: str | None
    allowed_ips: tuple[str, ...]
    latest_handshake: float
    rx_bytes: int
    tx_bytes: int
    persistent_keepalive: int


@dataclass(frozen=True, slots=True)
class UapiDevice:
    public_key: str | None
    listen_port: int
    fwmark: int
    peers: tuple[UapiPeer, ...]


def hex_to_b64(value: str) -> str:
    return base64.b64encode(bytes.fromhex(value)).decode("ascii")


def b64_to_hex(value: str) -> str:
    """A base64 WireGuard key as hex; raises ValueError unless it is exactly 32 bytes."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not a base64 WireGuard key") from exc
    if len(raw) != 32:
        raise ValueError("a WireGuard key is 32 bytes")
    return raw.hex()


def parse_get(ifname: str, text: str) -> UapiDevice:
    """Parse a ``get=1`` reply. Secrets are dropped here and go no further."""
    lines = text.split("\n")
    # The reply ends "errno=N\n\n": the split leaves two empty strings behind it.
    if len(lines) < 3 or lines[-1] or lines[-2] or not lines[-3].startswith("errno="):
        raise ProtocolError(ifname, "reply does not end with errno")
    try:
        errno = int(lines[-3][6:])
    except ValueError:
        raise ProtocolError(ifname, "errno is not a number") from None
    if errno:
        raise UapiErrno(ifname, errno)
    public_key: str | None = None
    listen_port = fwmark = 0
    peers: list[UapiPeer] = []
    peer: dict[str, object] | None = None
    allowed: list[str] = []

    def finish() -> None:
        if peer is not None:
            peers.append(
                UapiPeer(
                    public_key=str(peer["public_key"]),
                    endpoint=peer.get("endpoint"),  # type: ignore[arg-type]
                    allowed_ips=tuple(allowed),
                    latest_handshake=float(peer.get("hs_sec", 0))  # type: ignore[arg-type]
                    + float(peer.get("hs_nsec", 0)) / 1e9,  # type: ignore[arg-type]
                    rx_bytes=int(peer.get("rx", 0)),  # type: ignore[call-overload]
                    tx_bytes=int(peer.get("tx", 0)),  # type: ignore[call-overload]
                    persistent_keepalive=int(peer.get("ka", 0)),  # type: ignore[call-overload]
                )
            )

    try:
        for line in lines[:-3]:
            key, sep, value = line.partition("=")
            if not sep:
                raise ProtocolError(ifname, "line without '='")
            if key == "allowed_ip":
                allowed.append(value)
            elif key == "public_key":
                finish()
                peer = {"public_key": hex_to_b64(value)}
                allowed = []
            elif peer is not None:
                if key == "endpoint":
                    peer["endpoint"] = value
                elif key == "last_handshake_time_sec":
                    peer["hs_sec"] = int(value)
                elif key == "last_handshake_time_nsec":
                    peer["hs_nsec"] = int(value)
                elif key == "rx_bytes":
                    peer["rx"] = int(value)
                elif key == "tx_bytes":
                    peer["tx"] = int(value)
                elif key == "persistent_keepalive_interval":
                    peer["ka"] = int(value)
                # preshared_key, protocol_version and unknown keys are ignored on purpose.
            elif key == "private_key":
                public_key = base64.b64encode(
                    public_from_private(bytes.fromhex(value))
                ).decode("ascii")
            elif key == "listen_port":
                listen_port = int(value)
            elif key == "fwmark":
                fwmark = int(value)
        finish()
    except ValueError:
        # Never echo the value: it may be a key.
        raise ProtocolError(ifname, "malformed value in reply") from None
    return UapiDevice(public_key, listen_port, fwmark, tuple(peers))


def encode_set(ifname: str, items: Sequence[tuple[str, str]]) -> bytes:
    """A ``set=1`` request; every key and value is validated before anything is sent."""
    out = ["set=1"]
    for key, value in items:
        if key not in SETTABLE_KEYS or not _KEY_RE.match(key):
            raise ValueError(f"{ifname}: refusing config key {key!r}")
        if not _VALUE_RE.match(value):
            raise ValueError(f"{ifname}: refusing a value for {key} (bad characters or length)")
        out.append(f"{key}={value}")
    return ("\n".join(out) + "\n\n").encode("ascii")


class UapiClient:
    """Talks to one daemon socket per call; every call has a deadline."""

    def __init__(self, socket_dir: Path, timeout: float = 2.0) -> None:
        self.socket_dir = socket_dir
        self.timeout = timeout

    def socket_path(self, ifname: str) -> Path:
        return self.socket_dir / f"{ifname}.sock"

    def has_socket(self, ifname: str) -> bool:
        return self.socket_path(ifname).is_socket()

    def get(self, ifname: str) -> UapiDevice:
        raw = self._request(ifname, b"get=1\n\n")
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError(ifname, "reply is not ASCII") from None
        return parse_get(ifname, text)

    def set(self, ifname: str, items: Sequence[tuple[str, str]]) -> None:
        raw = self._request(ifname, encode_set(ifname, items))
        text = raw.decode("ascii", errors="replace")
        if not text.startswith("errno=") or not text.endswith("\n\n"):
            raise ProtocolError(ifname, "set reply is not errno=N")
        try:
            errno = int(text[6:].strip())
        except ValueError:
            raise ProtocolError(ifname, "errno is not a number") from None
        if errno:
            raise UapiErrno(ifname, errno)

    @retry(
        retry=retry_if_exception_type(TransientObserveError),
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=0.05, max=0.5),
        reraise=True,
    )
    def _request(self, ifname: str, payload: bytes) -> bytes:
        deadline = time.monotonic() + self.timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.socket_path(ifname)))
            except (ConnectionRefusedError, BlockingIOError) as exc:
                raise TransientObserveError(f"{ifname}: config socket busy") from exc
            except FileNotFoundError as exc:
                raise ObserveError(f"{ifname}: no config socket") from exc
            sock.sendall(payload)
            chunks: list[bytes] = []
            size = 0
            tail = b""
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise UapiTimeout(f"{ifname}: config socket timed out")
                sock.settimeout(remaining)
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_REPLY:
                    raise ProtocolError(ifname, "reply too large")
                tail = (tail + chunk)[-2:]
                if tail == b"\n\n":
                    break
        except TimeoutError as exc:
            raise UapiTimeout(f"{ifname}: config socket timed out") from exc
        finally:
            sock.close()
        return b"".join(chunks)
