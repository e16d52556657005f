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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from tuner.adapters.sockowner import SocketOwner, find_owner
from tuner.adapters.x25519 import public_from_private
from tuner.errors import ObserveError, ProtocolError, TransientObserveError, TunerError
from tuner.model.snapshot import Peer

MAX_REPLY = 64 * 1024 * 1024
"""Larger than any real device's reply (wireguard-go answers about 330 bytes a peer:
10,000 peers are 3.3 MB, 100,000 with a few allowed IPs each well under 64 MB), so a
larger one is a hostile or broken server: refused instead of eating memory."""
MAX_PEER_BLOCK = 4 * 1024 * 1024
"""One peer's lines (or the interface's before the first peer): 100,000 allowed IPs."""

_KEY_RE = re.compile(r"[a-z_]{1,40}")
_VALUE_RE = re.compile(r"[\x21-\x3c\x3e-\x7e]{0,256}")
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
class UapiDevice:
    public_key: str | None
    listen_port: int
    fwmark: int
    peers: tuple[Peer, ...]


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


_PEER_BLOCK = re.compile(
    r"public_key=([0-9a-f]{64})\n"
    r"(?:preshared_key=[0-9a-f]{64}\n)?"
    r"(?:protocol_version=\d+\n)?"
    r"(?:endpoint=((?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-f:.]{2,45}(?:%[\w.-]{1,16})?\]):\d{1,5})\n)?"
    r"last_handshake_time_sec=(\d+)\n"
    r"last_handshake_time_nsec=(\d+)\n"
    r"tx_bytes=(\d+)\n"
    r"rx_bytes=(\d+)\n"
    r"persistent_keepalive_interval=(\d+)\n"
    r"((?:allowed_ip=[0-9a-f.:]{2,45}/\d{1,3}\n)*)"
)
"""One peer in wireguard-go's field order; lets a 10,000-peer reply parse in C-speed passes."""


PeerBlock = tuple[str, str, str, str, str, str, str, str]
"""One peer's captured fields (no secrets: the preshared key is not captured)."""


def _fast_peers(
    segment: str, known: Mapping[PeerBlock, Peer], seen: dict[PeerBlock, Peer]
) -> list[Peer] | None:
    """Peers of whole peer blocks in wireguard-go's exact layout, or None (use the generic parser).

    Accepted only when every ``public_key=`` matched, every line is one ``key=value`` and
    no ``allowed_ip`` line was skipped; anything unusual (another implementation's order,
    garbage) returns None. A block identical to one in ``known`` (the previous read: an
    idle peer) reuses that Peer; every block read is recorded in ``seen``.
    """
    blocks: list[PeerBlock] = _PEER_BLOCK.findall(segment)
    if len(blocks) != segment.count("public_key="):
        return None
    if segment.count("=") != segment.count("\n"):
        return None
    if segment.count("allowed_ip=") != sum([b[7].count("\n") for b in blocks]):
        return None
    out: list[Peer] = []
    for block in blocks:
        peer = known.get(block)
        if peer is None:
            key, endpoint, sec, nsec, tx, rx, keepalive, allowed = block
            peer = Peer(
                base64.b64encode(bytes.fromhex(key)).decode("ascii"),
                endpoint or None,
                tuple(allowed[11:-1].split("\nallowed_ip=")) if allowed else (),
                int(sec) + int(nsec) / 1e9 if sec != "0" else 0.0,
                int(rx),
                int(tx),
                int(keepalive),
            )
        seen[block] = peer
        out.append(peer)
    return out


ENDPOINT = re.compile(
    r"(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]{2,45}(?:%[\w.-]{1,16})?\]):\d{1,5}"
)
"""An endpoint as the protocol writes it: ``IPv4:port`` or ``[IPv6%scope]:port``."""
ALLOWED_IP = re.compile(r"[0-9a-fA-F.:]{2,45}/\d{1,3}")


