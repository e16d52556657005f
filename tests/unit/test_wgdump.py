"""The lean WireGuard dump parser on messages encoded as the kernel encodes them
(include/uapi/linux/wireguard.h): multi-part dumps, split peers, IPv6, errors, and keys
that never leave the buffer. The real kernel is in tests/vm (field by field vs wg)."""

from __future__ import annotations

import base64
import dataclasses
import errno
import socket
import struct
from collections.abc import Iterator

import pytest

from tuner.adapters import wgdump
from tuner.adapters.wgdump import GenlSocket, _Fold
from tuner.model.snapshot import Peer

NESTED = 0x8000
PRIVATE = b"\x11" * 32
PSK = b"\x22" * 32
PUB = b"\x33" * 32


def nla(kind: int, payload: bytes, nested: bool = False) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind | (NESTED if nested else 0)) + payload
    return raw + b"\0" * (-len(raw) % 4)


def sockaddr4(addr: str, port: int) -> bytes:
    """A struct sockaddr_in as the kernel puts it: 16 bytes, sin_zero included."""
    head = struct.pack("=H", socket.AF_INET) + struct.pack("!H", port)
    return head + socket.inet_aton(addr) + bytes(8)


def sockaddr6(addr: str, port: int) -> bytes:
    packed = socket.inet_pton(socket.AF_INET6, addr)
    return struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", port, 0) + packed + b"\0" * 4


def allowed(*cidrs: str, kernel_order: bool = True) -> bytes:
    out = b""
    for i, cidr in enumerate(cidrs):
        addr, _, bits = cidr.partition("/")
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        parts = [  # the kernel's order (get_allowedips() in netlink.c)
            nla(3, bytes([int(bits)])),
            nla(1, struct.pack("=H", family)),
            nla(2, socket.inet_pton(family, addr)),
        ]
        if not kernel_order:
            parts.reverse()
        out += nla(i, b"".join(parts), nested=True)
    return nla(9, out, nested=True)


def peer(
    key: bytes,
    *cidrs: str,
    endpoint: bytes | None = None,
    index: int = 0,
    kernel_order: bool = True,
    no_endpoint: bool = False,
) -> bytes:
    """One peer nest; in the kernel's order (get_peer() in netlink.c) unless told not."""
    parts = [
        nla(1, key),
        nla(2, PSK),
        nla(6, struct.pack("=qq", 100, 250_000_000)),
        nla(5, struct.pack("=H", 25)),
        nla(8, struct.pack("=Q", 20)),
        nla(7, struct.pack("=Q", 10)),
        nla(10, struct.pack("=I", 1)),
    ]
    if not no_endpoint:  # the kernel leaves it out when the peer has none
        parts.append(nla(4, endpoint if endpoint is not None else sockaddr4("203.0.113.2", 51820)))
    if not kernel_order:
        parts.reverse()
    return nla(index, b"".join(parts) + allowed(*cidrs, kernel_order=kernel_order), nested=True)


def genl(seq: int, attrs: bytes, kind: int = 0x20) -> bytes:
    body = struct.pack("=BBH", 0, 1, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), kind, 2, seq, 0) + body


def done(seq: int) -> bytes:
    return struct.pack("=IHHII", 20, wgdump.NLMSG_DONE, 2, seq, 0) + b"\0" * 4


def error(seq: int, code: int) -> bytes:
    return struct.pack("=IHHIIi", 20 + 16, wgdump.NLMSG_ERROR, 0, seq, 0, -code) + b"\0" * 16


def fold(*messages: bytes) -> _Fold:
    f = _Fold()
    for m in messages:
        buf = memoryview(m)
        f.message(buf, 20, len(m))
    return f


def test_a_multipart_dump_merges_a_split_peer_and_keeps_no_key() -> None:
    first = genl(
        1,
        nla(3, PRIVATE)
        + nla(4, PUB)
        + nla(6, struct.pack("=H", 51820))
        + nla(7, struct.pack("=I", 0x51))
        + nla(8, peer(b"\x01" * 32, "10.0.0.1/32"), nested=True),
    )
    second = genl(1, nla(8, peer(b"\x01" * 32, "10.0.0.2/32", "fd00::2/128"), nested=True))
    device = fold(first, second).device()
    assert device.public_key == base64.b64encode(PUB).decode()
    assert (device.listen_port, device.fwmark) == (51820, 0x51)
    (p,) = device.peers
    assert p.public_key == base64.b64encode(b"\x01" * 32).decode()
    assert p.allowed_ips == ("10.0.0.1/32", "10.0.0.2/32", "fd00::2/128")
    assert (p.endpoint, p.latest_handshake, p.rx_bytes, p.tx_bytes) == (
        "203.0.113.2:51820",
        100.25,
        10,
        20,
    )
    assert p.persistent_keepalive == 25
    text = repr(device)
    for secret in (PRIVATE, PSK):
        assert base64.b64encode(secret).decode() not in text and secret.hex() not in text


