"""What the guards need from the journal (pure): pending, owned, cooldowns, failures.

``Preview`` holds what a real run would journal before it plans (recovery's reverts,
drift), so a dry-run folds the same records into the same context without writing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from tuner.core.guards import PlanContext
from tuner.journal.journal import (
    APPLIED,
    DRIFTED,
    FREEZE_CLEARED,
    NOT_REVERTIBLE,
    OPEN_STATES,
    REVERT_FAILED,
    REVERTED,
    VERIFIED,
    Cause,
    ChangeState,
    Record,
    fold,
)
from tuner.model.target import Target

VERIFICATION_FAILED = "verification failed"
RECOVERED = "recovered: not verified before wg-tuner stopped"
CONTEST_WINDOW = 86400.0
"""Two drifts of one target within this long (a day) mark it contested."""
CONTEST_BACKOFF = 3600.0
"""Hands off a contested target this long, doubling with each further drift inside
the window (at most the window)."""


@dataclass(frozen=True, slots=True)
class DriftSeen:
    """A verified value that reads back different (``now``; None when the target is gone)."""

    state: ChangeState
    now: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Preview:
    """What a real run journals before it plans, computed without writing: the reverts
    its recovery would make and the drift it would record."""

    recover: tuple[ChangeState, ...] = ()
    drift: tuple[DriftSeen, ...] = ()

    def records(self, now: float, after_seq: int) -> list[Record]:
        out = []
        for c in self.recover:
            out.append(
                Record(
                    0,
                    now,
                    REVERTED,
                    c.change,
                    c.policy,
                    c.target,
                    c.prior,
                    c.desired,
                    reason=RECOVERED,
                    batch=c.batch,
                    code=Cause.RECOVERED,
                )
            )
        for d in self.drift:
            c = d.state
            out.append(
                Record(
                    0,
                    now,
                    DRIFTED,
                    c.change,
                    c.policy,
                    c.target,
                    c.prior,
                    c.desired,
                    reason=d.reason,
                    extra={"seen": d.now},
                    code=Cause.DRIFT,
                )
            )
        return [replace(r, seq=after_seq + n) for n, r in enumerate(out, 1)]


def context(
    records: Sequence[Record],
    now: float,
    cooldowns: Mapping[str, float],
    frozen_file: str | None = None,
    max_unverified: int = 3,
    *,
    sticky_policies: frozenset[str] = frozenset(),
) -> PlanContext:
    """``cooldowns``: each policy's cooldown in seconds (from the loaded policies);
    ``sticky_policies``: those whose standing changes hold their target."""
    changes = fold(records)
    pending = frozenset(c.target for c in changes.values() if c.state in OPEN_STATES)
    owned: dict[Target, str] = {}
    latest: dict[Target, float] = {}
    released: dict[Target, str] = {}
    sticky: dict[Target, tuple[str, str]] = {}
    for c in sorted(changes.values(), key=lambda c: c.last_ts):
        latest[c.target] = c.last_ts
        if c.state == VERIFIED and c.desired is not None:
            owned[c.target] = c.desired
            sticky.pop(c.target, None)
            if c.policy in sticky_policies and c.prior is not None:
                sticky[c.target] = (c.prior, c.policy)
        elif c.state in (REVERTED, REVERT_FAILED, DRIFTED):
            owned.pop(c.target, None)
            sticky.pop(c.target, None)
    drifts: dict[Target, list[float]] = {}
    for r in records:
        if r.target is None:
            continue
        if r.state == DRIFTED:
            drifts.setdefault(r.target, []).append(r.ts)
            released[r.target] = str(r.extra.get("seen"))
        elif r.state == VERIFIED:
            released.pop(r.target, None)  # wg-tuner set it again, through the guards
    contested: dict[Target, float] = {}
    for target, times in drifts.items():
        fights = len([t for t in times if times[-1] - t <= CONTEST_WINDOW])
        if fights >= 2:
            backoff = min(CONTEST_BACKOFF * 2 ** (fights - 2), CONTEST_WINDOW)
            contested[target] = times[-1] + backoff
    cooldown_until: dict[str, float] = {}
    failed: dict[Target, frozenset[str]] = {}
    applies: dict[str, list[float]] = {}
    blocked: dict[Target, str] = {}
    frozen = None
    for r in records:
        if r.state == APPLIED:
            applies.setdefault(r.policy, []).append(r.ts)
        if r.state == REVERTED and r.code is Cause.VERIFICATION_FAILED and r.target:
            until = r.ts + cooldowns.get(r.policy, 600.0)
            cooldown_until[r.policy] = max(until, cooldown_until.get(r.policy, 0.0))
            if r.desired is not None:
                failed[r.target] = failed.get(r.target, frozenset()) | {r.desired}
        if r.state == NOT_REVERTIBLE and r.target:
            blocked[r.target] = r.reason or "the kernel refused a write here before"
        if r.state == REVERT_FAILED:
            frozen = (
                f"a revert failed ({r.target}): changes are frozen until an operator "
                "runs 'wg-tuner rollback --clear-freeze'"
            )
        if r.state == FREEZE_CLEARED:
            frozen = None
    return PlanContext(
        now=now,
        frozen=frozen or frozen_file,
        pending=pending,
        owned=MappingProxyType(owned),
        cooldown_until=MappingProxyType(cooldown_until),
        applies=MappingProxyType({k: tuple(v) for k, v in applies.items()}),
        failed=MappingProxyType(failed),
        blocked=MappingProxyType(blocked),
        released=MappingProxyType(released),
        contested=MappingProxyType(contested),
        sticky=MappingProxyType(sticky),
        max_unverified=max_unverified,
    )
