"""The reverse offload remedy's parts: the observer's memory of features turning on, the
error counters it watches, ``key: latest``, its verification and the sticky guard that
keeps gro-forwarding-host from turning the feature back on."""

from __future__ import annotations

import json
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from tests.golden.cases import Sample, snapshot
from tuner.core.guards import Candidate, Decision, judge
from tuner.engine.health import Health
from tuner.journal import view
from tuner.journal.journal import APPLIED, REVERTED, VERIFIED, Record
from tuner.model.checks import HealthCheck
from tuner.model.kinds import OFFLOAD
from tuner.model.policy import Action, Condition, Op, Policy, Scope, Selector
from tuner.model.rates import rx_errors_grown
from tuner.model.snapshot import LinkCounters
from tuner.model.target import Target
from tuner.observe.offload_history import OffloadHistory

GRO = "eth0/rx-gro"
UDP = "eth0/rx-udp-gro-forwarding"


def test_a_feature_seen_turning_on_gets_the_time_it_was_first_seen_on(tmp_path: Path) -> None:
    path = tmp_path / "offloads.json"
    history = OffloadHistory(path)
    assert history.update({GRO: "on", UDP: "off"}, 100.0) == {}  # on before we looked
    assert history.update({GRO: "on", UDP: "on"}, 110.0) == {UDP: 110.0}
    assert history.update({GRO: "on", UDP: "on"}, 120.0) == {UDP: 110.0}  # kept, not moved
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A later process (the next apply) remembers it; one that turns it off forgets it.
    later = OffloadHistory(path)
    assert later.update({GRO: "on", UDP: "on"}, 130.0) == {UDP: 110.0}
    assert later.update({GRO: "on", UDP: "off"}, 140.0) == {}
    assert json.loads(path.read_text())["features"][UDP] == {"state": "off", "since": 140.0}


def test_plan_reads_the_memory_and_never_writes_it(tmp_path: Path) -> None:
    path = tmp_path / "offloads.json"
    OffloadHistory(path).update({UDP: "off"}, 100.0)
    written = path.read_text()
    dry = OffloadHistory(path, write=False)
    assert dry.update({UDP: "on"}, 110.0) == {UDP: 110.0}  # the same decision as apply's
    assert path.read_text() == written


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"features": {"eth0/rx-gro": {"state": "maybe", "since": 1}}}',
        '{"features": {"eth0/rx-gro": {"state": "on", "since": "yesterday"}}}',
        '{"features": ["eth0/rx-gro"]}',
        "[]",
    ],
)
def test_a_corrupt_memory_is_an_empty_one(tmp_path: Path, text: str) -> None:
    path = tmp_path / "offloads.json"
    path.write_text(text)
    history = OffloadHistory(path)
    assert history.update({GRO: "on"}, 100.0) == {}  # unknown: never suspected
    assert history.update({GRO: "on"}, 110.0) == {}


def test_rx_errors_count_checksum_errors_and_the_underlays_rx_errors() -> None:
    before = snapshot(Sample(t=0.0))
    after = snapshot(Sample(t=1.0, csum_errors=7))
    link = replace(after.underlays[0], counters=LinkCounters(rx_errors=5))
    tcp = {**after.host.snmp, "Tcp": {"InCsumErrors": 2}}
    after = replace(after, underlays=(link,), host=replace(after.host, snmp=tcp))
    assert rx_errors_grown(before, after) == 7 + 5 + 2
    assert rx_errors_grown(before, after, ["eth1"]) == 7 + 2  # not eth0's rx errors
    gone = replace(after, underlays=())
    assert rx_errors_grown(before, gone) == 9  # a vanished link is not a reset to 0


def test_key_latest_is_the_feature_last_seen_turning_on() -> None:
    action = Action("offload", value="off", key="latest")
    both = snapshot(
        Sample(
            t=0.0,
            offloads=(("rx-gro", "on"), ("rx-udp-gro-forwarding", "on")),
            turned_on=(("rx-gro", 60.0), ("rx-udp-gro-forwarding", 600.0)),
        )
    )
    iface = both.interfaces[0]
    assert OFFLOAD.targets(action, both, iface, None) == [(Target("offload", GRO), "on")]
    never = snapshot(Sample(t=0.0, offloads=(("rx-gro", "on"),)))
    assert OFFLOAD.targets(action, never, never.interfaces[0], None) == []


