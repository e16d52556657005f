"""The fast paths of evaluation give exactly the answers of the plain ones.

Columns (a metric for every peer of an interface in one pass) must equal the metric
computed peer by peer, and the newest-point screen must find the same findings as
walking every subject's history.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.golden.cases import Sample, snapshot
from tuner.core import evaluate as ev
from tuner.core.metrics import CATALOGUE, Point, value
from tuner.model.probe import ProbeOutcome
from tuner.model.snapshot import Peer, Snapshot
from tuner.policy.loader import load_or_raise

POLICIES = load_or_raise([Path(__file__).resolve().parents[2] / "policies"])
PEER_METRICS = sorted(name for name, m in CATALOGUE.items() if m.scope == "peer")
KEYS = [f"{i:02d}" + "A" * 41 + "=" for i in range(6)]

peer_state = st.tuples(
    st.sampled_from(KEYS),
    st.sampled_from([None, "198.51.100.1:51820", "198.51.100.2:4000"]),
    st.sampled_from([0.0, 1.0, 100.0, 170.0, 1000.0]),  # handshake age (0: never)
    st.integers(0, 5000),
    st.integers(0, 5000),
    st.sampled_from([0, 25]),
)


def _snap(t: float, states: list[tuple[str, str | None, float, int, int, int]]) -> Snapshot:
    base = snapshot(Sample(t=t, probe_mtu=1340 if t % 3 == 0 else None))
    taken = base.taken_at
    seen: dict[str, Peer] = {}
    for key, endpoint, age, rx, tx, keepalive in states:
        seen[key] = Peer(
            key, endpoint, ("10.0.0.1/32",), taken - age if age else 0.0, rx, tx, keepalive
        )
    iface = replace(base.interfaces[0], peers=tuple(seen.values()))
    probes = (
        tuple(
            replace(
                base.probes[0],
                peer=key,
                outcome=ProbeOutcome.UNREACHABLE if i % 2 else ProbeOutcome.OK,
            )
            for i, key in enumerate(seen)
        )
        if base.probes
        else ()
    )
    return replace(base, interfaces=(iface,), probes=probes)


histories = st.lists(
    st.tuples(st.sampled_from([0.0, 5.0, 30.0, 200.0]), st.lists(peer_state, max_size=6)),
    min_size=1,
    max_size=6,
)


def _build(
    steps: list[tuple[float, list[tuple[str, str | None, float, int, int, int]]]],
) -> list[Snapshot]:
    out, t = [], 0.0
    for dt, states in steps:
        t += dt
        out.append(_snap(t, states))
    return out


@settings(max_examples=300, deadline=None)
@given(histories)
def test_every_column_equals_the_metric_peer_by_peer(steps: list) -> None:
    history = _build(steps)
    for point in ev.points(history):
        for iface in point.cur.interfaces:
            for name in PEER_METRICS:
                column = list(point.column(name, iface))
                fresh = Point(point.prev, point.cur)
                expected = [value(name, fresh, iface, p) for p in iface.peers]
                assert column == expected, name


def _walk_everyone(history: list[Snapshot]) -> tuple[ev.Finding, ...]:
    """evaluate() without the screen: every subject's history is walked."""
    pts = ev.points(history)
    found = []
    for policy in sorted(POLICIES, key=lambda p: p.name):
        for iface, peer in ev.subjects(policy, history[-1]):
            name = iface.name if iface else None
            key = peer.public_key if peer else None
            evidence = [ev._held(c, pts, name, key) for c in policy.conditions]
            met = [e for e in evidence if e is not None]
            if (policy.match_all and len(met) == len(evidence)) or (not policy.match_all and met):
                found.append(ev.Finding(policy.name, policy.scope, name, key, tuple(met)))
    return tuple(found)


@settings(max_examples=300, deadline=None)
@given(histories)
def test_the_screen_finds_exactly_what_walking_every_peer_finds(steps: list) -> None:
    history = _build(steps)
    assert ev.evaluate(history, POLICIES) == _walk_everyone(history)


def test_the_screen_is_not_vacuous() -> None:
    """The property above must see findings, or it would pass on an empty screen."""
    stale = [(KEYS[0], "198.51.100.1:51820", 1000.0, 0, 0, 0)]
    history = [
        _snap(float(t), [(k, e, a, 0, 100 * t, ka) for k, e, a, _, _, ka in stale])
        for t in range(0, 400, 5)
    ]
    found = ev.evaluate(history, POLICIES)
    assert found and found == _walk_everyone(history)
    assert {f.policy for f in found} >= {"handshake-stale"}