class GetParser:
    """Parses a ``get=1`` reply while it arrives, so parsing overlaps the daemon's writing.

    The reply is cut at peer boundaries as it arrives and each run of whole peer blocks is
    parsed at once, on the fast path when it is in wireguard-go's exact layout and line by
    line otherwise; nothing but the unparsed tail is kept, so time and memory stay linear
    in the reply whatever a hostile server sends. The server is treated as hostile:
    endpoints and allowed IPs must fit their grammar (no NUL, space or escape), a run
    without a peer boundary is bounded, and any malformed value is a ``ProtocolError``
    for this interface only.
    """

    def __init__(self, ifname: str, known: Mapping[PeerBlock, Peer] | None = None) -> None:
        self.ifname = ifname
        self.known: Mapping[PeerBlock, Peer] = known or {}
        self.seen: dict[PeerBlock, Peer] = {}
        self._parts: list[str] = []
        self._size = 0
        self._tail = "\n"  # a reply may start with its first peer
        self._head: dict[str, str] | None = None
        self._peers: list[Peer] = []
        self._fast = True

    def feed(self, chunk: bytes) -> None:
        try:
            text = chunk.decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError(self.ifname, "reply is not ASCII") from None
        window = self._tail + text
        cut = window.rfind("\npublic_key=")
        if cut < 0 or cut + 1 <= len(self._tail) - self._size:
            self._keep(text)
            return
        at = self._size - len(self._tail) + cut + 1  # offset of the boundary in the pending
        pending = "".join(self._parts) + text
        self._parts, self._size, self._tail = [], 0, "\n"
        self._take(pending[:at])
        self._keep(pending[at:])

    def _keep(self, text: str) -> None:
        if not text:
            return
        self._parts.append(text)
        self._size += len(text)
        self._tail = (self._tail + text)[-12:]
        if self._size > MAX_PEER_BLOCK:
            raise ProtocolError(self.ifname, "reply has no peer boundary where one must be")

    def _take(self, segment: str) -> None:
        """Parse a run of whole lines ending at a peer boundary (or at errno)."""
        if not segment:
            return
        if self._head is None:
            first = 0 if segment.startswith("public_key=") else segment.find("\npublic_key=") + 1
            if first <= 0 and not segment.startswith("public_key="):
                first = len(segment)
            self._head = _head_fields(self.ifname, segment[:first])
            segment = segment[first:]
            if not segment:
                return
        peers = None
        if self._fast:
            try:
                peers = _fast_peers(segment, self.known, self.seen)
            except ValueError:
                peers = None
        if peers is None:
            self._fast = False
            peers = _generic_peers(self.ifname, segment)
        self._peers.extend(peers)

    def finish(self) -> UapiDevice:
        text = "".join(self._parts)
        at = _check_errno(self.ifname, text)
        self._take(text[:at])
        if self._head is None:
            self._head = _head_fields(self.ifname, "")
        return _device(self.ifname, self._head, tuple(self._peers))


def parse_get(ifname: str, text: str) -> UapiDevice:
    """Parse a whole ``get=1`` reply. Secrets are dropped here and go no further."""
    parser = GetParser(ifname)
    parser.feed(text.encode("ascii", errors="replace"))
    return parser.finish()


def _check_errno(ifname: str, text: str) -> int:
    """Offset of the trailing ``errno=N``; raises unless the reply ends with errno 0."""
    if not text.endswith("\n\n"):
        raise ProtocolError(ifname, "reply does not end with errno")
    at = text.rfind("errno=")
    if at < 0 or (at and text[at - 1] != "\n") or "\n" in text[at:-2]:
        raise ProtocolError(ifname, "reply does not end with errno")
    try:
        errno = int(text[at + 6 : -2])
    except ValueError:
        raise ProtocolError(ifname, "errno is not a number") from None
    if errno:
        raise UapiErrno(ifname, errno)
    return at


