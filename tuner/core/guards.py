"""Guards: small pure functions with one signature, folded into a verdict.

Each guard looks at one proposed change and the plan context and either passes (None)
or returns the verdict that holds the change, with its reason. The first guard that
holds wins, so a held change always says which guard and why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from tuner.model.kinds import KINDS
from tuner.model.policy import OnDrift, Policy
from tuner.model.target import Target


def _empty() -> Mapping[Any, Any]:
    return MappingProxyType({})


class Decision(StrEnum):
    ADMIT = "admit"
    HOLD = "hold"
    NOOP = "noop"


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    guard: str = ""
    reason: str = ""
    until: float | None = None


ADMIT = Verdict(Decision.ADMIT)


@dataclass(frozen=True, slots=True)
class PlanContext:
    """What the guards know beyond the snapshot: the journal's view and the clock."""

    now: float
    frozen: str | None = None
    """Why changes are frozen (freeze file, failed revert), or None."""
    pending: frozenset[Target] = frozenset()
    """Targets with an applied but not yet verified change."""
    owned: Mapping[Target, str] = field(default_factory=_empty)
    """The value wg-tuner last set and verified, per target."""
    cooldown_until: Mapping[str, float] = field(default_factory=_empty)
    """Per policy: no changes before this time (after a rollback)."""
    applies: Mapping[str, tuple[float, ...]] = field(default_factory=_empty)
    """Per policy: when its changes were applied (for the hourly rate)."""
    failed: Mapping[Target, frozenset[str]] = field(default_factory=_empty)
    """Values that failed verification on a target: not tried again."""
    blocked: Mapping[Target, str] = field(default_factory=_empty)
    """Targets an actuator says cannot be changed here, with the reason."""
    released: Mapping[Target, str] = field(default_factory=_empty)
    """Targets someone else changed after wg-tuner verified them: the value they set."""
    contested: Mapping[Target, float] = field(default_factory=_empty)
    """Targets changed by someone else again and again: hands off until this time."""
    sticky: Mapping[Target, tuple[str, str]] = field(default_factory=_empty)
    """Targets a sticky policy's verified change holds: (the value it replaced, policy)."""
    max_unverified: int = 3
    assume: Mapping[Target, str | None] = field(default_factory=_empty)
    """Targets a real run puts back before it plans (recovery): their value by then."""


@dataclass(frozen=True, slots=True)
class Candidate:
    policy: Policy
    target: Target
    before: str | None
    after: str | None
    admitted_so_far: int = 0
    """Changes admitted earlier in this plan, all policies."""
    admitted_by_policy: int = 0
    """...and by this change's own policy."""


Guard = Callable[[Candidate, PlanContext], Verdict | None]


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M UTC")


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def noop(c: Candidate, ctx: PlanContext) -> Verdict | None:
    if KINDS[c.target.kind].value.same(c.before, c.after):
        return Verdict(Decision.NOOP, "noop", f"already {c.after}")
    return None


def bounds(c: Candidate, ctx: PlanContext) -> Verdict | None:
    after = _number(c.after)
    if after is None:
        return None
    action = c.policy.action
    kind_low, kind_high = KINDS[c.target.kind].bounds or (None, None)
    lows = [x for x in (kind_low, action.minimum) if x is not None]
    highs = [x for x in (kind_high, action.maximum) if x is not None]
    if lows and after < max(lows):
        return Verdict(Decision.HOLD, "bounds", f"{c.after} is below the minimum {max(lows)}")
    if highs and after > min(highs):
        return Verdict(Decision.HOLD, "bounds", f"{c.after} is above the maximum {min(highs)}")
    return None


def revertible(c: Candidate, ctx: PlanContext) -> Verdict | None:
    reason = ctx.blocked.get(c.target)
    absent = KINDS[c.target.kind].absent
    if c.before is None and absent:
        reason = reason or f"{c.target.name} {absent}"
    return Verdict(Decision.HOLD, "revertible", reason) if reason else None


def frozen(c: Candidate, ctx: PlanContext) -> Verdict | None:
    return Verdict(Decision.HOLD, "freeze", ctx.frozen) if ctx.frozen else None


