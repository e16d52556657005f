"""Build a Plan from the live host: observe twice, probe where policies need it, decide.

The only side effects are reads and probes; the decision itself is ``core.plan.plan``.
``decision_context`` is the one way the three modes turn the journal and the state
directory into what the guards know: ``plan`` calls it on the journal as a real run
would see it after its first writes (a ``Preview`` of recovery and drift, computed, not
written), ``apply`` and ``run`` on the journal after making those writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import structlog

from tuner.actuators.base import Actuator
from tuner.core.guards import Decision, PlanContext
from tuner.core.plan import Plan, plan, with_blocked
from tuner.journal import view
from tuner.journal.journal import Record
from tuner.journal.view import Preview
from tuner.model.policy import Policy
from tuner.model.probe_schedule import ProbeSchedule, due_probes
from tuner.model.rates import rates
from tuner.model.snapshot import Snapshot
from tuner.model.target import Target
from tuner.observe.collector import Observer
from tuner.observe.probes import PathProber

log = structlog.get_logger("tuner.engine")

FREEZE_FILE = "FROZEN"
PROBE_METRICS = ("probe.", "iface.min_tunnel_mtu", "iface.mtu_deficit")


def needs_probes(policies: Sequence[Policy]) -> bool:
    names = [c.metric for p in policies for c in p.conditions]
    names += [p.action.derive for p in policies if p.action.derive]
    return any(n.startswith(PROBE_METRICS) for n in names)


def frozen_reason(state_dir: Path) -> str | None:
    path = state_dir / FREEZE_FILE
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError:
        return f"freeze file {path} exists (unreadable)"
    return f"frozen by {path}" + (f": {text.splitlines()[0][:200]}" if text else "")


def decision_context(
    records: Sequence[Record],
    policies: Sequence[Policy],
    now: float,
    state_dir: Path,
    preview: Preview | None = None,
) -> PlanContext:
    """What the guards know, built the same way for plan, apply and run."""
    preview = preview or Preview()
    seq = max((r.seq for r in records), default=0)
    cooldowns = {p.name: p.guards.cooldown for p in policies}
    virtual = [*records, *preview.records(now, seq)]
    sticky = frozenset(p.name for p in policies if p.action.sticky)
    ctx = view.context(virtual, now, cooldowns, frozen_reason(state_dir), sticky_policies=sticky)
    if preview.recover:
        # Recovery puts these back first; the plan's "before" is what it puts back.
        ctx = replace(ctx, assume={c.target: c.prior for c in preview.recover})
    return ctx


@dataclass
class Planner:
    observer: Observer
    prober: PathProber | None
    actuators: dict[str, Actuator]
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    schedule: ProbeSchedule = field(default_factory=ProbeSchedule)

    def history(self, sample: float, policies: Sequence[Policy]) -> list[Snapshot]:
        """A one-shot's history: observe twice ``sample`` apart, then probe what is due."""
        first = self.observer.observe()
        if sample > 0:
            self.sleep(sample)
        return [first, self.probed(self.observer.observe(), first, policies)]

    def probed(
        self, snapshot: Snapshot, prev: Snapshot | None, policies: Sequence[Policy]
    ) -> Snapshot:
        """``snapshot`` with the probes the schedule says are due (the one probe step of
        every mode), or as it is when no policy needs probes."""
        if self.prober is None or not needs_probes(policies):
            return snapshot
        r = rates(prev, snapshot) if prev is not None else None
        due = due_probes(snapshot, r, self.prober.memory.last_probed(), self.schedule)
        if not due:
            return snapshot
        log.info("probe.due", count=len(due))
        return self.prober.probe(snapshot, [(d.interface, d.peer) for d in due])

    def decide(
        self, history: Sequence[Snapshot], policies: Sequence[Policy], ctx: PlanContext
    ) -> Plan:
        first = plan(history, policies, ctx)
        blocked: dict[Target, str] = {}
        for change in first.changes:
            if change.verdict.decision is not Decision.ADMIT:
                continue
            actuator = self.actuators.get(change.kind)
            reason = actuator.check(change.target) if actuator else f"no actuator {change.kind}"
            if reason:
                blocked[change.target] = reason
        if not blocked:
            return first
        return plan(history, policies, with_blocked(ctx, blocked))