def test_rx_errors_stop_needs_the_errors_all_but_stopped() -> None:
    health = Health(observer=None, prober=None, actuators={})  # type: ignore[arg-type]
    check, target = HealthCheck("rx_errors_stop"), Target("offload", UDP)
    start = Sample(t=0.0)
    base = health.run(
        check,
        target,
        "off",
        snapshot(replace(start, t=1.0, csum_errors=20)),
        snapshot(start),
        baseline=None,
    )
    assert base.ok and base.value == 20.0

    def after(per_second: int) -> bool:
        then, now = replace(start, t=2.0), replace(start, t=3.0, csum_errors=per_second)
        return health.run(check, target, "off", snapshot(now), snapshot(then), baseline=base).ok

    assert after(0) and after(2)
    assert not after(10)  # halved is not stopped: the feature was not the cause


POLICY = Policy(
    name="gro-forwarding-host",
    summary="s",
    why="w",
    scope=Scope.INTERFACE,
    selector=Selector(),
    conditions=(Condition("host.ip_forward", Op.EQ, 1),),
    match_all=True,
    action=Action("offload", value="on", key="rx-gro"),
)
TARGET = Target("offload", GRO)


def _records(*states: str) -> list[Record]:
    return [
        Record(n, 100.0 + n, state, "c-1", "offload-errors", TARGET, "on", "off")
        for n, state in enumerate(states, 1)
    ]


def test_a_standing_sticky_change_holds_other_policies_off_its_prior_value() -> None:
    sticky = frozenset({"offload-errors"})
    standing = view.context(_records(APPLIED, VERIFIED), 200.0, {}, sticky_policies=sticky)
    verdict = judge(Candidate(POLICY, TARGET, "off", "on"), standing)
    assert (verdict.decision, verdict.guard) == (Decision.HOLD, "sticky"), verdict
    assert "offload-errors" in verdict.reason
    # Not sticky without the flag, and no longer once the change is rolled back.
    plain = view.context(_records(APPLIED, VERIFIED), 200.0, {})
    assert judge(Candidate(POLICY, TARGET, "off", "on"), plain).decision is Decision.ADMIT
    undone = view.context(_records(APPLIED, VERIFIED, REVERTED), 200.0, {}, sticky_policies=sticky)
    assert judge(Candidate(POLICY, TARGET, "on", "on"), undone).decision is Decision.NOOP
    assert judge(Candidate(POLICY, TARGET, "off", "on"), undone).decision is Decision.ADMIT


def test_features_their_turn_on_time_and_checksum_errors_are_exported() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from tuner.exporters.metrics import render

    snap = snapshot(
        Sample(
            t=0.0,
            offloads=(("rx-gro", "on"), ("rx-udp-gro-forwarding", "off")),
            turned_on=(("rx-gro", 60.0),),
            csum_errors=42,
        )
    )
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(render(snap))
        for s in family.samples
    }
    on, off = (
        (("device", "eth0"), ("feature", "rx-gro")),
        (
            ("device", "eth0"),
            ("feature", "rx-udp-gro-forwarding"),
        ),
    )
    assert samples[("wg_tuner_offload_enabled", on)] == 1.0
    assert samples[("wg_tuner_offload_enabled", off)] == 0.0
    assert samples[("wg_tuner_offload_turned_on_timestamp_seconds", on)] == snap.taken_at - 60
    assert ("wg_tuner_offload_turned_on_timestamp_seconds", off) not in samples
    csum = (("counter", "InCsumErrors"), ("protocol", "IpExt"))
    assert samples[("wg_tuner_snmp_counter_total", csum)] == 42.0


def test_an_operator_turning_the_feature_on_again_wins() -> None:
    """Drift ends the sticky hold, and onDrift: hold keeps offload-errors off it."""
    from tuner.journal.journal import DRIFTED

    records = [
        *_records(APPLIED, VERIFIED),
        Record(
            3, 300.0, DRIFTED, "c-1", "offload-errors", TARGET, "on", "off", extra={"seen": "on"}
        ),
    ]
    ctx = view.context(records, 400.0, {}, sticky_policies=frozenset({"offload-errors"}))
    assert TARGET not in ctx.sticky
    again = replace(
        POLICY, name="offload-errors", action=Action("offload", value="off", key="latest")
    )
    verdict = judge(Candidate(again, TARGET, "on", "off"), ctx)
    assert (verdict.decision, verdict.guard) == (Decision.HOLD, "drift"), verdict
