"""A lean generic-netlink dump of one kernel WireGuard device (``WG_CMD_GET_DEVICE``).

Reading 10,000 peers through pyroute2's generic message classes took 52 times as long as
``wg show IF dump`` in the VM; this reads the same dump with ``struct`` straight from the
socket's buffers. The private and preshared keys are attributes it steps over without
copying: they never become a Python object. Writes stay with pyroute2 (keepalive).

The wire format is ``include/uapi/linux/wireguard.h``: a device's peers arrive over
several multi-part messages, and one peer's allowed IPs may continue in the next
message under the same public key.
"""

from __future__ import annotations

import errno as errnos
import os
import socket
import struct
from binascii import b2a_base64
from collections.abc import Iterator
from dataclasses import fields, replace
from operator import itemgetter

from tuner.adapters.uapi import UapiDevice
from tuner.errors import ObserveError
from tuner.model.snapshot import Peer

NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY, CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 3, 1, 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
WG_CMD_GET_DEVICE, WG_GENL_VERSION = 0, 1

# WGDEVICE_A_*
DEV_IFNAME, DEV_PUBLIC_KEY, DEV_LISTEN_PORT, DEV_FWMARK, DEV_PEERS = 2, 4, 6, 7, 8
# WGPEER_A_*
PEER_PUBLIC_KEY, PEER_ENDPOINT, PEER_KEEPALIVE, PEER_HANDSHAKE = 1, 4, 5, 6
PEER_RX, PEER_TX, PEER_ALLOWEDIPS = 7, 8, 9
# WGALLOWEDIP_A_*
AIP_FAMILY, AIP_IPADDR, AIP_CIDR = 1, 2, 3

TYPE_MASK = 0x3FFF  # strips NLA_F_NESTED and NLA_F_NET_BYTEORDER
HDR = struct.Struct("=IHHII")  # nlmsghdr
GENL = struct.Struct("=BBH")  # genlmsghdr
NLA = struct.Struct("=HH")
U16, U32, U64 = struct.Struct("=H"), struct.Struct("=I"), struct.Struct("=Q")
TIMESPEC = struct.Struct("=qq")
PORT = struct.Struct("!H")
RECV_BUFFER = 1 << 20

# The first part of a peer exactly as the kernel writes it (get_peer() in
# drivers/net/wireguard/netlink.c): public key, preshared key (skipped: ``32x``),
# handshake time, keepalive, tx, rx, protocol version. One unpack instead of seven
# attribute steps; any other layout takes the general path.
PEER_HEAD = struct.Struct("=HH32sHH32xHHqqHHH2xHHQHHQHHI")
PEER_HEAD_SHAPE = (36, 1, 36, 2, 20, 6, 6, 5, 12, 8, 12, 7, 8, 10)
# One allowed IP as get_allowedips() writes it: CIDR mask, family, address.
AIP_V4 = struct.Struct("=HHHHB3xHHH2xHH4s")
AIP_V6 = struct.Struct("=HHHHB3xHHH2xHH16s")
AIP_SHAPE = (5, AIP_CIDR, 6, AIP_FAMILY)
_AIP_SHAPE = itemgetter(2, 3, 5, 6)
_SHAPE = itemgetter(0, 1, 3, 4, 5, 6, 9, 10, 12, 13, 15, 16, 18, 19)

NESTED = 0x8000


def _header(length: int, kind: int) -> int:
    """An attribute's length and type as the one native u32 they occupy on the wire."""
    value: int = U32.unpack(NLA.pack(length, kind))[0]
    return value