@pytest.mark.parametrize("kernel_order", [True, False])
def test_any_attribute_order_reads_the_same(kernel_order: bool) -> None:
    one = peer(b"\x01" * 32, "10.0.0.1/32", "fd00::1/128", kernel_order=kernel_order)
    msg = genl(1, nla(8, one, nested=True))
    (p,) = fold(msg).device().peers
    assert (p.latest_handshake, p.rx_bytes, p.tx_bytes, p.persistent_keepalive) == (
        100.25,
        10,
        20,
        25,
    )
    assert p.endpoint == "203.0.113.2:51820"
    assert p.allowed_ips == ("10.0.0.1/32", "fd00::1/128")


def test_ipv6_and_no_endpoint() -> None:
    msg = genl(
        1,
        nla(
            8,
            peer(b"\x0a" * 32, endpoint=sockaddr6("2001:db8::1", 1))
            + peer(b"\x0b" * 32, endpoint=sockaddr4("0.0.0.0", 0), index=1),  # noqa: S104
            nested=True,
        ),
    )
    a, b = fold(msg).device().peers
    assert a.endpoint == "[2001:db8::1]:1"
    assert b.endpoint is None and b.allowed_ips == ()


ENDPOINTS = {
    "no endpoint": (None, None),
    "IPv4 endpoint": (sockaddr4("198.51.100.7", 51000), "198.51.100.7:51000"),
    "IPv6 endpoint": (sockaddr6("2001:db8::7", 51001), "[2001:db8::7]:51001"),
}


@pytest.mark.parametrize("cidr", ["10.1.2.3/32", "fd00::5/127"])
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_a_whole_peer_in_the_kernels_layout_is_one_unpack_and_reads_as_the_walk(
    endpoint: str, cidr: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, text = ENDPOINTS[endpoint]
    one = peer(b"\x0c" * 32, cidr, endpoint=raw, no_endpoint=raw is None, index=7)
    walked = _Fold()
    walked._peer(memoryview(one), 4, len(one))  # the general walk, attribute by attribute

    def no_walk(*_: object) -> None:
        raise AssertionError("the kernel's common layout took the general walk")

    monkeypatch.setattr(_Fold, "_peer", no_walk)
    twin = one.replace(b"\x0c" * 32, b"\x0d" * 32)
    fast, second = fold(genl(1, nla(8, one + twin, nested=True))).device().peers
    assert fast == walked.peers[fast.public_key]
    assert second.public_key == base64.b64encode(b"\x0d" * 32).decode()
    assert (fast.endpoint, fast.allowed_ips, fast.latest_handshake) == (text, (cidr,), 100.25)
    assert type(fast) is Peer and dataclasses.is_dataclass(fast)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.rx_bytes = 0  # type: ignore[misc]
    assert PSK.hex() not in repr(fast)


def test_a_peer_of_the_right_length_but_another_shape_takes_the_walk() -> None:
    one = bytearray(peer(b"\x0e" * 32, "10.9.9.9/32", no_endpoint=True))
    handshake = one.index(struct.pack("=HH", 20, 6))
    one[handshake + 2] = 99  # an attribute the walk does not know, where the handshake was
    (p,) = fold(genl(1, nla(8, bytes(one), nested=True))).device().peers
    assert p.latest_handshake == 0.0  # not read from the unknown attribute
    assert (p.rx_bytes, p.tx_bytes, p.allowed_ips) == (10, 20, ("10.9.9.9/32",))


class FakeSock:
    """The kernel's side of the socket: datagrams, each with one or more messages."""

    def __init__(self, datagrams: list[bytes]) -> None:
        self.datagrams = datagrams
        self.sent: list[bytes] = []

    def recv_into(self, buffer: bytearray) -> int:
        data = self.datagrams.pop(0)
        buffer[: len(data)] = data
        return len(data)

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def close(self) -> None:
        pass


def sock(datagrams: list[bytes]) -> GenlSocket:
    s = GenlSocket.__new__(GenlSocket)
    s.sock = FakeSock(datagrams)  # type: ignore[assignment]
    s.seq = 0
    s.buffer = bytearray(1 << 16)
    return s


def collected(s: GenlSocket, seq: int) -> Iterator[int]:
    for _buf, start, end in s.replies(seq):
        yield end - start


def test_replies_span_datagrams_skip_other_sequences_and_stop_at_done() -> None:
    msg = genl(1, nla(8, peer(b"\x01" * 32, "10.0.0.1/32"), nested=True))
    stale = genl(7, nla(4, PUB))
    s = sock([stale + msg, msg + done(1)])
    assert len(list(collected(s, 1))) == 2


def test_an_error_reply_raises_with_the_kernels_errno() -> None:
    s = sock([error(1, errno.ENODEV)])
    with pytest.raises(OSError) as exc:
        list(collected(s, 1))
    assert exc.value.errno == errno.ENODEV


def test_the_family_is_resolved_by_name() -> None:
    reply = genl(1, nla(2, b"wireguard\0") + nla(1, struct.pack("=H", 0x1A)), kind=0x10)
    s = sock([reply + error(1, 0)])
    assert s.family_id("wireguard") == 0x1A
    (request,) = s.sock.sent  # type: ignore[attr-defined]
    assert b"wireguard\0" in request


def test_without_the_module_the_read_is_an_observe_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from tuner.errors import ObserveError

    monkeypatch.setattr(wgdump, "GenlSocket", lambda: sock([error(1, errno.ENOENT)]))
    with pytest.raises(ObserveError, match="kernel WireGuard netlink unavailable"):
        wgdump.dump_device("wg0")
