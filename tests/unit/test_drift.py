"""Drift: a value wg-tuner set and verified, changed by someone else afterwards.

Found by ``detect_drift`` (every daemon cycle, every apply), journaled once, handled per
policy (``onDrift: hold`` leaves the other writer's value alone, ``reassert`` sets
wg-tuner's again through the guards), and a knob two writers keep fighting over is
marked contested and left alone with a growing backoff: no flapping.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tests.reliability import FigureFn
from tests.unit.test_executor import POLICY, SNAP, TARGETS, executor
from tuner.core.guards import Candidate, Decision, judge
from tuner.core.plan import Plan, ProposedChange
from tuner.journal import view
from tuner.journal.journal import DRIFTED
from tuner.model.policy import Guards, OnDrift, Policy

T = TARGETS[0]


def with_drift(policy: Policy, on_drift: OnDrift) -> Policy:
    return replace(policy, guards=replace(policy.guards, on_drift=on_drift, rate_per_hour=60))


def one_change(before: str, after: str, n: int) -> Plan:
    verdict = judge(Candidate(POLICY, T, before, after), view.context([], 0.0, {}))
    return Plan(
        1.0,
        "n",
        (),
        (ProposedChange(f"c-{n}", "p", "sysctl", T, before, after, "w", (), 50, verdict),),
    )


def test_drift_is_journaled_once_and_releases_the_target(tmp_path: Path) -> None:
    ex, act, _ = executor(tmp_path)
    ex.apply(one_change("1", "2", 0), [POLICY], [SNAP, SNAP])
    assert ex.detect_drift() == []  # reads back as set
    act.values[T] = "7"  # someone else
    (out,) = ex.detect_drift()
    assert out.status == "drifted" and "it set 2, now 7" in out.reason
    assert ex.detect_drift() == []  # once: the value is theirs now
    records = ex.journal.read().records
    assert [r.state for r in records].count(DRIFTED) == 1
    ctx = view.context(records, 2000.0, {})
    assert T not in ctx.owned and ctx.released[T] == "7"
    assert ex.rollback(everything=True) == []  # hands off their value
    assert act.values[T] == "7"


def test_on_drift_hold_leaves_the_other_value_and_reassert_sets_ours_again(
    tmp_path: Path, figure: FigureFn
) -> None:
    ex, act, _ = executor(tmp_path)
    ex.apply(one_change("1", "2", 0), [POLICY], [SNAP, SNAP])
    act.values[T] = "7"
    ex.detect_drift()
    ctx = view.context(ex.journal.read().records, 2000.0, {})
    hold = judge(Candidate(with_drift(POLICY, OnDrift.HOLD), T, "7", "2"), ctx)
    reassert = judge(Candidate(with_drift(POLICY, OnDrift.REASSERT), T, "7", "2"), ctx)
    assert (hold.decision, hold.guard) == (Decision.HOLD, "drift")
    assert reassert.decision is Decision.ADMIT
    # a third value (the other writer moved on) is a new situation even under hold
    moved = judge(Candidate(with_drift(POLICY, OnDrift.HOLD), T, "5", "2"), ctx)
    assert moved.decision is Decision.ADMIT
    figure(
        "Drift and contention",
        "value changed out of band -> onDrift: hold; onDrift: reassert",
        f"{hold.decision.value} ({hold.guard}); {reassert.decision.value}",
    )


def test_a_writer_fighting_over_a_knob_is_contested_and_never_flaps(
    tmp_path: Path, figure: FigureFn
) -> None:
    """Every cycle the other writer puts "7" back; wg-tuner (reassert) may set "2"."""
    ex, act, _ = executor(tmp_path)
    policy = with_drift(POLICY, OnDrift.REASSERT)
    clock = [10_000.0]
    ex.journal.clock = lambda: clock[0]
    applies, verdicts = 0, []
    for cycle in range(120):  # two hours of 60 s cycles
        clock[0] += 60
        now = clock[0]
        ex.detect_drift()
        ctx = view.context(ex.journal.read().records, now, {"p": 600.0})
        current = act.values[T]
        verdict = judge(Candidate(policy, T, current, "2"), ctx)
        verdicts.append(verdict.guard)
        if verdict.decision is Decision.ADMIT and current != "2":
            change = ProposedChange(
                f"c-{cycle}", "p", "sysctl", T, current, "2", "w", (), 50, verdict
            )
            ex.apply(Plan(now, "n", (), (change,)), [policy], [SNAP, SNAP])
            applies += 1
        act.values[T] = "7"  # the other writer wins again before the next cycle
    ctx = view.context(ex.journal.read().records, clock[0], {"p": 600.0})
    assert T in ctx.contested
    assert 2 <= applies <= 3, (applies, verdicts)
    assert verdicts.count("contested") >= 100, verdicts
    figure(
        "Drift and contention",
        "another writer resets a knob every 60 s for 2 h (policy: reassert) -> "
        "wg-tuner writes; then marked contested",
        f"{applies} writes in 120 cycles",
    )


def test_contested_backoff_grows_with_each_drift() -> None:
    from tuner.journal.journal import Record

    def drift(ts: float) -> Record:
        return Record(1, ts, DRIFTED, "c", "p", T, "1", "2", extra={"seen": "7"})

    one = view.context([drift(0.0)], 10.0, {})
    assert T not in one.contested
    two = view.context([drift(0.0), drift(100.0)], 200.0, {})
    three = view.context([drift(0.0), drift(100.0), drift(200.0)], 300.0, {})
    assert two.contested[T] == 100.0 + 3600.0
    assert three.contested[T] == 200.0 + 7200.0
    far = view.context([drift(0.0), drift(200_000.0)], 200_100.0, {})
    assert T not in far.contested  # days apart: not a fight
    assert Guards().on_drift is OnDrift.HOLD  # the safe default


def test_a_target_that_is_gone_is_released_once(tmp_path: Path) -> None:
    from tuner.errors import PermanentActuatorError

    ex, act, _ = executor(tmp_path)
    ex.apply(one_change("1", "2", 0), [POLICY], [SNAP, SNAP])

    def gone(target: object) -> str:
        raise PermanentActuatorError("wg0: no such interface")

    act.read = gone  # type: ignore[method-assign]
    (out,) = ex.detect_drift()
    assert "now gone (wg0: no such interface)" in out.reason
    assert ex.detect_drift() == []  # recorded once, not a warning every cycle