class _Whole:
    """A whole peer nest in one of the kernel's common layouts: the head, no endpoint or
    one (IPv4, IPv6), and exactly one allowed IP (IPv4, IPv6). At 10,000 peers the
    per-peer Python is the whole cost of a read, so the common peer is one unpack, one
    shape test and one constructor; a peer of any other shape takes the general walk.

    Fields are (struct code, expected value, or a name to keep, or None to ignore); an
    attribute header is read as one u32 so that the shape test compares half as many."""

    def __init__(self, endpoint: int | None, allowed: int) -> None:
        width = 4 if allowed == socket.AF_INET else 16
        sockaddr = 16 if endpoint == socket.AF_INET else 28  # sockaddr_in, sockaddr_in6
        parts: list[tuple[str, int | str | None]] = [("I", None)]  # the nest: its index varies
        parts += [("I", _header(36, PEER_PUBLIC_KEY)), ("32s", "key")]
        parts += [("I", _header(36, 2)), ("32x", None)]  # the preshared key, never copied
        parts += [("I", _header(20, PEER_HANDSHAKE)), ("q", "sec"), ("q", "nsec")]
        parts += [("I", _header(6, PEER_KEEPALIVE)), ("H", "keepalive"), ("2x", None)]
        parts += [("I", _header(12, PEER_TX)), ("Q", "tx")]
        parts += [("I", _header(12, PEER_RX)), ("Q", "rx")]
        parts += [("I", _header(8, 10)), ("I", None)]  # the protocol version
        if endpoint is not None:
            parts += [("I", _header(4 + sockaddr, PEER_ENDPOINT)), ("H", endpoint), ("H", "port")]
            if endpoint == socket.AF_INET:
                parts += [("4s", "addr"), ("8x", None)]
            else:
                parts += [("4x", None), ("16s", "addr"), ("4x", None)]
        parts += [("I", _header(28 + width, NESTED | PEER_ALLOWEDIPS))]
        parts += [("I", _header(24 + width, NESTED)), ("I", _header(5, AIP_CIDR))]
        parts += [("B", "cidr"), ("3x", None), ("I", _header(6, AIP_FAMILY)), ("H", allowed)]
        parts += [("2x", None), ("I", _header(4 + width, AIP_IPADDR)), (f"{width}s", "ip")]
        self.struct = struct.Struct("=" + "".join(code for code, _ in parts))
        kept = [what for code, what in parts if not code.endswith("x")]
        checks = [(i, w) for i, w in enumerate(kept) if isinstance(w, int)]
        at = {w: i for i, w in enumerate(kept) if isinstance(w, str)}
        self.shape_of = itemgetter(*(i for i, _ in checks))
        self.shape = tuple(w for _, w in checks)
        self.endpoint = endpoint
        self.allowed = allowed
        # Where each kept field is, in the order _Fold._peers takes them.
        self.at = (
            at["key"], at["sec"], at["nsec"], at["keepalive"], at["tx"], at["rx"],
            at.get("port", 0), at.get("addr", 0), at["cidr"], at["ip"],
        )  # fmt: skip


# By the nest's length; two layouts share one (an IPv6 endpoint with an IPv4 allowed
# IP, an IPv4 endpoint with an IPv6 one) and the shape tells them apart.
_WHOLE: dict[int, tuple[_Whole, ...]] = {}
for _ep in (None, socket.AF_INET, socket.AF_INET6):
    for _aip in (socket.AF_INET, socket.AF_INET6):
        _w = _Whole(_ep, _aip)
        _WHOLE[_w.struct.size] = (*_WHOLE.get(_w.struct.size, ()), _w)
del _ep, _aip, _w

_KEY, _ENDPOINT, _ALLOWED, _HANDSHAKE, _RX, _TX, _KEEPALIVE = (
    getattr(Peer, f.name).__set__ for f in fields(Peer)
)


def _peer(  # noqa: PLR0917 - Peer's own seven fields, in its order
    key: str,
    endpoint: str | None,
    allowed: tuple[str, ...],
    handshake: float,
    rx: int,
    tx: int,
    keepalive: int,
) -> Peer:
    """``Peer(...)`` at two thirds of the cost: a frozen dataclass's ``__init__`` goes
    through ``object.__setattr__`` per field; the slots' own descriptors set them
    directly. Same fields in the same order (``fields(Peer)``), the same frozen object."""
    peer: Peer = object.__new__(Peer)
    _KEY(peer, key)
    _ENDPOINT(peer, endpoint)
    _ALLOWED(peer, allowed)
    _HANDSHAKE(peer, handshake)
    _RX(peer, rx)
    _TX(peer, tx)
    _KEEPALIVE(peer, keepalive)
    return peer


