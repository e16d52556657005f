"""Which journal records a compaction keeps (pure): exactly what guards and recovery need.

A change is kept whole (every record of its id) or not at all, so folding a compacted
journal gives the same state per kept change. Kept:

- every change that is still open (intended, applied): recovery and the revert guard;
- per target, its first change (``rollback --all`` restores that change's prior) and
  its latest change (ownership, drift baselines, ``rollback --last``/``--id``);
- every change applied within the last hour (the hourly rate guard);
- per (target, value), the latest change that failed verification (values that failed
  before are never retried; the newest per policy also sets its cooldown);
- every drift within the contest window, and the latest per target (contested,
  ``onDrift``);
- per target, the latest kernel refusal (not revertible); the latest failed revert and
  the latest freeze lifting (the freeze).

Everything else is history nobody decides on. ``tests/unit/test_journal_compaction.py``
checks that a compacted journal gives the same guard context, pending changes and
recovery as the whole one, for random histories.
"""

from __future__ import annotations

from collections.abc import Sequence

from tuner.journal.journal import (
    APPLIED,
    DRIFTED,
    FREEZE_CLEARED,
    NOT_REVERTIBLE,
    OPEN_STATES,
    REVERT_FAILED,
    REVERTED,
    Cause,
    Record,
    fold,
)
from tuner.journal.view import CONTEST_WINDOW
from tuner.model.target import Target

RATE_WINDOW = 3600.0


def keep(records: Sequence[Record], now: float) -> list[Record]:
    """The records a compacted journal holds, in their original order."""
    changes = fold(records)
    wanted: set[str] = {c.change for c in changes.values() if c.state in OPEN_STATES}
    first: dict[Target, tuple[float, str]] = {}
    latest: dict[tuple[Target, str], tuple[float, str]] = {}
    for c in changes.values():
        if c.target not in first or c.first_ts < first[c.target][0]:
            first[c.target] = (c.first_ts, c.change)
        # The latest change per target *and final state*: ownership, drift release and
        # rollback all look back to the latest verified / reverted / drifted one.
        key = (c.target, str(c.state))
        if key not in latest or c.last_ts >= latest[key][0]:
            latest[key] = (c.last_ts, c.change)
    wanted |= {change for _, change in first.values()}
    wanted |= {change for _, change in latest.values()}
    failed: dict[tuple[Target, str | None], str] = {}
    drifts: dict[Target, list[tuple[float, str]]] = {}
    refused: dict[Target, str] = {}
    freeze: dict[str, str] = {}
    for r in records:
        if r.state == APPLIED and now - r.ts < RATE_WINDOW:
            wanted.add(r.change)
        elif r.state == REVERTED and r.code is Cause.VERIFICATION_FAILED and r.target:
            failed[(r.target, r.desired)] = r.change
        elif r.state == DRIFTED and r.target:
            drifts.setdefault(r.target, []).append((r.ts, r.change))
        elif r.state == NOT_REVERTIBLE and r.target:
            refused[r.target] = r.change
        elif r.state in (REVERT_FAILED, FREEZE_CLEARED):
            freeze[r.state] = r.change
    for seen in drifts.values():
        last = seen[-1][0]  # fights are counted back from the latest drift
        wanted |= {change for ts, change in seen if last - ts <= CONTEST_WINDOW}
    wanted |= set(failed.values()) | set(refused.values()) | set(freeze.values())
    return [r for r in records if r.change in wanted]
