"""Rates from two Snapshots (pure).

Counters are cumulative; a counter that goes backwards was reset (a link re-created, a
WireGuard daemon restarted) and the new value is the whole delta since the reset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from tuner.model.snapshot import LinkCounters, Snapshot, WgInterface

KEEPALIVE_BYTES = 64
"""Growth up to this many bytes is WireGuard's own chatter (a keepalive is 32 bytes), not
demand: otherwise a passive keepalive would look like "tx without rx" and trigger the
very probes that cause the next keepalive."""


def delta(prev: int, cur: int) -> int:
    """Growth of a cumulative counter; a decrease means it restarted from zero."""
    return cur - prev if cur >= prev else cur


def sent_unanswered(rx_delta: int, tx_delta: int) -> bool:
    """Traffic went out and nothing came back (keepalives alone are not traffic)."""
    return tx_delta > KEEPALIVE_BYTES and rx_delta == 0


@dataclass(frozen=True, slots=True)
class PeerRate:
    rx_bps: float
    tx_bps: float
    rx_delta: int
    tx_delta: int

    @property
    def tx_without_rx(self) -> bool:
        return sent_unanswered(self.rx_delta, self.tx_delta)


@dataclass(frozen=True, slots=True)
class Rates:
    interval: float
    peers: Mapping[tuple[str, str], PeerRate] = field(default_factory=dict)
    """(interface, public key) -> rate."""
    counters: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """snmp/netstat deltas: protocol -> counter -> growth over the interval."""


def peer_deltas(before: WgInterface | None, cur: WgInterface) -> list[tuple[int, int] | None]:
    """(rx, tx) byte growth of each peer of ``cur`` since ``before`` (the same interface
    in the previous snapshot), in ``cur.peers`` order; None for a peer that is new."""
    if before is None:
        return [None] * len(cur.peers)
    old = {p.public_key: p for p in before.peers}
    # delta() inlined: this runs for every peer every cycle
    return [
        None
        if (o := old.get(p.public_key)) is None
        else (
            p.rx_bytes - o.rx_bytes if p.rx_bytes >= o.rx_bytes else p.rx_bytes,
            p.tx_bytes - o.tx_bytes if p.tx_bytes >= o.tx_bytes else p.tx_bytes,
        )
        for p in cur.peers
    ]


def rates(prev: Snapshot, cur: Snapshot) -> Rates:
    """Per-peer byte rates and host counter deltas between two snapshots."""
    interval = cur.monotonic - prev.monotonic
    if interval <= 0:
        return Rates(interval=0.0)
    peers: dict[tuple[str, str], PeerRate] = {}
    for iface in cur.interfaces:
        grown = peer_deltas(prev.interface(iface.name), iface)
        for peer, d in zip(iface.peers, grown, strict=True):
            if d is not None:
                peers[(iface.name, peer.public_key)] = PeerRate(
                    d[0] / interval, d[1] / interval, d[0], d[1]
                )
    return Rates(
        interval=interval, peers=MappingProxyType(peers), counters=counter_deltas(prev, cur)
    )


def counter_deltas(prev: Snapshot, cur: Snapshot) -> dict[str, Mapping[str, int]]:
    """snmp/netstat growth between two snapshots: protocol -> counter -> delta."""
    counters: dict[str, Mapping[str, int]] = {}
    for table_prev, table_cur in (
        (prev.host.snmp, cur.host.snmp),
        (prev.host.netstat, cur.host.netstat),
    ):
        for proto, values in table_cur.items():
            old_values = table_prev.get(proto, {})
            counters[proto] = MappingProxyType(
                {k: delta(old_values.get(k, v), v) for k, v in values.items()}
            )
    return counters


@dataclass(frozen=True, slots=True)
class SoftirqSpread:
    """Where softirq time went between two snapshots."""

    jiffies: int
    """Softirq time on all cores together."""
    seconds: float
    outside_hottest: float
    """Share of it outside the core that had the most: 0 when one core did it all."""


def softirq_spread(prev: Snapshot, cur: Snapshot) -> SoftirqSpread:
    old = {c.cpu: c.softirq for c in prev.host.cpus}
    per_core = [delta(old[c.cpu], c.softirq) for c in cur.host.cpus if c.cpu in old]
    total = sum(per_core)
    outside = 1.0 - max(per_core) / total if total > 0 else 0.0
    return SoftirqSpread(total, max(0.0, cur.monotonic - prev.monotonic), outside)


CHECKSUM_ERRORS: tuple[tuple[str, str], ...] = (
    ("Tcp", "InCsumErrors"),
    ("Udp", "InCsumErrors"),
    ("Icmp", "InCsumErrors"),
    ("Udp6", "Udp6InCsumErrors"),
    ("Icmp6", "Icmp6InCsumErrors"),
)
"""/proc/net/snmp{,6} checksum error counters; the IPv4 header's is IpExt InCsumErrors
in /proc/net/netstat."""


def link_grown(
    prev: Snapshot,
    cur: Snapshot,
    count: Callable[[LinkCounters], int],
    devices: Iterable[str] | None = None,
) -> int:
    """Growth of ``count`` over the underlays of ``devices`` (every one when None) present
    in both snapshots (a link that appeared since has nothing to compare with)."""
    was = {link.name: count(link.counters) for link in prev.underlays}
    wanted = None if devices is None else set(devices)
    return sum(
        delta(was[link.name], count(link.counters))
        for link in cur.underlays
        if link.name in was and (wanted is None or link.name in wanted)
    )


def rx_errors_grown(prev: Snapshot, cur: Snapshot, devices: Iterable[str] | None = None) -> int:
    """What a broken receive offload shows, grown between two snapshots: checksum errors
    of every protocol (a bad aggregate fails the IP or the transport checksum) plus the
    rx errors of ``devices`` (every underlay when None) present in both."""

    def checksums(s: Snapshot) -> int:
        ip = s.host.netstat.get("IpExt", {}).get("InCsumErrors", 0)
        return ip + sum(s.host.snmp.get(proto, {}).get(key, 0) for proto, key in CHECKSUM_ERRORS)

    links = link_grown(prev, cur, lambda c: c.rx_errors, devices)
    return delta(checksums(prev), checksums(cur)) + links
