"""The verification brain (pure): from check results to keep, wait or roll back.

One batch of changes is verified together. The engine runs the health checks (I/O) of
every member whose settle time has passed and hands the results here with the clock;
``judge`` says what to do and returns the memory of how long each gate has been failing,
which the engine keeps for the next step. Rules:

- a gate check failing ``grace`` seconds in a row rolls the whole batch back, blaming the
  members whose checks failed;
- at the deadline, a check that has just failed holds the verdict (one lost probe is
  noise): wait until it passes again or has failed for the whole grace;
- a batch is kept only when every member was checked at or after its deadline;
- a step more than ``max_gap`` after the previous one, inside a window, proves nothing:
  the batch is undone and re-planned (``stalled``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class Step(StrEnum):
    WAIT = "wait"
    KEEP = "keep"
    ROLL_BACK = "roll_back"
    STALLED = "stalled"


@dataclass(frozen=True, slots=True)
class Member:
    change: str
    verify_after: float
    deadline: float


@dataclass(frozen=True, slots=True)
class Checked:
    """One check's result for one member."""

    change: str
    name: str
    gate: bool
    """Whether a failure counts: value checks always, others only if they passed before."""
    passed: bool
    detail: str = ""


def _empty() -> Mapping[str, float]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Judgement:
    step: Step
    failing: tuple[str, ...] = ()
    """Names of the checks that failed for their whole grace."""
    culprits: frozenset[str] = frozenset()
    """Members whose checks failed (the others are undone with their batch)."""
    failing_since: Mapping[str, float] = field(default_factory=_empty)
    """``change/check`` -> when it started failing: the memory for the next step."""


def due(member: Member, now: float) -> bool:
    """Whether a member's settle time has passed, so its checks run this step."""
    return now >= member.verify_after


def stalled(members: Sequence[Member], now: float, gap: float, max_gap: float) -> bool:
    """A step after a pause longer than ``max_gap`` that overlapped a window."""
    return gap > max_gap and any(now - gap < m.deadline for m in members)


def judge(
    members: Sequence[Member],
    checked: Sequence[Checked],
    now: float,
    grace: float,
    failing_since: Mapping[str, float],
) -> Judgement:
    """Keep, wait or roll back one batch, given this step's results (``checked`` holds
    every check of every member that was due)."""
    since = dict(failing_since)
    failing: list[str] = []
    culprits: set[str] = set()
    unsettled = False
    for c in checked:
        key = f"{c.change}/{c.name}"
        if c.passed or not c.gate:
            since.pop(key, None)
            continue
        first = since.setdefault(key, now)
        if now - first >= grace:
            failing.append(c.name)
            culprits.add(c.change)
        else:
            unsettled = True
    memory = MappingProxyType(since)
    if failing:
        return Judgement(Step.ROLL_BACK, tuple(sorted(set(failing))), frozenset(culprits), memory)
    seen = {c.change for c in checked}
    everyone = all(m.change in seen for m in members)
    if everyone and not unsettled and all(now >= m.deadline for m in members):
        return Judgement(Step.KEEP, failing_since=memory)
    return Judgement(Step.WAIT, failing_since=memory)
