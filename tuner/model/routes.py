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


def _to_int(family: int, address: str) -> int:
    return int.from_bytes(socket.inet_pton(family, address), "big")


class RouteTable:
    def __init__(self, routes: Iterable[Route]) -> None:
        # (family, prefix length) -> {masked network: (oif, priority)}
        self._by_len: dict[tuple[int, int], dict[int, tuple[int, int]]] = {}
        for route in routes:
            bits = 32 if route.family == socket.AF_INET else 128
            net = _to_int(route.family, route.dst) if route.dst else 0
            mask = ((1 << route.prefixlen) - 1) << (bits - route.prefixlen)
            table = self._by_len.setdefault((route.family, route.prefixlen), {})
            best = table.get(net & mask)
            if best is None or route.priority < best[1]:
                table[net & mask] = (route.oif, route.priority)
        self._lengths = {
            family: sorted((n for f, n in self._by_len if f == family), reverse=True)
            for family in (socket.AF_INET, socket.AF_INET6)
        }

    def lookup(self, address: str) -> int | None:
        """Output interface index of the most specific route, or None."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            value = _to_int(family, address)
        except OSError:
            return None
        bits = 32 if family == socket.AF_INET else 128
        for length in self._lengths[family]:
            mask = ((1 << length) - 1) << (bits - length)
            hit = self._by_len[(family, length)].get(value & mask)
            if hit is not None:
                return hit[0]
        return None
