"""Rates from two Snapshots (pure).

Counters are cumulative; a counter that goes backwards was reset (a link re-created, a
WireGuard daemon restarted) and the new value is the whole delta since the reset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from tuner.model.snapshot import Snapshot

KEEPALIVE_BYTES = 64
"""Growth up to this many bytes is WireGuard's own chatter (a keepalive is 32 bytes), not
demand: otherwise a passive keepalive would look like "tx without rx" and trigger the
very probes that cause the next keepalive."""


def delta(prev: int, cur: int) -> int:
    """Growth of a cumulative counter; a decrease means it restarted from zero."""
    return cur - prev if cur >= prev else cur


@dataclass(frozen=True, slots=True)
class PeerRate:
    rx_bps: float
    tx_bps: float
    rx_delta: int
    tx_delta: int

    @property
    def tx_without_rx(self) -> bool:
        """Traffic went out and nothing came back (keepalives alone are not traffic)."""
        return self.tx_delta > KEEPALIVE_BYTES and self.rx_delta == 0


@dataclass(frozen=True, slots=True)
class Rates:
    interval: float
    peers: Mapping[tuple[str, str], PeerRate] = field(default_factory=dict)
    """(interface, public key) -> rate."""
    counters: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """snmp/netstat deltas: protocol -> counter -> growth over the interval."""


def rates(prev: Snapshot, cur: Snapshot) -> Rates:
    """Per-peer byte rates and host counter deltas between two snapshots."""
    interval = cur.monotonic - prev.monotonic
    if interval <= 0:
        return Rates(interval=0.0)
    before = {
        (iface.name, peer.public_key): peer for iface in prev.interfaces for peer in iface.peers
    }
    peers: dict[tuple[str, str], PeerRate] = {}
    for iface in cur.interfaces:
        for peer in iface.peers:
            old = before.get((iface.name, peer.public_key))
            if old is None:
                continue
            # delta() inlined: this runs for every peer every cycle
            rx = peer.rx_bytes - old.rx_bytes if peer.rx_bytes >= old.rx_bytes else peer.rx_bytes
            tx = peer.tx_bytes - old.tx_bytes if peer.tx_bytes >= old.tx_bytes else peer.tx_bytes
            peers[(iface.name, peer.public_key)] = PeerRate(rx / interval, tx / interval, rx, tx)
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
