"""One-shot ``wg-tuner apply`` and its dry-run ``wg-tuner plan``, on one decision path.

``run_apply``: lock, recover, journal drift, then plan -> apply -> verify rounds; returns
when nothing is pending (bounded by the verification windows and a number of rounds).
Exit codes: 0 nothing failed, 3 a change was rolled back, 4 a revert failed.

``run_plan`` decides exactly as ``run_apply``'s first round would: the same journal,
the same state directory, recovery and drift previewed instead of written. It stops
before the first write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from tuner import exit_codes
from tuner.core.plan import Plan
from tuner.engine.executor import Executor, Outcome
from tuner.engine.planning import Planner, decision_context
from tuner.exporters.report import change_data
from tuner.journal import lock
from tuner.journal.journal import Journal
from tuner.journal.view import Preview
from tuner.model.kinds import typed
from tuner.model.policy import Policy

log = structlog.get_logger("tuner.engine")

EXIT_ROLLED_BACK = exit_codes.ROLLED_BACK
EXIT_REVERT_FAILED = exit_codes.REVERT_FAILED
MAX_ROUNDS = 3


def _key(o: Outcome) -> str:
    return f"{o.kind} {o.target.name}" + (f" peer {o.target.peer}" if o.target.peer else "")


@dataclass
class ApplyReport:
    changes: list[Outcome] = field(default_factory=list)
    rolled_back: list[Outcome] = field(default_factory=list)
    recovered: list[Outcome] = field(default_factory=list)
    drifted: list[Outcome] = field(default_factory=list)
    held: list[dict[str, Any]] = field(default_factory=list)
    journal_skipped: tuple[int, ...] = ()
    plans: list[Plan] = field(default_factory=list)

    @property
    def revert_failed(self) -> bool:
        return any(o.status == "revert_failed" for o in self.rolled_back + self.recovered)

    @property
    def changed(self) -> bool:
        return any(o.status == "verified" for o in self.changes)

    @property
    def exit_code(self) -> int:
        if self.revert_failed:
            return EXIT_REVERT_FAILED
        if self.rolled_back:
            return EXIT_ROLLED_BACK
        return 0

    def data(self) -> dict[str, Any]:
        kept = [o for o in self.changes if o.status == "verified"]
        return {
            "schema": "wg-tuner/apply",
            "schemaVersion": 2,
            "changed": self.changed,
            "changes": [o.data() for o in self.changes] + self.held,
            "rolled_back": [o.data() for o in self.rolled_back],
            "recovered": [o.data() for o in self.recovered],
            "drifted": [o.data() for o in self.drifted],
            "diff": {
                "before": {_key(o): typed(o.kind, o.before) for o in kept},
                "after": {_key(o): typed(o.kind, o.after) for o in kept},
            },
            "journal_skipped_lines": list(self.journal_skipped),
            "exit_code": self.exit_code,
        }


def run_apply(
    *,
    planner: Planner,
    executor: Executor,
    journal: Journal,
    policies: Sequence[Policy],
    state_dir: Path,
    sample: float,
    rounds: int = MAX_ROUNDS,
) -> ApplyReport:
    report = ApplyReport()
    report.journal_skipped = journal.read().skipped
    if report.journal_skipped:
        log.warning("journal.corrupt_lines", lines=list(report.journal_skipped))
    report.recovered = executor.recover()
    report.drifted = executor.detect_drift()
    for _ in range(rounds):
        history = planner.history(sample, policies)
        ctx = decision_context(journal.read().records, policies, planner.clock(), state_dir)
        plan = planner.decide(history, policies, ctx)
        age = planner.clock() - history[-1].taken_at
        if plan.admitted and age > executor.settings.max_gap:
            log.warning("plan.stale", age=round(age, 1))
            continue  # stopped between observing and acting: observe again
        report.plans.append(plan)
        if not plan.admitted or executor.stop.is_set():
            break
        batch = executor.apply(plan, policies, history)
        report.changes += batch.outcomes
        report.rolled_back += batch.rolled_back
        if batch.rolled_back or batch.revert_failed:
            break
    journal.compact_if_due()
    last = report.plans[-1] if report.plans else None
    if last is not None:
        applied_ids = {o.id.rsplit(".", 1)[0] for o in report.changes}
        for change in last.changes:
            if change.id not in applied_ids and change.verdict.decision.value != "admit":
                data = change_data(change)
                data["status"] = "held" if change.verdict.decision.value == "hold" else "noop"
                report.held.append(data)
    return report


@dataclass(frozen=True, slots=True)
class DryRun:
    """What ``plan`` found: the plan, and what apply would write before it."""

    plan: Plan
    preview: Preview
    holder: str | None
    """Another wg-tuner holding the state directory ("pid N"), or None."""
    notes: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return self.plan.changed or bool(self.preview.recover)


def run_plan(
    *,
    planner: Planner,
    executor: Executor,
    journal: Journal,
    policies: Sequence[Policy],
    state_dir: Path,
    sample: float,
) -> DryRun:
    """Decide as ``run_apply`` would, writing nothing (not even the journal or the lock)."""
    read = journal.read()
    holder = lock.holder(state_dir)
    # A live holder is verifying its own changes: they stand. With nobody holding the
    # lock, apply's recovery would revert whatever is unverified before planning.
    preview = Preview(
        recover=() if holder else tuple(executor.unverified()),
        drift=tuple(executor.drift_seen()),
    )
    history = planner.history(sample, policies)
    ctx = decision_context(read.records, policies, planner.clock(), state_dir, preview)
    plan = planner.decide(history, policies, ctx)
    notes = [*history[-1].errors, *history[-1].notes]
    if read.skipped:
        notes.append(f"journal: skipped torn or corrupt lines {list(read.skipped)}")
    if holder:
        notes.append(
            f"another wg-tuner ({holder}) holds {state_dir}: apply would wait for it; "
            "its unverified changes stand"
        )
    for c in preview.recover:
        notes.append(
            f"apply would first revert {c.target} {c.desired} -> {c.prior} "
            f"(change {c.change}: not verified before wg-tuner stopped)"
        )
    for d in preview.drift:
        notes.append(f"apply would record drift on {d.state.target}: {d.reason}")
    return DryRun(plan, preview, holder, tuple(notes))