def _lines(ifname: str, text: str) -> Iterator[tuple[str, str]]:
    for line in text.split("\n")[:-1]:
        key, sep, value = line.partition("=")
        if not sep:
            raise ProtocolError(ifname, "line without '='")
        yield key, value


def _head_fields(ifname: str, text: str) -> dict[str, str]:
    """The interface's own lines; the private key becomes the public key right here."""
    head: dict[str, str] = {}
    if len(text) > MAX_PEER_BLOCK:
        raise ProtocolError(ifname, "reply has no peer boundary where one must be")
    try:
        for key, value in _lines(ifname, text):
            if key == "private_key":
                head["public_key"] = base64.b64encode(
                    public_from_private(bytes.fromhex(value))
                ).decode("ascii")
            elif key in ("listen_port", "fwmark"):
                head[key] = str(int(value))
    except ValueError:
        raise ProtocolError(ifname, "malformed value in reply") from None  # may be a key
    return head


def _device(ifname: str, head: Mapping[str, str], peers: tuple[Peer, ...]) -> UapiDevice:
    return UapiDevice(
        head.get("public_key"), int(head.get("listen_port", 0)), int(head.get("fwmark", 0)), peers
    )


def _generic_peers(ifname: str, text: str) -> list[Peer]:
    """Peers in any field order (boringtun, future versions), one line at a time."""
    peers: list[Peer] = []
    current: dict[str, str] | None = None
    allowed: list[str] = []

    def finish() -> None:
        if current is not None:
            endpoint = current.get("endpoint")
            if endpoint is not None and not ENDPOINT.fullmatch(endpoint):
                raise ProtocolError(ifname, "endpoint is not an address and port")
            peers.append(
                Peer(
                    public_key=current["public_key"],
                    endpoint=endpoint,
                    allowed_ips=tuple(allowed),
                    latest_handshake=int(current.get("last_handshake_time_sec", "0"))
                    + int(current.get("last_handshake_time_nsec", "0")) / 1e9,
                    rx_bytes=int(current.get("rx_bytes", "0")),
                    tx_bytes=int(current.get("tx_bytes", "0")),
                    persistent_keepalive=int(current.get("persistent_keepalive_interval", "0")),
                )
            )

    try:
        for key, value in _lines(ifname, text):
            if key == "allowed_ip":
                if not ALLOWED_IP.fullmatch(value):
                    raise ProtocolError(ifname, "allowed_ip is not a prefix")
                allowed.append(value)
            elif key == "public_key":
                finish()
                current = {"public_key": hex_to_b64(value)}
                allowed = []
            elif current is None:
                raise ProtocolError(ifname, "peer field before any public_key")
            elif key in _PEER_FIELDS:
                # preshared_key is never kept; protocol_version and unknown keys are ignored.
                current[key] = value
        finish()
    except ValueError:
        # Never echo the value: it may be a key.
        raise ProtocolError(ifname, "malformed value in reply") from None
    return peers


def _generic_get(ifname: str, text: str) -> UapiDevice:
    """A whole reply, line by line (the reference the streaming parser is tested against)."""
    at = _check_errno(ifname, text)
    body = text[:at]
    first = 0 if body.startswith("public_key=") else body.find("\npublic_key=") + 1
    if first <= 0 and not body.startswith("public_key="):
        first = len(body)
    head = _head_fields(ifname, body[:first])
    return _device(ifname, head, tuple(_generic_peers(ifname, body[first:])))


_PEER_FIELDS = frozenset(
    {
        "endpoint",
        "last_handshake_time_sec",
        "last_handshake_time_nsec",
        "rx_bytes",
        "tx_bytes",
        "persistent_keepalive_interval",
    }
)


