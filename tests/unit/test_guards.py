"""Each guard on its own, then the fold: the first guard that holds gives the reason."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from tuner.core import guards as g
from tuner.core.guards import Candidate, Decision, PlanContext, judge
from tuner.model.policy import (
    Action,
    Condition,
    Guards,
    Op,
    Policy,
    Scope,
    Selector,
)
from tuner.model.target import Target

NOW = 1_790_000_000.0
MTU = Target("mtu", "wg0")


def policy(**guards: object) -> Policy:
    return Policy(
        name="p",
        summary="s",
        why="w",
        scope=Scope.INTERFACE,
        selector=Selector(),
        conditions=(Condition("iface.mtu", Op.GT, 0),),
        match_all=True,
        action=Action("mtu", derive="iface.min_tunnel_mtu", minimum=1280),
        guards=replace(Guards(), **guards),  # type: ignore[arg-type]
    )


def cand(before: str | None = "1420", after: str | None = "1340", **guards: object) -> Candidate:
    return Candidate(policy(**guards), MTU, before, after)


def ctx(**kw: object) -> PlanContext:
    return PlanContext(now=NOW, **kw)  # type: ignore[arg-type]


def test_admit_when_nothing_objects() -> None:
    assert judge(cand(), ctx()).decision is Decision.ADMIT


def test_noop() -> None:
    assert g.noop(cand("1340", "1340"), ctx()).decision is Decision.NOOP  # type: ignore[union-attr]
    assert g.noop(cand("4096 131072", "4096 131072"), ctx()) is not None


def test_bounds_mtu_never_below_1280() -> None:
    v = g.bounds(cand(after="1240"), ctx())
    assert v is not None and v.guard == "bounds" and "1280" in v.reason


def test_revertible_holds_what_an_actuator_refuses() -> None:
    v = g.revertible(cand(), ctx(blocked=MappingProxyType({MTU: "managed IRQ"})))
    assert v is not None and v.reason == "managed IRQ"


def test_freeze() -> None:
    v = judge(cand(), ctx(frozen="frozen by /var/lib/wg-tuner/FROZEN: revert failed"))
    assert (v.decision, v.guard) == (Decision.HOLD, "freeze")


def test_cooldown_says_until_when() -> None:
    until = NOW + 300
    v = g.cooldown(cand(), ctx(cooldown_until=MappingProxyType({"p": until})))
    assert v is not None and v.until == until and "cooldown until" in v.reason
    assert g.cooldown(cand(), ctx(cooldown_until=MappingProxyType({"p": NOW - 1}))) is None


def test_rate_per_hour() -> None:
    applies = MappingProxyType({"p": (NOW - 100, NOW - 200, NOW - 4000)})
    assert g.rate(cand(rate_per_hour=3), ctx(applies=applies)) is None
    v = g.rate(cand(rate_per_hour=2), ctx(applies=applies))
    assert v is not None and v.guard == "rate"


def test_blast_radius_one_per_target_and_n_at_once() -> None:
    assert g.blast_radius(cand(), ctx(pending=frozenset({MTU}))) is not None
    other = frozenset({Target("sysctl", "net.core.rmem_max")})
    assert g.blast_radius(cand(), ctx(pending=other, max_unverified=2)) is None
    assert g.blast_radius(cand(), ctx(pending=other, max_unverified=1)) is not None
    many = replace(cand(max_unverified=1), admitted_by_policy=1)
    assert g.blast_radius(many, ctx()) is not None


def test_max_step() -> None:
    assert g.max_step(cand(max_step=100), ctx()) is None
    v = g.max_step(cand(max_step=50), ctx())
    assert v is not None and "exceeds" in v.reason


def test_drift_hands_off_what_someone_else_changed() -> None:
    v = g.drift(cand(before="1400"), ctx(owned=MappingProxyType({MTU: "1340"})))
    assert v is not None and v.guard == "drift" and "1340" in v.reason and "1400" in v.reason
    assert g.drift(cand(before="1340"), ctx(owned=MappingProxyType({MTU: "1340"}))) is None


def test_failed_value_is_not_retried() -> None:
    failed = MappingProxyType({MTU: frozenset({"1340"})})
    assert g.failed_before(cand(), ctx(failed=failed)) is not None
    assert g.failed_before(cand(after="1320"), ctx(failed=failed)) is None


@pytest.mark.parametrize(
    ("minute", "inside"), [(120, True), (239, True), (240, False), (60, False)]
)
def test_maintenance_window(minute: int, inside: bool) -> None:
    day = NOW - NOW % 86400
    c = cand(windows=((120, 240),))
    v = g.maintenance(c, PlanContext(now=day + minute * 60))
    assert (v is None) is inside
    if v is not None:
        assert v.until is not None and v.until > day + minute * 60


def test_fold_order_reports_the_first_guard() -> None:
    v = judge(cand(after="1240"), ctx(frozen="frozen"))
    assert v.guard == "bounds"  # bounds comes before freeze in the fold
