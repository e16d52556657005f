"""NAT facts about peers (pure): which side of a NAT this host is on, how long the NAT
keeps a forgotten peer's mapping, and which keepalive fits under that lifetime.

The hub sees a NAT only through its effects: a peer's endpoint is replaced (the NAT
made a new mapping on a new port) after a silence. The silence bounds the mapping's
lifetime from above: the mapping was alive when the last packet came from the old
endpoint and dead when the peer's next packet left on a new one. Snapshots come at
intervals, so the bound is measured from the snapshot *before* the one that saw the
last packet (the packet may have come right after it). Every churn can only tighten
the bound, and churn that goes on while a keepalive of K seconds is active bounds it
by K (the keepalive was supposed to refresh the mapping every K seconds).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tuner.model.snapshot import Peer

TRANSLATED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # RFC 6598 shared address space: carrier-grade NAT
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
    )
)
"""Source ranges that reach the internet only through a NAT."""

LADDER = (25, 15, 10, 5)
"""Persistent keepalives tried from the top: 25 s is WireGuard's own advice, each
step down answers churn that went on at the step above. The policy's ``minimum`` is
the floor (10 s by default): the 5 s rung exists so the floor can be lowered."""

LIFETIME_CAP = 600.0
"""A silence longer than this bounds nothing useful (the peer was simply idle)."""


def endpoint_host(endpoint: str) -> str | None:
    """``1.2.3.4:51820`` -> ``1.2.3.4``; ``[fe80::1%eth0]:51820`` -> ``fe80::1``."""
    host, sep, _port = endpoint.rpartition(":")
    if not sep or not host:
        return None
    if host.startswith("["):
        host = host[1:-1]
    return host.split("%", 1)[0]


def translated(address: str) -> bool:
    """Whether ``address`` lies in a range that needs a NAT to reach the internet."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in TRANSLATED if net.version == ip.version)


def behind_nat(endpoint_host: str, sources: Iterable[str]) -> bool:
    """Whether this host reaches ``endpoint_host`` through a NAT: the endpoint is a
    public address while every local source address of its family is a translated one.
    One public source of that family means no: a host with a public address needs no
    keepalive of its own."""
    try:
        family = ipaddress.ip_address(endpoint_host).version
    except ValueError:
        return False
    if translated(endpoint_host):
        return False
    own = [s for s in sources if _version(s) == family]
    return bool(own) and all(translated(s) for s in own)


def _version(address: str) -> int:
    try:
        return ipaddress.ip_address(address).version
    except ValueError:
        return 0


def keepalive_fit(lifetime: float | None, current: int, churning: bool) -> int:
    """The ladder's highest keepalive strictly below the mapping's lifetime bound and,
    when the endpoint churns with a keepalive active, strictly below that keepalive.
    Without any bound: the ladder's top (25 s). Below the ladder: its lowest rung."""
    bound = lifetime if lifetime is not None else float("inf")
    if churning and current > 0:
        bound = min(bound, float(current))
    for step in LADDER:
        if step < bound:
            return step
    return LADDER[-1]


@dataclass(frozen=True, slots=True)
class NatPeer:
    """What the hub has learnt about one peer's NAT (only peers that churned)."""

    interface: str
    peer: str
    churns: int
    """Endpoint replacements seen since this observer started."""
    lifetime: float | None
    """Upper bound on the NAT mapping's lifetime, seconds (None: no bound yet)."""
    last_churn: float
    """Wall-clock time of the latest replacement."""


@dataclass(slots=True)
class Track:
    """What is kept about a peer that churned (mutable, owned by one tracker)."""

    churns: int = 0
    lifetime: float | None = None
    last_churn: float = 0.0


def churned(before: Peer, now: Peer) -> bool:
    """Whether the peer's endpoint was replaced (a first endpoint is not a churn)."""
    return (
        before.endpoint is not None and now.endpoint is not None and before.endpoint != now.endpoint
    )


def churn_bound(
    rx_since: float | None, sent_after: bool, before: Peer, now: Peer, mono: float
) -> float | None:
    """The lifetime bound one churn gives, seen at monotonic time ``mono``.

    ``rx_since``: monotonic time of the snapshot before the one that last saw rx grow
    (None: unknown); ``sent_after``: whether the hub sent anything since then.
    """
    bounds = []
    if rx_since is not None and sent_after:
        gap = mono - rx_since
        if gap <= LIFETIME_CAP:
            bounds.append(gap)
    keepalive = before.persistent_keepalive
    if keepalive > 0 and now.persistent_keepalive == keepalive:
        bounds.append(float(keepalive))
    return min(bounds) if bounds else None


def record(track: Track, bound: float | None, wall: float) -> None:
    """One more churn; the bound can only tighten."""
    track.churns += 1
    track.last_churn = wall
    if bound is not None:
        track.lifetime = bound if track.lifetime is None else min(track.lifetime, bound)


def lookup(entries: Iterable[NatPeer]) -> Mapping[tuple[str, str], NatPeer]:
    return {(e.interface, e.peer): e for e in entries}
