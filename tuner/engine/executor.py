"""Apply admitted changes under the journal, verify them, keep or roll back.

Commit-confirmed: ``intended`` (with the prior value) is durable before a change is
made, ``applied`` after; only ``verified`` keeps it. Anything left ``intended`` or
``applied`` by a crash is reverted by ``recover`` at the next start, so no pending
revert ever dies with the process. Reverts run in reverse order. A failed revert is
journaled as ``revert_failed``, which freezes every further change.
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from tuner.actuators.base import Actuator, HealthCheck
from tuner.actuators.persist import Persisted, Persistence
from tuner.core import verify
from tuner.core.plan import Plan, ProposedChange
from tuner.engine.guard import Guards
from tuner.engine.health import VALUE_CHECKS, CheckResult, Health
from tuner.errors import ActuatorError, NotRevertible, PermanentActuatorError, TunerError
from tuner.journal.journal import (
    APPLIED,
    DRIFTED,
    INTENDED,
    NOT_REVERTIBLE,
    OPEN_STATES,
    REVERT_FAILED,
    REVERTED,
    VERIFIED,
    Cause,
    ChangeState,
    Journal,
    Record,
    fold,
)
from tuner.journal.view import RECOVERED, VERIFICATION_FAILED, DriftSeen
from tuner.model.kinds import KINDS, typed
from tuner.model.policy import Policy, Verify
from tuner.model.snapshot import Snapshot
from tuner.model.target import Target
from tuner.observe.collector import Observer

log = structlog.get_logger("tuner.engine")

FAULT_ENV = "WG_TUNER_FAULT_KILL_AFTER"
"""Fault injection for the crash tests: SIGKILL this process right after the journal
record of this state is durable (intended, applied, verifying, reverting)."""


def _fault_point(state: str) -> None:
    if os.environ.get(FAULT_ENV) == state:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True, slots=True)
class VerifySettings:
    settle: float | None = None
    """Override every policy's settle time (seconds)."""
    window: float | None = None
    """Override every policy's verification window (seconds)."""
    grace: float = 20.0
    """A check must fail this long in a row to fail verification: WireGuard sessions can
    go dark for ~16 s after a peer restarts."""
    interval: float = 1.0
    max_gap: float = 15.0
    """Two verification steps further apart than this mean wg-tuner was not watching
    (stopped, starved of CPU): a window that ended in such a gap proves nothing."""


@dataclass
class Outcome:
    id: str
    policy: str
    kind: str
    target: Target
    before: str | None
    after: str | None
    status: str
    reason: str = ""
    checks: list[dict[str, Any]] = field(default_factory=list)
    code: Cause = Cause.NONE

    @classmethod
    def of(
        cls,
        state: ChangeState,
        status: str,
        reason: str = "",
        checks: list[dict[str, Any]] | None = None,
        *,
        undo: bool = False,
    ) -> Outcome:
        """An outcome for a journaled change; ``undo`` reports it as going back."""
        before, after = (state.desired, state.prior) if undo else (state.prior, state.desired)
        return cls(
            state.change,
            state.policy,
            state.target.kind,
            state.target,
            before,
            after,
            status,
            reason,
            checks or [],
        )

    def data(self) -> dict[str, Any]:
        t = self.target
        return {
            "id": self.id,
            "policy": self.policy,
            "kind": self.kind,
            "target": f"{t.name} peer {t.peer}" if t.peer else t.name,
            "before": typed(self.kind, self.before),
            "after": typed(self.kind, self.after),
            "status": self.status,
            "reason": self.reason or None,
            "code": self.code.value or None,
            "verification": {
                "passed": self.status == "verified",
                "checks": self.checks,
            }
            if self.checks
            else None,
        }


@dataclass
class BatchResult:
    outcomes: list[Outcome] = field(default_factory=list)
    rolled_back: list[Outcome] = field(default_factory=list)
    revert_failed: bool = False


