"""One-shot ``wg-tuner apply``: lock, recover, then plan -> apply -> verify rounds.

Returns when nothing is pending (bounded by the verification windows and a number of
rounds). Exit codes: 0 nothing failed, 3 a change was rolled back, 4 a revert failed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from tuner import exit_codes
from tuner.core.plan import Plan
from tuner.engine.executor import Executor, Outcome
from tuner.engine.planning import Planner, frozen_reason
from tuner.exporters.report import change_data
from tuner.journal import view
from tuner.journal.journal import Journal
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
            "schema": "wg-tuner/apply/v1",
            "changed": self.changed,
            "changes": [o.data() for o in self.changes] + self.held,
            "rolled_back": [o.data() for o in self.rolled_back],
            "recovered": [o.data() for o in self.recovered],
            "drifted": [o.data() for o in self.drifted],
            "diff": {
                "before": {_key(o): o.before for o in kept},
                "after": {_key(o): o.after for o in kept},
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
    cooldowns = {p.name: p.guards.cooldown for p in policies}
    for _ in range(rounds):
        records = journal.read().records
        ctx = view.context(records, time.time(), cooldowns, frozen_reason(state_dir))
        history = planner.history(sample, policies)
        plan = planner.decide(history, policies, ctx)
        if plan.admitted and time.time() - history[-1].taken_at > executor.settings.max_gap:
            log.warning("plan.stale", age=round(time.time() - history[-1].taken_at, 1))
            continue  # stopped between observing and acting: observe again
        report.plans.append(plan)
        if not plan.admitted:
            break
        batch = executor.apply(plan, policies, history)
        report.changes += batch.outcomes
        report.rolled_back += batch.rolled_back
        if batch.rolled_back or batch.revert_failed:
            break
    last = report.plans[-1] if report.plans else None
    if last is not None:
        applied_ids = {o.id.rsplit(".", 1)[0] for o in report.changes}
        for change in last.changes:
            if change.id not in applied_ids and change.verdict.decision.value != "admit":
                data = change_data(change)
                data["status"] = "held" if change.verdict.decision.value == "hold" else "noop"
                report.held.append(data)
    return report
