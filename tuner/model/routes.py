"""Longest-prefix match over a dumped routing table (pure).

Resolving 10,000 peer endpoints with one netlink ``route get`` each costs seconds;
one table dump and a dictionary per prefix length costs milliseconds. Policy routing
(fwmark rules) is not modelled: the main table says which link carries an endpoint
on all but exotic hosts, and the underlay is used for observation only.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Route:
    family: int
    """socket.AF_INET or socket.AF_INET6."""
    dst: str | None
    """Network address; None for a default route."""
    prefixlen: int
    oif: int
    priority: int = 0
    prefsrc: str | None = None
    """The source address the kernel prefers for this route, when the route names one
    (connected routes always do)."""


def _to_int(family: int, address: str) -> int:
    return int.from_bytes(socket.inet_pton(family, address), "big")


class RouteTable:
    def __init__(self, routes: Iterable[Route]) -> None:
        # (family, prefix length) -> {masked network: (oif, priority)}
        self._by_len: dict[tuple[int, int], dict[int, tuple[int, int]]] = {}
        self._src: dict[tuple[int, int, int], str] = {}
        """(family, prefix length, masked network) -> prefsrc of the chosen route."""
        self._link_src: dict[tuple[int, int], str] = {}
        """(family, oif) -> a prefsrc of some route on that link (its connected route)."""
        for route in routes:
            if route.prefsrc:
                self._link_src.setdefault((route.family, route.oif), route.prefsrc)
            bits = 32 if route.family == socket.AF_INET else 128
            net = _to_int(route.family, route.dst) if route.dst else 0
            mask = ((1 << route.prefixlen) - 1) << (bits - route.prefixlen)
            table = self._by_len.setdefault((route.family, route.prefixlen), {})
            best = table.get(net & mask)
            if best is None or route.priority < best[1]:
                table[net & mask] = (route.oif, route.priority)
                if route.prefsrc:
                    self._src[(route.family, route.prefixlen, net & mask)] = route.prefsrc
                else:
                    self._src.pop((route.family, route.prefixlen, net & mask), None)
        self._lengths = {
            family: sorted((n for f, n in self._by_len if f == family), reverse=True)
            for family in (socket.AF_INET, socket.AF_INET6)
        }

    def _match(self, address: str) -> tuple[int, int, int, int] | None:
        """(family, prefix length, masked network, oif) of the most specific route."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            value = _to_int(family, address)
        except (OSError, ValueError):  # ValueError: an embedded NUL
            return None
        bits = 32 if family == socket.AF_INET else 128
        for length in self._lengths[family]:
            mask = ((1 << length) - 1) << (bits - length)
            hit = self._by_len[(family, length)].get(value & mask)
            if hit is not None:
                return family, length, value & mask, hit[0]
        return None

    def lookup(self, address: str) -> int | None:
        """Output interface index of the most specific route, or None."""
        hit = self._match(address)
        return None if hit is None else hit[3]

    def source(self, address: str) -> str | None:
        """The local address packets to ``address`` leave from: the route's preferred
        source, else the one the link's connected route names (the kernel picks the
        link's own address the same way on a host with one address per uplink)."""
        hit = self._match(address)
        if hit is None:
            return None
        family, length, net, oif = hit
        return self._src.get((family, length, net)) or self._link_src.get((family, oif))
