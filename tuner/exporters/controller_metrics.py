"""The controller's own Prometheus series, next to the snapshot's host and peer series."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tuner.model.kinds import KINDS
from tuner.model.probe import MtuProbe, Reachability
from tuner.model.snapshot import Snapshot

CHANGE_RESULTS = ("applied", "verified", "reverted", "revert_failed")
"""Every kind's series for these start at 0: a counter first seen at 1 has no change
for ``changes()`` or ``increase()`` to see, so the dashboard's first verified change
would draw no annotation."""


@dataclass
class ControllerState:
    cycles: int = 0
    cycle_errors: int = 0
    cycle_seconds_sum: float = 0.0
    last_cycle_seconds: float = 0.0
    last_success: float = 0.0
    findings: Counter[str] = field(default_factory=Counter)
    peer_findings: tuple[tuple[str, str, str, str], ...] = ()
    """(policy, interface, public key, friendly name or "") of each current peer finding."""
    changes: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(kind, result) -> count, result one of ``CHANGE_RESULTS`` (or held, drifted)."""
    rollbacks: int = 0
    drifts: int = 0
    held: Counter[str] = field(default_factory=Counter)
    frozen: bool = False
    pending: int = 0
    policy_errors: int = 0
    mode_enforce: bool = False
    snapshot: Snapshot | None = None
    last_probes: dict[tuple[str, str], MtuProbe] = field(default_factory=dict)
    """The newest path-MTU probe of each peer (probes run only some cycles; their series
    must not come and go with them)."""
    last_reach: dict[tuple[str, str], Reachability] = field(default_factory=dict)

    def remember_probes(self, snapshot: Snapshot) -> None:
        for probe in snapshot.probes:
            self.last_probes[(probe.interface, probe.peer)] = probe
        for reach in snapshot.reachability:
            self.last_reach[(reach.interface, reach.peer)] = reach
        present = {(i.name, p.public_key) for i in snapshot.interfaces for p in i.peers}
        for memo in (self.last_probes, self.last_reach):
            for key in [k for k in memo if k not in present]:
                del memo[key]  # a removed peer's series go with it


class ControllerCollector(Collector):
    def __init__(self, state: ControllerState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        s = self.state
        yield CounterMetricFamily("wg_tuner_cycles", "Reconcile cycles run", value=s.cycles)
        yield CounterMetricFamily(
            "wg_tuner_cycle_errors", "Cycles that failed", value=s.cycle_errors
        )
        yield GaugeMetricFamily(
            "wg_tuner_cycle_duration_seconds",
            "Duration of the last cycle",
            value=s.last_cycle_seconds,
        )
        yield CounterMetricFamily(
            "wg_tuner_cycle_seconds", "Total time spent in cycles", value=s.cycle_seconds_sum
        )
        yield GaugeMetricFamily(
            "wg_tuner_last_success_timestamp_seconds",
            "When the last cycle succeeded",
            value=s.last_success,
        )
        findings = GaugeMetricFamily(
            "wg_tuner_findings", "Current findings by policy", labels=["policy"]
        )
        for policy, n in sorted(s.findings.items()):
            findings.add_metric([policy], n)
        yield findings
        peer_findings = GaugeMetricFamily(
            "wg_tuner_peer_finding",
            "1 per current finding about a peer (the per-peer alerts' source)",
            labels=["policy", "interface", "public_key", "friendly_name"],
        )
        for labels in s.peer_findings:
            peer_findings.add_metric(list(labels), 1)
        yield peer_findings
        changes = CounterMetricFamily(
            "wg_tuner_changes", "Changes by kind and result", labels=["kind", "result"]
        )
        counts = Counter(dict.fromkeys(itertools.product(KINDS, CHANGE_RESULTS), 0))
        counts.update(s.changes)
        for (kind, result), n in sorted(counts.items()):
            changes.add_metric([kind, result], n)
        yield changes
        yield CounterMetricFamily("wg_tuner_rollbacks", "Automatic rollbacks", value=s.rollbacks)
        yield CounterMetricFamily(
            "wg_tuner_drifts",
            "Values wg-tuner set that someone else changed afterwards",
            value=s.drifts,
        )
        held = GaugeMetricFamily(
            "wg_tuner_held_changes", "Changes held, by guard", labels=["guard"]
        )
        for guard, n in sorted(s.held.items()):
            held.add_metric([guard], n)
        yield held
        yield GaugeMetricFamily("wg_tuner_frozen", "1 when changes are frozen", value=int(s.frozen))
        yield GaugeMetricFamily(
            "wg_tuner_pending_verifications",
            "Applied changes awaiting verification",
            value=s.pending,
        )
        yield GaugeMetricFamily(
            "wg_tuner_policy_errors",
            "Errors in the policy files at the last (re)load",
            value=s.policy_errors,
        )
        yield GaugeMetricFamily(
            "wg_tuner_enforcing", "1 in enforce mode, 0 in observe mode", value=int(s.mode_enforce)
        )


class LiveSnapshotCollector(Collector):
    """The peer and host series of the newest snapshot the daemon took."""

    def __init__(
        self,
        state: ControllerState,
        peer_names: str = "prometheus_wireguard_exporter",
        peer_limit: int = 0,
        *,
        host_series: bool = False,
    ) -> None:
        self.state = state
        self.peer_names = peer_names
        self.peer_limit = peer_limit
        self.host_series = host_series

    def collect(self) -> Iterator[Metric]:
        from tuner.exporters.metrics import SnapshotCollector

        if self.state.snapshot is not None:
            yield from SnapshotCollector(
                self.state.snapshot,
                probes=tuple(self.state.last_probes.values()),
                reachability=tuple(self.state.last_reach.values()),
                peer_names=self.peer_names,
                peer_limit=self.peer_limit,
                host_series=self.host_series,
                # A peer with a finding keeps its series, however little it moves.
                keep=frozenset((iface, key) for _, iface, key, _ in self.state.peer_findings),
            ).collect()