@dataclass
class Executor:
    journal: Journal
    actuators: Mapping[str, Actuator]
    observer: Observer
    health: Health
    settings: VerifySettings = field(default_factory=VerifySettings)
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    on_progress: Callable[[], None] = lambda: None
    """Called after each verification step of a one-shot (the state lock's heartbeat)."""
    persistence: Persistence | None = None
    """Writes verified changes of ``persist: true`` policies through (sysctl.d, wg-quick)."""
    guards: Guards | None = None
    """Arms a revert deadline outside this process for every batch it applies."""
    stop: threading.Event = field(default_factory=threading.Event)
    """Set by SIGTERM/SIGINT: a one-shot apply reverts what it left unverified and ends."""
    _failing_since: dict[str, float] = field(default_factory=dict)
    _last_step: float | None = None
    _origins: dict[str, Snapshot] = field(default_factory=dict)
    """Per batch: the first snapshot after its settle time. Rate checks measure from
    it, so a counter's growth before the change (the plan's snapshot is older than the
    change by the apply's own time) is never counted against the change."""

    # -- recovery and rollback ------------------------------------------------------
    def revert_state(
        self, state: ChangeState, code: Cause, reason: str, batch: str = ""
    ) -> Outcome:
        actuator = self.actuators[state.target.kind]
        common = {
            "policy": state.policy,
            "target": state.target,
            "prior": state.prior,
            "desired": state.desired,
            "batch": batch or state.batch,
        }
        try:
            actuator.revert(state.target, state.prior)
            _fault_point("reverting")
        except TunerError as exc:
            self.journal.append(
                REVERT_FAILED, state.change, reason=str(exc), code=Cause.REVERT_ERROR, **common
            )
            log.error(
                "change.revert_failed",
                change=state.change,
                target=str(state.target),
                error=str(exc),
            )
            failed = Outcome.of(state, "revert_failed", str(exc), undo=True)
            failed.code = Cause.REVERT_ERROR
            return failed
        self.journal.append(REVERTED, state.change, reason=reason, code=code, **common)
        self._unpersist(state.change)
        log.warning("change.reverted", change=state.change, target=str(state.target), reason=reason)
        out = Outcome.of(state, "reverted", reason, undo=True)
        out.code = code
        return out

    def _persist(self, state: ChangeState, policy: Policy | None) -> dict[str, Any] | None:
        if self.persistence is None or policy is None or not policy.action.persist:
            return None
        if state.desired is None:
            return None
        try:
            record = self.persistence.persist(state.target, state.desired)
        except TunerError as exc:
            log.warning("change.persist_failed", change=state.change, error=str(exc))
            return None
        log.info("change.persisted", change=state.change, path=record.path)
        return {
            "path": record.path,
            "key": record.key,
            "section": record.section,
            "previous": record.previous,
        }

    def _unpersist(self, change: str) -> None:
        if self.persistence is None:
            return
        for r in self.journal.read().records:
            data = r.extra.get("persisted") if r.change == change and r.state == VERIFIED else None
            if data is not None:
                try:
                    self.persistence.unpersist(Persisted.from_record(data))
                except (TunerError, OSError) as exc:
                    log.warning("change.unpersist_failed", change=change, error=str(exc))

    def unverified(self) -> list[ChangeState]:
        """Changes the journal shows as intended or applied, newest first."""
        changes = fold(self.journal.read().records)
        return sorted(
            (c for c in changes.values() if c.state in OPEN_STATES),
            key=lambda c: c.first_ts,
            reverse=True,
        )

    def recover(self) -> list[Outcome]:
        """Revert every change the journal shows as intended or applied, newest first."""
        return [self.revert_state(c, Cause.RECOVERED, RECOVERED) for c in self.unverified()]

    def drift_seen(self) -> list[DriftSeen]:
        """Every value wg-tuner set and verified that no longer reads back as set (reads only)."""
        changes = fold(self.journal.read().records)
        latest: dict[Target, ChangeState] = {}
        for c in sorted(changes.values(), key=lambda c: c.last_ts):
            latest[c.target] = c
        out = []
        for target, c in sorted(latest.items()):
            actuator = self.actuators.get(target.kind)
            if c.state != VERIFIED or actuator is None:
                continue
            gone = ""
            try:
                now = actuator.read(target)
            except PermanentActuatorError as exc:  # the interface or peer is no more
                now, gone = None, str(exc)
            except (ActuatorError, OSError) as exc:
                log.warning("drift.unreadable", change=c.change, target=str(target), error=str(exc))
                continue
            if not gone and KINDS[target.kind].value.same(now, c.desired):
                continue
            reason = (
                f"changed outside wg-tuner: it set {c.desired}, now gone ({gone})"
                if gone
                else f"changed outside wg-tuner: it set {c.desired}, now {now}"
            )
            out.append(DriftSeen(c, now, reason))
        return out

    def detect_drift(self) -> list[Outcome]:
        """Journal every value wg-tuner set and verified that no longer reads back as set.

        The target is the other writer's from then on: not owned, not rolled back, and
        touched again only as the policy's ``onDrift`` and the ``contested`` guard allow.
        """
        out = []
        for seen in self.drift_seen():
            c = seen.state
            self.journal.append(
                DRIFTED,
                c.change,
                code=Cause.DRIFT,
                policy=c.policy,
                target=c.target,
                prior=c.prior,
                desired=c.desired,
                reason=seen.reason,
                extra={"seen": seen.now},
            )
            log.warning(
                "drift.detected",
                change=c.change,
                policy=c.policy,
                target=str(c.target),
                ours=c.desired,
                now=seen.now,
            )
            out.append(Outcome.of(c, "drifted", seen.reason))
        return out

    def rollback(
        self, *, change: str | None = None, last: bool = False, everything: bool = False
    ) -> list[Outcome]:
        changes = fold(self.journal.read().records)
        kept = [c for c in changes.values() if c.state == VERIFIED]
        if everything:
            # Every knob wg-tuner ever touched goes back to its pre-wg-tuner value: the
            # prior of the first change journaled for that target.
            first: dict[Target, ChangeState] = {}
            for c in sorted(changes.values(), key=lambda c: c.first_ts):
                first.setdefault(c.target, c)
            out = []
            for target, original in sorted(first.items(), key=lambda kv: -kv[1].first_ts):
                latest = max(
                    (c for c in changes.values() if c.target == target), key=lambda c: c.last_ts
                )
                if latest.state == DRIFTED:
                    log.info("rollback.skipped", target=str(target), reason=latest.reason)
                    continue  # someone else's value now: hands off
                state = ChangeState(
                    latest.change,
                    latest.policy,
                    target,
                    original.prior,
                    latest.desired,
                    latest.state,
                    latest.batch,
                    latest.first_ts,
                    latest.last_ts,
                )
                out.append(self.revert_state(state, Cause.ROLLBACK, "rollback --all"))
            return out
        if change is not None:
            selected = [c for c in kept if c.change == change or c.change.startswith(change)]
        elif last:
            batch = max(kept, key=lambda c: c.last_ts).batch if kept else None
            selected = [c for c in kept if c.batch == batch]
        else:
            selected = []
        selected.sort(key=lambda c: c.first_ts, reverse=True)
        return [self.revert_state(c, Cause.ROLLBACK, "rollback requested") for c in selected]

    # -- apply ----------------------------------------------------------------------
    def _checks(
        self, target: Target, desired: str | None, verify: Verify | None
    ) -> list[HealthCheck]:
        return list(
            KINDS[target.kind].health_checks(target, desired, verify.health if verify else ())
        )

    def start(
        self, plan: Plan, policies: Sequence[Policy], history: Sequence[Snapshot]
    ) -> BatchResult:
        """Baseline, then apply every admitted change under the journal. Never waits."""
        result = BatchResult()
        admitted = list(plan.admitted)
        if not admitted:
            return result
        by_name = {p.name: p for p in policies}
        batch = secrets.token_hex(4)
        verify = [by_name[c.policy].verify for c in admitted]
        settle = (
            self.settings.settle
            if self.settings.settle is not None
            else max(v.settle for v in verify)
        )
        window = (
            self.settings.window
            if self.settings.window is not None
            else max(v.window for v in verify)
        )
        before = history[-2] if len(history) > 1 else None
        baselines = []
        for change in admitted:
            checks = self._checks(change.target, change.after, by_name[change.policy].verify)
            results = {
                k.name: self.health.run(
                    k, change.target, change.after, history[-1], before, baseline=None
                )
                for k in checks
            }
            gates = sorted(n for n, r in results.items() if r.ok or n in VALUE_CHECKS)
            baselines.append({"gates": gates, "baseline": {n: r.value for n, r in results.items()}})
        done = self._apply_changes(admitted, baselines, batch, (settle, window), result)
        for state in done or ():
            result.outcomes.append(Outcome.of(state, "applied"))
        return result

    def _apply_changes(
        self,
        admitted: Sequence[ProposedChange],
        baselines: Sequence[Mapping[str, Any]],
        batch: str,
        times: tuple[float, float],
        result: BatchResult,
    ) -> list[ChangeState] | None:
        """Apply in order under the journal; on a failure undo in reverse, return None.

        The revert guard is armed before the first change is made, so no change exists
        without a deadline that outlives this process."""
        settle, window = times
        done: list[ChangeState] = []
        armed: dict[str, Any] = {}
        if self.guards is not None:
            deadline = self.clock() + settle + window + self.settings.grace
            armed = self.guards.arm(batch, deadline)
        for change, baseline in zip(admitted, baselines, strict=True):
            actuator = self.actuators[change.kind]
            run_id = f"{change.id}.{batch}"
            prior = actuator.read(change.target)
            common = {
                "policy": change.policy,
                "target": change.target,
                "prior": prior,
                "desired": change.after,
                "batch": batch,
            }
            self.journal.append(INTENDED, run_id, **common)
            _fault_point("intended")
            try:
                actuator.apply(change.target, change.after)
            except NotRevertible as exc:
                self.journal.append(
                    NOT_REVERTIBLE, run_id, reason=str(exc), code=Cause.KERNEL_REFUSED, **common
                )
                result.outcomes.append(
                    Outcome(
                        run_id,
                        change.policy,
                        change.kind,
                        change.target,
                        prior,
                        change.after,
                        "held",
                        str(exc),
                    )
                )
                continue
            except ActuatorError as exc:
                log.error("change.apply_failed", change=run_id, error=str(exc))
                now = self.clock()
                state = ChangeState(
                    run_id,
                    change.policy,
                    change.target,
                    prior,
                    change.after,
                    INTENDED,
                    batch,
                    now,
                    now,
                )
                failed = self.revert_state(state, Cause.APPLY_FAILED, f"apply failed: {exc}", batch)
                result.rolled_back.append(failed)
                for undo in reversed(done):
                    why = "rolled back: a later change of its batch failed"
                    result.rolled_back.append(self.revert_state(undo, Cause.WITH_BATCH, why, batch))
                result.revert_failed = any(o.status == "revert_failed" for o in result.rolled_back)
                self._cancel_guard(batch, armed)
                return None
            now = self.clock()
            self.journal.append(
                APPLIED,
                run_id,
                verify_after=now + settle,
                deadline=now + settle + window,
                extra={**baseline, "guard": armed} if armed else baseline,
                **common,
            )
            log.info(
                "change.applied",
                change=run_id,
                policy=change.policy,
                target=str(change.target),
                before=prior,
                after=change.after,
            )
            _fault_point("applied")
            done.append(
                ChangeState(
                    run_id,
                    change.policy,
                    change.target,
                    prior,
                    change.after,
                    APPLIED,
                    batch,
                    now,
                    now,
                )
            )
        if not done:
            self._cancel_guard(batch, armed)
        return done

    def _cancel_guard(self, batch: str, armed: Mapping[str, Any] | None) -> None:
        if self.guards is not None and armed:
            self.guards.cancel(batch, dict(armed))

    def pending(self) -> list[tuple[ChangeState, Record]]:
        """Applied, unverified changes with their ``applied`` record (deadlines, baseline)."""
        records = self.journal.read().records
        states = fold(records)
        applied = {r.change: r for r in records if r.state == APPLIED}
        return [
            (s, applied[s.change])
            for s in states.values()
            if s.state == APPLIED and s.change in applied
        ]

    def _undo_batch(
        self,
        batch: str,
        members: list[tuple[ChangeState, Record]],
        result: BatchResult,
        *,
        reasons: Mapping[str, tuple[Cause, str]],
        default: tuple[Cause, str],
        reports: Mapping[str, list[dict[str, Any]]],
    ) -> None:
        """Revert a batch newest first (cause and reason per change id, else ``default``)."""
        for state, _ in sorted(members, key=lambda m: m[1].seq, reverse=True):
            code, reason = reasons.get(state.change, default)
            out = self.revert_state(state, code, reason, batch)
            out.checks = list(reports.get(state.change, []))
            result.rolled_back.append(out)
            result.outcomes.append(out)
        result.revert_failed = any(o.status == "revert_failed" for o in result.rolled_back)
        if members:
            self._cancel_guard(batch, members[0][1].extra.get("guard"))

    def advance(
        self, policies: Sequence[Policy], snapshot: Snapshot, before: Snapshot | None
    ) -> BatchResult:
        """One verification step for every pending change: keep, wait, or roll back.

        Verification is a journal state: this never blocks, the next call continues.
        The checks run here (I/O); ``core.verify`` judges them.
        """
        result = BatchResult()
        by_name = {p.name: p for p in policies}
        now = self.clock()
        gap = now - self._last_step if self._last_step is not None else 0.0
        self._last_step = now
        batches: dict[str, list[tuple[ChangeState, Record]]] = {}
        for state, record in self.pending():
            batches.setdefault(state.batch, []).append((state, record))
        for gone in set(self._origins) - set(batches):
            del self._origins[gone]
        for batch, entries in batches.items():
            members = [
                verify.Member(s.change, r.verify_after or 0.0, r.deadline or 0.0)
                for s, r in entries
            ]
            origin = self._origins.get(batch)
            if origin is None and any(verify.due(m, now) for m in members):
                self._origins[batch] = snapshot  # this step still measures from ``before``
            rates_from = before if origin is None else origin
            if verify.stalled(members, now, gap, self.settings.max_gap):
                # The window ran (partly) while nobody watched: a check now would
                # commit a verdict on stale evidence. Undo; the next cycle re-plans.
                why = f"not verified: wg-tuner was stalled {gap:.0f} s during the window"
                log.warning("verification.stalled", batch=batch, gap=round(gap, 1))
                self._undo_batch(
                    batch, entries, result, reasons={}, default=(Cause.STALLED, why), reports={}
                )
                continue
            checked = [
                c
                for (state, record), member in zip(entries, members, strict=True)
                if verify.due(member, now)
                for c in self._run_checks(
                    state, record, by_name.get(state.policy), snapshot, rates_from
                )
            ]
            verdict = verify.judge(members, checked, now, self.settings.grace, self._failing_since)
            self._failing_since = dict(verdict.failing_since)
            reports: dict[str, list[dict[str, Any]]] = {}
            for c in checked:
                reports.setdefault(c.change, []).append(
                    {"name": c.name, "gate": c.gate, "passed": c.passed, "detail": c.detail}
                )
            if verdict.step is verify.Step.ROLL_BACK:
                why = f"{VERIFICATION_FAILED}: {', '.join(verdict.failing)}"
                blamed = dict.fromkeys(verdict.culprits, (Cause.VERIFICATION_FAILED, why))
                undo = (Cause.WITH_BATCH, "rolled back with its batch")
                self._undo_batch(
                    batch, entries, result, reasons=blamed, default=undo, reports=reports
                )
            elif verdict.step is verify.Step.KEEP:
                for state, _ in entries:
                    self._keep(state, by_name.get(state.policy))
                    result.outcomes.append(
                        Outcome.of(state, "verified", "", reports.get(state.change, []))
                    )
                self._cancel_guard(batch, entries[0][1].extra.get("guard"))
        return result

    def _run_checks(
        self,
        state: ChangeState,
        record: Record,
        policy: Policy | None,
        snapshot: Snapshot,
        before: Snapshot | None,
    ) -> list[verify.Checked]:
        gates = set(record.extra.get("gates", ()))
        values = record.extra.get("baseline", {})
        out = []
        for check in self._checks(state.target, state.desired, policy.verify if policy else None):
            base = CheckResult(check.name, True, "baseline", values.get(check.name))
            res = self.health.run(
                check, state.target, state.desired, snapshot, before, baseline=base
            )
            _fault_point("verifying")
            gate = check.name in gates
            out.append(verify.Checked(state.change, check.name, gate, res.ok, res.detail))
        return out

    def _keep(self, state: ChangeState, policy: Policy | None) -> None:
        persisted = self._persist(state, policy)
        self.journal.append(
            VERIFIED,
            state.change,
            policy=state.policy,
            target=state.target,
            prior=state.prior,
            desired=state.desired,
            batch=state.batch,
            extra={"persisted": persisted} if persisted else {},
        )
        log.info("change.verified", change=state.change, target=str(state.target))

    def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when asked to stop."""
        if self.sleep is time.sleep:
            self.stop.wait(seconds)
        else:
            self.sleep(seconds)

    def apply(
        self, plan: Plan, policies: Sequence[Policy], history: Sequence[Snapshot]
    ) -> BatchResult:
        """One-shot: start, then advance every second until nothing is pending."""
        result = self.start(plan, policies, history)
        if result.rolled_back or not any(o.status == "applied" for o in result.outcomes):
            return result
        started = {o.id for o in result.outcomes if o.status == "applied"}
        finished: dict[str, Outcome] = {}
        while True:
            entries = [(s, r) for s, r in self.pending() if s.change in started]
            if not entries:
                break
            if self.stop.is_set():
                # Asked to stop (SIGTERM/SIGINT): nothing of ours is left unverified.
                step = BatchResult()
                by_batch: dict[str, list[tuple[ChangeState, Record]]] = {}
                for entry in entries:
                    by_batch.setdefault(entry[0].batch, []).append(entry)
                why = (Cause.INTERRUPTED, "reverted: wg-tuner apply was asked to stop")
                for batch, members in by_batch.items():
                    self._undo_batch(batch, members, step, reasons={}, default=why, reports={})
            else:
                wait = min(r.verify_after or 0.0 for _, r in entries) - self.clock()
                self._pause(wait if wait > 0 else self.settings.interval)
                if self.stop.is_set():
                    continue
                step = self.advance(policies, self.observer.observe(), history[-1])
                self.on_progress()
            for o in step.outcomes:
                finished[o.id] = o
            result.rolled_back += step.rolled_back
            result.revert_failed = result.revert_failed or step.revert_failed
        result.outcomes = [finished.get(o.id, o) for o in result.outcomes]
        return result
