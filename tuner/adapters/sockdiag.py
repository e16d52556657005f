"""WireGuard's own UDP sockets: their drops and buffer sizes, found by local port.

Host-wide Udp RcvbufErrors cannot say whose socket overflowed; the socket's own counter
can. sock_diag (pyroute2's DiagSocket with INET_DIAG_SKMEMINFO, what ``ss -uam`` shows)
gives each UDP socket's receive and send buffer size and its drop counter. Where sock_diag
cannot be had (no inet_diag support, or a test's fake tree), /proc/net/udp and udp6 give
the drops and the receive queue, without buffer sizes: ``parse_proc_udp`` reads them, and
tuner/observe/sockets.py chooses.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from pyroute2.netlink.diag import DiagSocket

from tuner.model.snapshot import SocketStats

INET_DIAG_SKMEMINFO = 7
"""``enum inet_diag`` in linux/inet_diag.h; the request asks for it by bit (n - 1)."""
SK_MEMINFO = struct.Struct("=9I")
"""rmem_alloc, rcvbuf, wmem_alloc, sndbuf, fwd_alloc, wmem_queued, optmem, backlog, drops."""


@dataclass(frozen=True, slots=True)
class UdpSocket:
    """One UDP socket bound to a local port (either family)."""

    port: int
    drops: int
    rx_queue: int
    rcvbuf: int | None = None
    sndbuf: int | None = None


def parse_skmeminfo(value: object) -> tuple[int, ...] | None:
    """pyroute2 hands the attribute over as ``"00:40:03:..."`` (its hex dump)."""
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, str):
        try:
            raw = bytes.fromhex(value.replace(":", ""))
        except ValueError:
            return None
    else:
        return None
    return SK_MEMINFO.unpack_from(raw) if len(raw) >= SK_MEMINFO.size else None


def parse_proc_udp(text: str) -> list[UdpSocket]:
    """/proc/net/udp{,6}: ``sl local rem st tx_queue:rx_queue ... ref pointer drops``."""
    out = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 13:
            continue
        try:
            port = int(fields[1].rsplit(":", 1)[1], 16)
            rx_queue = int(fields[4].split(":", 1)[1], 16)
            drops = int(fields[12])
        except (IndexError, ValueError):
            continue
        out.append(UdpSocket(port, drops, rx_queue))
    return out


def diag_sockets() -> list[UdpSocket]:
    """Every UDP socket of this network namespace, through sock_diag."""
    out = []
    with DiagSocket() as diag:
        diag.bind()
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in diag.get_sock_stats(
                family=family,
                protocol=socket.IPPROTO_UDP,
                extensions=1 << (INET_DIAG_SKMEMINFO - 1),
            ):
                mem = parse_skmeminfo(msg.get_attr("INET_DIAG_SKMEMINFO"))
                if mem is None:
                    continue
                out.append(
                    UdpSocket(int(msg["idiag_sport"]), mem[8], mem[0], rcvbuf=mem[1], sndbuf=mem[3])
                )
    return out


def summed(socks: list[UdpSocket]) -> SocketStats:
    """WireGuard binds one socket per family on its port: drops add up, buffers are the
    largest (each socket has its own)."""
    rcv = [s.rcvbuf for s in socks if s.rcvbuf is not None]
    snd = [s.sndbuf for s in socks if s.sndbuf is not None]
    return SocketStats(
        sockets=len(socks),
        drops=sum(s.drops for s in socks),
        rx_queue=sum(s.rx_queue for s in socks),
        rcvbuf=max(rcv) if rcv else None,
        sndbuf=max(snd) if snd else None,
    )
