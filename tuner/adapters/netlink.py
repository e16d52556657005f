"""rtnetlink through pyroute2: links, their counters, and the route to an endpoint.

Transient netlink errors (EAGAIN, EBUSY, ENOBUFS) are retried a few times; everything
else becomes an ObserveError.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from tuner.errors import ObserveError, TransientObserveError
from tuner.model.routes import Route, RouteTable
from tuner.model.snapshot import Link, LinkCounters

MAIN_TABLE = 254
RTN_UNICAST = 1

TRANSIENT_ERRNOS = frozenset({errno.EAGAIN, errno.EBUSY, errno.ENOBUFS, errno.EINTR})


NetlinkFailure = (OSError, NetlinkError)
"""pyroute2 raises NetlinkError (not an OSError) for errors the kernel answers with."""


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None) or getattr(exc, "errno", None)
    return int(code) if code is not None else None


def _classify(exc: BaseException, what: str) -> ObserveError:
    code = _code(exc)
    if code in TRANSIENT_ERRNOS:
        return TransientObserveError(f"{what}: transient netlink error {code}")
    return ObserveError(f"{what}: netlink error {code}")


def link_from_message(msg: Any) -> Link:
    info = msg.get_attr("IFLA_LINKINFO")
    kind = (info.get_attr("IFLA_INFO_KIND") if info is not None else None) or ""
    stats = msg.get_attr("IFLA_STATS64") or {}
    return Link(
        name=msg.get_attr("IFLA_IFNAME"),
        ifindex=int(msg["index"]),
        kind=str(kind),
        mtu=int(msg.get_attr("IFLA_MTU") or 0),
        operstate=str(msg.get_attr("IFLA_OPERSTATE") or "UNKNOWN"),
        counters=LinkCounters(
            rx_bytes=int(stats.get("rx_bytes", 0)),
            tx_bytes=int(stats.get("tx_bytes", 0)),
            rx_packets=int(stats.get("rx_packets", 0)),
            tx_packets=int(stats.get("tx_packets", 0)),
            rx_errors=int(stats.get("rx_errors", 0)),
            tx_errors=int(stats.get("tx_errors", 0)),
            rx_dropped=int(stats.get("rx_dropped", 0)),
            tx_dropped=int(stats.get("tx_dropped", 0)),
            carrier_changes=int(msg.get_attr("IFLA_CARRIER_CHANGES") or 0),
        ),
    )


OIF_MEMO = 200_000
"""Route answers remembered for an unchanged table, at most."""


class Netlink:
    """The rtnetlink reads observation needs, each with bounded retries."""

    def __init__(self) -> None:
        self._routes: tuple[Route, ...] | None = None
        self._table = RouteTable(())
        self._oif_memo: dict[str, int | None] = {}
        self._socket: Any = None

    @contextmanager
    def _ipr(self) -> Iterator[Any]:
        """One rtnetlink socket kept across reads (opening one costs milliseconds);
        after any failure it is closed and the next read opens a fresh one."""
        if self._socket is None:
            from pyroute2 import IPRoute

            self._socket = IPRoute()
        try:
            yield self._socket
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._socket is not None:
            sock, self._socket = self._socket, None
            sock.close()

    @retry(
        retry=retry_if_exception_type(TransientObserveError),
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=0.05, max=0.5),
        reraise=True,
    )
    def links(self) -> tuple[Link, ...]:
        try:
            with self._ipr() as ipr:
                return tuple(link_from_message(m) for m in ipr.get_links())
        except NetlinkFailure as exc:
            raise _classify(exc, "listing links") from exc

    @retry(
        retry=retry_if_exception_type(TransientObserveError),
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=0.05, max=0.5),
        reraise=True,
    )
    def routes(self) -> tuple[Route, ...]:
        """Unicast routes of the main table, both families."""
        out: list[Route] = []
        try:
            with self._ipr() as ipr:
                for family in (socket.AF_INET, socket.AF_INET6):
                    for msg in ipr.get_routes(family=family, table=MAIN_TABLE):
                        if msg["type"] != RTN_UNICAST:
                            continue
                        oif = msg.get_attr("RTA_OIF")
                        if not oif:
                            hops = msg.get_attr("RTA_MULTIPATH") or ()
                            oif = hops[0]["oif"] if hops else None
                        if not oif:
                            continue
                        out.append(
                            Route(
                                family=family,
                                dst=msg.get_attr("RTA_DST"),
                                prefixlen=int(msg["dst_len"]),
                                oif=int(oif),
                                priority=int(msg.get_attr("RTA_PRIORITY") or 0),
                                prefsrc=msg.get_attr("RTA_PREFSRC"),
                            )
                        )
        except NetlinkFailure as exc:
            raise _classify(exc, "route dump") from exc
        return tuple(out)

    def route_sources(self, destinations: tuple[str, ...]) -> set[str]:
        """The distinct local source addresses of the routes to ``destinations`` (call
        after ``route_oifs``, whose table dump this reuses; a few destinations, one
        per link, as the observer asks)."""
        return {src for dst in destinations if (src := self._table.source(dst))}

    def route_oifs(self, destinations: tuple[str, ...]) -> dict[str, int]:
        """Output interface index of the route to each address (unroutable ones omitted).

        The table is dumped every call; answers are remembered while it stays the same,
        so a steady host with 10,000 endpoints pays for one dump, not 10,000 lookups.
        """
        if not destinations:
            return {}
        routes = self.routes()
        if routes != self._routes or len(self._oif_memo) > OIF_MEMO:
            self._routes, self._table = routes, RouteTable(routes)
            self._oif_memo = {}
        memo, out = self._oif_memo, {}
        for dst in destinations:
            oif = memo.get(dst, -1)
            if oif == -1:
                oif = memo[dst] = self._table.lookup(dst)
            if oif is not None:
                out[dst] = oif
        return out
