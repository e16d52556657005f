"""Which peers to probe this cycle (pure).

At once when a symptom points at the path — the peer's tx grows without rx, or the
host's TCP retransmissions or fragmentation counters move while the peer carries
traffic — and otherwise as a slow sweep, oldest-probed first. Both are capped per
cycle and no peer is probed twice within ``min_interval``, so 10,000 quiet peers are
never all probed in one cycle.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass

from tuner.model.rates import Rates
from tuner.model.snapshot import Snapshot

PATH_COUNTERS = (
    ("Tcp", "RetransSegs"),
    ("Ip", "FragFails"),
    ("Ip", "ReasmFails"),
    ("Ip", "FragCreates"),
)


@dataclass(frozen=True, slots=True)
class ProbeSchedule:
    sweep_interval: float = 900.0
    min_interval: float = 4.0
    max_per_cycle: int = 16


@dataclass(frozen=True, slots=True)
class DueProbe:
    interface: str
    peer: str
    reason: str


def due_probes(
    snapshot: Snapshot,
    rates: Rates | None,
    last_probed: Mapping[tuple[str, str], float],
    schedule: ProbeSchedule = ProbeSchedule(),
) -> tuple[DueProbe, ...]:
    now = snapshot.taken_at
    host_symptom = rates is not None and any(
        rates.counters.get(proto, {}).get(name, 0) > 0 for proto, name in PATH_COUNTERS
    )
    urgent: list[DueProbe] = []
    sweep: list[tuple[float, str, str]] = []
    for iface in snapshot.interfaces:
        for peer in iface.peers:
            key = (iface.name, peer.public_key)
            last = last_probed.get(key)
            if last is not None and now - last < schedule.min_interval:
                continue
            rate = rates.peers.get(key) if rates else None
            if rate is not None and rate.tx_without_rx:
                urgent.append(DueProbe(iface.name, peer.public_key, "tx without rx"))
            elif host_symptom and rate is not None and (rate.tx_delta or rate.rx_delta):
                urgent.append(DueProbe(iface.name, peer.public_key, "path counters moving"))
            elif last is None or now - last >= schedule.sweep_interval:
                sweep.append((last or 0.0, iface.name, peer.public_key))
    chosen = urgent[: schedule.max_per_cycle]
    oldest = heapq.nsmallest(schedule.max_per_cycle - len(chosen), sweep, key=lambda s: s[0])
    chosen += [DueProbe(name, key, "sweep") for _, name, key in oldest]
    return tuple(chosen)