def encode_set(ifname: str, items: Sequence[tuple[str, str]]) -> bytes:
    """A ``set=1`` request; every key and value is validated before anything is sent."""
    out = ["set=1"]
    for key, value in items:
        if key not in SETTABLE_KEYS or not _KEY_RE.fullmatch(key):
            raise ValueError(f"{ifname}: refusing config key {key!r}")
        if not _VALUE_RE.fullmatch(value):
            raise ValueError(f"{ifname}: refusing a value for {key} (bad characters or length)")
        out.append(f"{key}={value}")
    return ("\n".join(out) + "\n\n").encode("ascii")


class UapiClient:
    """Talks to one daemon socket per call; every call has a deadline."""

    def __init__(self, socket_dir: Path, timeout: float = 2.0, proc: Path = Path("/proc")) -> None:
        self.socket_dir = socket_dir
        self.timeout = timeout
        self.proc = proc
        self._known: dict[str, dict[PeerBlock, Peer]] = {}
        self._owners: dict[str, SocketOwner] = {}

    def socket_path(self, ifname: str) -> Path:
        return self.socket_dir / f"{ifname}.sock"

    def has_socket(self, ifname: str) -> bool:
        return self.socket_path(ifname).is_socket()

    def owner(self, ifname: str) -> SocketOwner | None:
        """The userspace WireGuard behind IF's config socket: the process holding the
        listening socket (``tuner.adapters.sockowner``), never SO_PEERCRED's pid."""
        last = self._owners.get(ifname)
        found = find_owner(self.proc, self.socket_path(ifname), last.pid if last else None)
        if found is None:
            self._owners.pop(ifname, None)
        else:
            self._owners[ifname] = found
        return found

    def pid(self, ifname: str) -> int | None:
        """The pid of IF's userspace WireGuard, whose threads do the crypto."""
        found = self.owner(ifname)
        return found.pid if found else None

    def get(self, ifname: str) -> UapiDevice:
        parser = GetParser(ifname, self._known.pop(ifname, None))
        self._exchange(ifname, b"get=1\n\n", parser.feed)
        device = parser.finish()
        # Only the last read is remembered, so this holds at most one reply's peers.
        self._known[ifname] = parser.seen
        return device

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

    def _request(self, ifname: str, payload: bytes) -> bytes:
        chunks: list[bytes] = []
        self._exchange(ifname, payload, chunks.append)
        return b"".join(chunks)

    @retry(
        retry=retry_if_exception_type(TransientObserveError),
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=0.05, max=0.5),
        reraise=True,
    )
    def _connect(self, ifname: str) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.socket_path(ifname)))
        except (ConnectionRefusedError, BlockingIOError) as exc:
            sock.close()
            raise TransientObserveError(f"{ifname}: config socket busy") from exc
        except FileNotFoundError as exc:
            sock.close()
            raise ObserveError(f"{ifname}: no config socket") from exc
        except TimeoutError as exc:
            sock.close()
            raise UapiTimeout(f"{ifname}: config socket timed out") from exc
        except OSError as exc:
            sock.close()
            raise ObserveError(f"{ifname}: config socket: {exc.strerror}") from exc
        return sock

    def _exchange(self, ifname: str, payload: bytes, sink: Callable[[bytes], None]) -> None:
        """Send ``payload`` and hand each received chunk to ``sink`` until the blank line."""
        deadline = time.monotonic() + self.timeout
        sock = self._connect(ifname)
        size = 0
        tail = b""
        try:
            sock.sendall(payload)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise UapiTimeout(f"{ifname}: config socket timed out")
                sock.settimeout(remaining)
                chunk = sock.recv(1 << 18)
                if not chunk:
                    return
                size += len(chunk)
                if size > MAX_REPLY:
                    raise ProtocolError(ifname, "reply too large")
                sink(chunk)
                tail = (tail + chunk)[-2:]
                if tail == b"\n\n":
                    return
        except TimeoutError as exc:
            raise UapiTimeout(f"{ifname}: config socket timed out") from exc
        except OSError as exc:
            raise ObserveError(f"{ifname}: config socket: {exc.strerror}") from exc
        finally:
            sock.close()