def maintenance(c: Candidate, ctx: PlanContext) -> Verdict | None:
    windows = c.policy.guards.windows
    if not windows:
        return None
    minute = int(ctx.now // 60 % 1440)
    for start, end in windows:
        inside = start <= minute < end if start <= end else (minute >= start or minute < end)
        if inside:
            return None
    nxt = min(((start - minute) % 1440 for start, _ in windows))
    return Verdict(
        Decision.HOLD,
        "maintenance",
        "outside the maintenance window",
        ctx.now + nxt * 60 - ctx.now % 60,
    )


def drift(c: Candidate, ctx: PlanContext) -> Verdict | None:
    owned = ctx.owned.get(c.target)
    if owned is not None and owned != c.before:
        return Verdict(
            Decision.HOLD,
            "drift",
            f"changed outside wg-tuner (it set {owned}, now {c.before}): hands off",
        )
    theirs = ctx.released.get(c.target)
    if theirs is not None and theirs == c.before and c.policy.guards.on_drift is OnDrift.HOLD:
        return Verdict(
            Decision.HOLD,
            "drift",
            f"someone else set {theirs} here after wg-tuner: hands off (onDrift: hold)",
        )
    return None


def contested(c: Candidate, ctx: PlanContext) -> Verdict | None:
    until = ctx.contested.get(c.target)
    if until is not None and ctx.now < until:
        return Verdict(
            Decision.HOLD,
            "contested",
            f"another writer keeps changing {c.target}: backing off until {_clock(until)}",
            until,
        )
    return None


def failed_before(c: Candidate, ctx: PlanContext) -> Verdict | None:
    if c.after is not None and c.after in ctx.failed.get(c.target, frozenset()):
        return Verdict(
            Decision.HOLD, "failed-before", f"{c.after} failed verification on this target before"
        )
    return None


def sticky(c: Candidate, ctx: PlanContext) -> Verdict | None:
    held = ctx.sticky.get(c.target)
    if held is None or held[1] == c.policy.name:
        return None
    replaced, by = held
    if KINDS[c.target.kind].value.same(c.after, replaced):
        return Verdict(
            Decision.HOLD,
            "sticky",
            f"{by} changed {c.target} from {replaced} and that change stands: "
            f"not set back to {replaced}",
        )
    return None


def cooldown(c: Candidate, ctx: PlanContext) -> Verdict | None:
    until = ctx.cooldown_until.get(c.policy.name)
    if until is not None and ctx.now < until:
        return Verdict(Decision.HOLD, "cooldown", f"cooldown until {_clock(until)}", until)
    return None


def rate(c: Candidate, ctx: PlanContext) -> Verdict | None:
    recent = [t for t in ctx.applies.get(c.policy.name, ()) if ctx.now - t < 3600]
    if len(recent) >= c.policy.guards.rate_per_hour:
        until = min(recent) + 3600
        return Verdict(
            Decision.HOLD,
            "rate",
            f"{len(recent)} changes in the last hour (limit "
            f"{c.policy.guards.rate_per_hour}) until {_clock(until)}",
            until,
        )
    return None


def blast_radius(c: Candidate, ctx: PlanContext) -> Verdict | None:
    if c.target in ctx.pending:
        return Verdict(Decision.HOLD, "blast-radius", "a change on this target awaits verification")
    if len(ctx.pending) + c.admitted_so_far >= ctx.max_unverified:
        return Verdict(
            Decision.HOLD,
            "blast-radius",
            f"{ctx.max_unverified} unverified change(s) at most at once",
        )
    if c.admitted_by_policy >= c.policy.guards.max_unverified:
        return Verdict(
            Decision.HOLD,
            "blast-radius",
            f"{c.policy.name} makes {c.policy.guards.max_unverified} change(s) at most at once",
        )
    return None


def max_step(c: Candidate, ctx: PlanContext) -> Verdict | None:
    step = c.policy.guards.max_step
    before, after = _number(c.before), _number(c.after)
    if step is None or before is None or after is None:
        return None
    if abs(after - before) > step:
        return Verdict(
            Decision.HOLD,
            "max-step",
            f"a change of {abs(after - before):g} exceeds the step limit {step}",
        )
    return None


GUARDS: tuple[Guard, ...] = (
    noop,
    bounds,
    revertible,
    frozen,
    maintenance,
    contested,
    drift,
    failed_before,
    sticky,
    cooldown,
    rate,
    blast_radius,
    max_step,
)


def judge(c: Candidate, ctx: PlanContext) -> Verdict:
    for guard in GUARDS:
        verdict = guard(c, ctx)
        if verdict is not None:
            return verdict
    return ADMIT