def _attrs(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, payload start, payload end) of each attribute in ``buf[start:end]``."""
    while start + 4 <= end:
        length, kind = NLA.unpack_from(buf, start)
        if length < 4:
            return
        yield kind & TYPE_MASK, start + 4, start + length
        start += (length + 3) & ~3


def _nla(kind: int, payload: bytes) -> bytes:
    raw = NLA.pack(4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _endpoint(buf: memoryview, start: int, end: int) -> str | None:
    family = U16.unpack_from(buf, start)[0]
    port = PORT.unpack_from(buf, start + 2)[0]
    if family == socket.AF_INET and end - start >= 8:
        addr = socket.inet_ntop(socket.AF_INET, buf[start + 4 : start + 8])
        return None if addr == "0.0.0.0" else f"{addr}:{port}"  # noqa: S104 - "none"
    if family == socket.AF_INET6 and end - start >= 24:
        addr = socket.inet_ntop(socket.AF_INET6, buf[start + 8 : start + 24])
        return None if addr == "::" else f"[{addr}]:{port}"
    return None


def _allowed(buf: memoryview, start: int, end: int) -> list[str]:
    # The hot loop of a large dump (one nest per allowed IP): attributes walked inline.
    out = []
    unpack = NLA.unpack_from
    ntop = socket.inet_ntop
    while start + 4 <= end:
        length, _ = unpack(buf, start)
        if length < 4:
            break
        fixed = AIP_V4 if length == AIP_V4.size else AIP_V6 if length == AIP_V6.size else None
        if fixed is not None:
            f = fixed.unpack_from(buf, start)
            if _AIP_SHAPE(f) == AIP_SHAPE and f[9] & TYPE_MASK == AIP_IPADDR:
                fast = socket.AF_INET if fixed is AIP_V4 else socket.AF_INET6
                out.append(f"{ntop(fast, f[10])}/{f[4]}")
                start += length
                continue
        pos, stop = start + 4, start + length
        family = cidr = 0
        addr = None
        while pos + 4 <= stop:
            alen, kind = unpack(buf, pos)
            if alen < 4:
                break
            kind &= TYPE_MASK
            if kind == AIP_IPADDR:
                addr = buf[pos + 4 : pos + alen]
            elif kind == AIP_CIDR:
                cidr = buf[pos + 4]
            elif kind == AIP_FAMILY:
                family = buf[pos + 4] | buf[pos + 5] << 8
            pos += (alen + 3) & ~3
        if addr is not None and family in (socket.AF_INET, socket.AF_INET6):
            out.append(f"{ntop(family, addr)}/{cidr}")
        start += (length + 3) & ~3
    return out


class _Fold:
    """Peers in order of first appearance, allowed IPs joined across messages."""

    def __init__(self) -> None:
        self.public_key: str | None = None
        self.listen_port = 0
        self.fwmark = 0
        self.peers: dict[str, Peer] = {}

    def message(self, buf: memoryview, start: int, end: int) -> None:
        for kind, s, e in _attrs(buf, start, end):
            if kind == DEV_PEERS:
                self._peers(buf, s, e)
            elif kind == DEV_PUBLIC_KEY:
                self.public_key = b2a_base64(buf[s:e], newline=False).decode("ascii")
            elif kind == DEV_LISTEN_PORT:
                self.listen_port = U16.unpack_from(buf, s)[0]
            elif kind == DEV_FWMARK:
                self.fwmark = U32.unpack_from(buf, s)[0]
            # WGDEVICE_A_PRIVATE_KEY (3) is stepped over, never copied.

    def _peers(self, buf: memoryview, start: int, end: int) -> None:
        peers = self.peers
        unpack = NLA.unpack_from
        layouts = _WHOLE.get
        ntop = socket.inet_ntop
        while start + 4 <= end:
            length = unpack(buf, start)[0]
            if length < 4:
                return
            read = False
            for w in layouts(length, ()):
                f = w.struct.unpack_from(buf, start)
                if w.shape_of(f) != w.shape:
                    continue
                k, sec, nsec, keepalive, tx, rx, port, addr, cidr, ip = w.at
                key = b2a_base64(f[k], newline=False).decode("ascii")
                if key in peers:  # a continuation: the general walk joins it
                    break
                endpoint = None
                if w.endpoint is not None:
                    host = ntop(w.endpoint, f[addr])
                    if w.endpoint == socket.AF_INET:
                        if host != "0.0.0.0":  # noqa: S104 - the kernel's "none"
                            endpoint = f"{host}:{socket.ntohs(f[port])}"
                    elif host != "::":
                        endpoint = f"[{host}]:{socket.ntohs(f[port])}"
                peers[key] = _peer(
                    key,
                    endpoint,
                    (f"{ntop(w.allowed, f[ip])}/{f[cidr]}",),
                    f[sec] + f[nsec] / 1e9,
                    f[rx],
                    f[tx],
                    f[keepalive],
                )
                read = True
                break
            if not read:
                self._peer(buf, start + 4, start + length)
            start += (length + 3) & ~3

    def _peer(self, buf: memoryview, start: int, end: int) -> None:
        key: str | None = None
        endpoint: str | None = None
        handshake = 0.0
        rx = tx = keepalive = 0
        allowed: list[str] = []
        unpack = NLA.unpack_from
        pos = start
        if end - start >= PEER_HEAD.size:
            f = PEER_HEAD.unpack_from(buf, start)
            if _SHAPE(f) == PEER_HEAD_SHAPE:
                key = b2a_base64(f[2], newline=False).decode("ascii")
                handshake = f[7] + f[8] / 1e9
                keepalive, tx, rx = f[11], f[14], f[17]
                pos = start + PEER_HEAD.size
        while pos + 4 <= end:
            length, kind = unpack(buf, pos)
            if length < 4:
                break
            kind &= TYPE_MASK
            s = pos + 4
            # After the fixed head only these two remain: they are tested first.
            if kind == PEER_ALLOWEDIPS:
                allowed = _allowed(buf, s, pos + length)
            elif kind == PEER_ENDPOINT:
                endpoint = _endpoint(buf, s, pos + length)
            elif kind == PEER_PUBLIC_KEY:
                key = b2a_base64(buf[s : pos + length], newline=False).decode("ascii")
            elif kind == PEER_HANDSHAKE:
                sec, nsec = TIMESPEC.unpack_from(buf, s)
                handshake = sec + nsec / 1e9
            elif kind == PEER_RX:
                rx = U64.unpack_from(buf, s)[0]
            elif kind == PEER_TX:
                tx = U64.unpack_from(buf, s)[0]
            elif kind == PEER_KEEPALIVE:
                keepalive = buf[s] | buf[s + 1] << 8
            # WGPEER_A_PRESHARED_KEY (2) is stepped over, never copied.
            pos += (length + 3) & ~3
        if key is None:
            return
        seen = self.peers.get(key)
        if seen is not None:  # the continuation of a peer whose allowed IPs did not fit
            self.peers[key] = replace(seen, allowed_ips=(*seen.allowed_ips, *allowed))
            return
        self.peers[key] = Peer(key, endpoint, tuple(allowed), handshake, rx, tx, keepalive)

    def device(self) -> UapiDevice:
        return UapiDevice(
            self.public_key, self.listen_port, self.fwmark, tuple(self.peers.values())
        )


class GenlSocket:
    """One generic-netlink socket; requests are answered in order (one at a time)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        self.sock.bind((0, 0))
        self.seq = 0
        # One buffer for every datagram (a dump is hundreds of them): parsing copies out
        # what it keeps before the next recv overwrites it.
        self.buffer = bytearray(RECV_BUFFER)

    def close(self) -> None:
        self.sock.close()

    def request(self, family: int, cmd: int, version: int, flags: int, attrs: bytes) -> int:
        self.seq += 1
        body = GENL.pack(cmd, version, 0) + attrs
        self.sock.send(HDR.pack(HDR.size + len(body), family, flags, self.seq, 0) + body)
        return self.seq

    def replies(self, seq: int) -> Iterator[tuple[memoryview, int, int]]:
        """(buffer, attributes start, message end) of each reply until DONE or the ACK;
        OSError with the kernel's errno on an error reply."""
        view = memoryview(self.buffer)
        while True:
            data = view[: self.sock.recv_into(self.buffer)]
            offset = 0
            while offset + HDR.size <= len(data):
                length, kind, _flags, msg_seq, _ = HDR.unpack_from(data, offset)
                if length < HDR.size:
                    raise OSError(errnos.EPROTO, "short netlink message")
                end = offset + length
                if msg_seq == seq:
                    if kind == NLMSG_DONE:
                        return
                    if kind == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", data, offset + HDR.size)[0]
                        if code:
                            raise OSError(code, os.strerror(code))
                        return  # the ACK of a request that was not a dump
                    yield data, offset + HDR.size + GENL.size, end
                offset = (end + 3) & ~3

    def family_id(self, name: str) -> int:
        seq = self.request(
            GENL_ID_CTRL,
            CTRL_CMD_GETFAMILY,
            1,
            NLM_F_REQUEST | NLM_F_ACK,
            _nla(CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0"),
        )
        found = 0
        for buf, start, end in self.replies(seq):
            for kind, s, _ in _attrs(buf, start, end):
                if kind == CTRL_ATTR_FAMILY_ID:
                    found = U16.unpack_from(buf, s)[0]
        return found


def dump_device(ifname: str) -> UapiDevice:
    """Read a kernel WireGuard interface of this network namespace; ObserveError when the
    module is not loaded or the interface cannot be read."""
    try:
        sock = GenlSocket()
    except OSError as exc:
        raise ObserveError(f"{ifname}: generic netlink unavailable (errno {exc.errno})") from exc
    try:
        try:
            family = sock.family_id("wireguard")
        except OSError as exc:
            raise ObserveError(f"{ifname}: kernel WireGuard netlink unavailable") from exc
        seq = sock.request(
            family,
            WG_CMD_GET_DEVICE,
            WG_GENL_VERSION,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP,
            _nla(DEV_IFNAME, ifname.encode() + b"\0"),
        )
        fold = _Fold()
        for buf, start, end in sock.replies(seq):
            fold.message(buf, start, end)
        return fold.device()
    except OSError as exc:
        raise ObserveError(f"{ifname}: kernel WireGuard read failed (errno {exc.errno})") from exc
    finally:
        sock.close()
