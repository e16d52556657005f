"""``wg-tuner run``: the level-triggered reconcile loop.

Every cycle re-reads the host; the only memory it trusts is the journal. A cycle:
advance pending verifications (enforce), observe, probe what is due, plan with the
guards, and start admitted changes (enforce) or report them (observe). It never waits
for a verification window: the next cycles advance it. Errors end a cycle, not the
loop. SIGTERM/SIGINT finish the step and leave nothing unverified; SIGHUP reloads the
policies (a bad set is refused and the last good one kept).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType

import structlog

from tuner.core.guards import Decision
from tuner.core.plan import Plan
from tuner.engine import memory, sdnotify
from tuner.engine.executor import BatchResult, Executor
from tuner.engine.planning import Planner, decision_context
from tuner.errors import PolicyError, TunerError
from tuner.exporters.controller_metrics import ControllerState
from tuner.journal.journal import Cause, ChangeState, Journal, Record
from tuner.model.policy import Policy
from tuner.model.snapshot import Snapshot

log = structlog.get_logger("tuner.daemon")

HISTORY_SECONDS = 900.0
"""Snapshots are kept this long, so conditions can be held for up to 15 minutes."""
SHUTDOWN_BUDGET = 15.0


@dataclass
class Daemon:
    planner: Planner
    executor: Executor
    journal: Journal
    load_policies: Callable[[], list[Policy]]
    state_dir: Path
    interval: float = 10.0
    enforce: bool = False
    state: ControllerState = field(default_factory=ControllerState)
    on_cycle: Callable[[ControllerState], None] = lambda state: None
    on_progress: Callable[[], None] = lambda: None
    """Called after every cycle that did its work (the state lock's heartbeat)."""
    clock: Callable[[], float] = time.time
    max_cycles: int | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _reload: bool = False
    _detail_seconds: float = 60.0
    _history: deque[Snapshot] = field(default_factory=lambda: deque(maxlen=2000))
    _thin: int = 0
    """How many of the oldest snapshots in ``_history`` have had their peers dropped."""

    # -- signals --------------------------------------------------------------------
    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        log.info("daemon.stopping", signal=signal.Signals(signum).name)
        self._stop.set()

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self._reload = True

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)

    # -- loop -----------------------------------------------------------------------
    def run(self, policies: list[Policy]) -> int:
        self.state.mode_enforce = self.enforce
        self.set_policies(policies)
        recovered = self.executor.recover()
        for outcome in recovered:
            self.state.changes[(outcome.kind, outcome.status)] += 1
        log.info(
            "daemon.started",
            mode="enforce" if self.enforce else "observe",
            interval=self.interval,
            policies=len(policies),
            recovered=len(recovered),
        )
        first = True
        while not self._stop.is_set():
            started = time.monotonic()
            if self._reload:
                policies = self._reload_policies(policies)
            worked = False
            try:
                self.cycle(policies)
                self.state.last_success = self.clock()
                worked = True
            except (TunerError, OSError) as exc:
                self.state.cycle_errors += 1
                log.error("cycle.failed", error=str(exc))
                self._revert_overdue()
            duration = time.monotonic() - started
            self.state.cycles += 1
            self.state.last_cycle_seconds = duration
            self.state.cycle_seconds_sum += duration
            self.on_cycle(self.state)
            memory.release()  # the cycle's peak back to the system, not kept until the next
            if first:
                sdnotify.notify("READY=1")
                first = False
            if worked:
                # Only a cycle that did its work proves the daemon alive: one that keeps
                # failing lets the watchdog restart it, and its guards see no heartbeat.
                sdnotify.notify("WATCHDOG=1")
                self.on_progress()
            sdnotify.notify(
                f"STATUS=cycle {self.state.cycles}: "
                f"{sum(self.state.findings.values())} findings, "
                f"{self.state.pending} pending verification(s)"
            )
            if self.max_cycles is not None and self.state.cycles >= self.max_cycles:
                break
            self._stop.wait(max(0.0, self.interval - duration))
        sdnotify.notify("STOPPING=1")
        self.shutdown(policies)
        log.info("daemon.stopped", cycles=self.state.cycles)
        return 0

    def _reload_policies(self, current: list[Policy]) -> list[Policy]:
        self._reload = False
        try:
            fresh = self.load_policies()
        except PolicyError as exc:
            self.state.policy_errors = len(exc.issues)
            log.error(
                "policy.reload_failed", errors=[str(i) for i in exc.issues], kept=len(current)
            )
            return current
        except Exception as exc:  # the last good set stays, whatever the files did
            self.state.policy_errors = 1
            log.error("policy.reload_failed", errors=[type(exc).__name__], kept=len(current))
            return current
        self.state.policy_errors = 0
        self.set_policies(fresh)
        log.info("policy.reloaded", policies=len(fresh))
        return fresh

    def cycle(self, policies: Sequence[Policy]) -> Plan:
        """One reconcile step; returns the plan it decided (and acted on, in enforce)."""
        began = time.monotonic()
        prev = self._history[-1] if self._history else None
        snapshot = self.planner.probed(self.planner.observer.observe(), prev, policies)
        self._remember(snapshot)
        self.state.snapshot = snapshot
        self.state.remember_probes(snapshot)
        if self.enforce:
            self._count(self.executor.advance(policies, snapshot, prev))
            self.state.drifts += len(self.executor.detect_drift())
        records = self.journal.read().records
        ctx = decision_context(records, policies, self.clock(), self.state_dir)
        plan = self.planner.decide(list(self._history), policies, ctx)
        self.state.findings = Counter(f.policy for f in plan.findings)
        self.state.peer_findings = tuple(
            (f.policy, f.interface or "", f.peer, f.peer_name or "")
            for f in plan.findings
            if f.peer
        )
        self.state.held = Counter(
            c.verdict.guard for c in plan.changes if c.verdict.decision is Decision.HOLD
        )
        self.state.frozen = ctx.frozen is not None
        for c in plan.changes:
            if c.verdict.decision is Decision.HOLD:
                log.info(
                    "guard.held",
                    change=c.id,
                    policy=c.policy,
                    target=str(c.target),
                    guard=c.verdict.guard,
                    reason=c.verdict.reason,
                )
        started = BatchResult()
        age = time.monotonic() - began
        if plan.admitted and self.enforce and age > self.executor.settings.max_gap:
            # Stopped or starved between observing and acting: this plan describes a
            # host that may be gone. Act on nothing; the next cycle observes afresh.
            log.warning("plan.stale", age=round(age, 1), admitted=len(plan.admitted))
        elif plan.admitted:
            if self.enforce:
                started = self.executor.start(plan, policies, list(self._history))
                self._count(started)
            else:
                for c in plan.admitted:
                    log.info(
                        "plan.would_apply",
                        change=c.id,
                        policy=c.policy,
                        target=str(c.target),
                        before=c.before,
                        after=c.after,
                    )
        self.state.pending = len(self.executor.pending())
        self.journal.compact_if_due()
        log.info(
            "cycle.done",
            cycle=self.state.cycles + 1,
            interfaces=len(snapshot.interfaces),
            peers=sum(len(i.peers) for i in snapshot.interfaces),
            findings=len(plan.findings),
            admitted=len(plan.admitted),
            started=len([o for o in started.outcomes if o.status == "applied"]),
            pending=self.state.pending,
            probes=len(snapshot.probes),
            duration_ms=round((time.monotonic() - began) * 1000, 1),
        )
        return plan

    def _revert_overdue(self) -> None:
        """A cycle that could not observe cannot verify: a change past its revert deadline
        is reverted from the journal alone (its recorded prior value) rather than left
        standing on the hope of a later observation."""
        now = self.clock()
        overdue = [(s, r) for s, r in self.executor.pending() if (r.deadline or now) < now]
        why = "reverted: its deadline passed while the host could not be observed"
        reverted = self._revert_newest_first(overdue, Cause.DEADLINE, why)
        self.state.rollbacks += reverted

    def _revert_newest_first(
        self, entries: Sequence[tuple[ChangeState, Record]], code: Cause, why: str
    ) -> int:
        """Revert ``entries`` newest first, counted by outcome; how many were reverted."""
        reverted = 0
        for state, _ in sorted(entries, key=lambda p: p[1].seq, reverse=True):
            try:
                out = self.executor.revert_state(state, code, why)
            except (TunerError, OSError) as exc:
                log.error("change.revert_failed", change=state.change, error=str(exc))
                continue
            self.state.changes[(out.kind, out.status)] += 1
            reverted += out.status == "reverted"
        return reverted

    def _remember(self, snapshot: Snapshot) -> None:
        """Keep the whole history, but per-peer detail only as long as a peer or interface
        condition can need it: 10,000 peers x 450 snapshots would not fit in memory, and a
        peer condition never looks back further than its hold. Interfaces stay (without
        their peers), so host metrics derived from them (``wg.userspace``) keep their
        values for host conditions held longer than the detail window."""
        if len(self._history) == self._history.maxlen:
            self._thin = max(0, self._thin - 1)  # append drops the oldest
        self._history.append(snapshot)
        while self._history and snapshot.taken_at - self._history[0].taken_at > HISTORY_SECONDS:
            self._history.popleft()
            self._thin = max(0, self._thin - 1)
        for i in range(self._thin, len(self._history)):
            old = self._history[i]
            if snapshot.taken_at - old.taken_at <= self._detail_seconds:
                break
            self._history[i] = replace(
                old, interfaces=tuple(replace(w, peers=()) for w in old.interfaces), probes=()
            )
            self._thin = i + 1

    def set_policies(self, policies: Sequence[Policy]) -> None:
        holds = [c.hold_seconds for p in policies for c in p.conditions if p.scope.value != "host"]
        self._detail_seconds = max(holds, default=0.0) + 3 * self.interval

    def _count(self, result: BatchResult) -> None:
        for o in result.outcomes:
            self.state.changes[(o.kind, o.status)] += 1
        self.state.rollbacks += len(result.rolled_back)

    def shutdown(self, policies: Sequence[Policy]) -> None:
        """Leave no unverified change: verify what the time allows, revert the rest."""
        deadline = time.monotonic() + SHUTDOWN_BUDGET
        while self.executor.pending() and time.monotonic() < deadline:
            pending = self.executor.pending()
            if (
                min(r.deadline or 0 for _, r in pending) - self.clock()
                > deadline - time.monotonic()
            ):
                break  # their windows end after our budget: revert instead
            prev = self._history[-1] if self._history else None
            self._count(self.executor.advance(policies, self.planner.observer.observe(), prev))
            time.sleep(min(1.0, self.executor.settings.interval))
        why = "reverted at shutdown: not verified in time"
        self._revert_newest_first(self.executor.pending(), Cause.SHUTDOWN, why)
