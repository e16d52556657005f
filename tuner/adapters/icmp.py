"""ICMP echo with Don't Fragment over a raw socket (no ``ping`` binary needed).

``IP_PMTUDISC_PROBE`` sets DF and ignores the kernel's cached path MTU, so a probe of
N bytes leaves as exactly one N-byte packet or fails with EMSGSIZE locally. Sizes are
whole IP packets (header included), i.e. the tunnel MTU being tested. Optionally bound
to one interface (SO_BINDTODEVICE) so the probe really goes through the tunnel.
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import struct
import time

IP_MTU_DISCOVER = 10
IP_PMTUDISC_PROBE = 3
IPV6_MTU_DISCOVER = 23
IPV6_PMTUDISC_PROBE = 3
SO_BINDTODEVICE = 25
V4_HEADERS = 20 + 8
V6_HEADERS = 40 + 8


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


class Pinger:
    """One raw socket; ``echo`` sends one request and waits for its own reply."""

    def __init__(self, target: str, *, device: str | None = None) -> None:
        self.target = str(ipaddress.ip_address(target))
        self.v6 = ":" in self.target
        if self.v6:
            self.sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            self.sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            self.sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
        if device:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, device.encode())
        self.ident = int.from_bytes(os.urandom(2), "big")
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Pinger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def echo(self, size: int, timeout: float) -> float | None:
        """Round-trip seconds for one ``size``-byte packet, or None when it was lost."""
        self.seq = (self.seq + 1) & 0xFFFF
        payload = os.urandom(8) + b"\xa5" * max(
            0, size - (V6_HEADERS if self.v6 else V4_HEADERS) - 8
        )
        kind = 128 if self.v6 else 8
        header = struct.pack("!BBHHH", kind, 0, 0, self.ident, self.seq)
        packet = header + payload
        if not self.v6:  # the kernel fills in ICMPv6 checksums itself
            packet = (
                struct.pack("!BBHHH", kind, 0, checksum(packet), self.ident, self.seq) + payload
            )
        started = time.monotonic()
        try:
            self.sock.sendto(packet, (self.target, 0))
        except OSError:
            return None  # EMSGSIZE (bigger than the route allows) or no route: lost
        deadline = started + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.sock], [], [], remaining)
            if not ready:
                return None
            data, addr = self.sock.recvfrom(65535)
            if addr[0].split("%")[0] != self.target:
                continue
            icmp = data if self.v6 else data[(data[0] & 0x0F) * 4 :]
            if len(icmp) < 8:
                continue
            rtype, _, _, ident, seq = struct.unpack("!BBHHH", icmp[:8])
            # The payload too: it starts with 8 random bytes, so a reply forged from the
            # ident and seq alone (or one cut short on the way) is not a pass.
            if (
                rtype == (129 if self.v6 else 0)
                and ident == self.ident
                and seq == self.seq
                and icmp[8:] == payload
            ):
                return time.monotonic() - started
        return None
