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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from tuner.actuators.base import Actuator, HealthCheck
from tuner.core.plan import Plan, ProposedChange
from tuner.engine.health import VALUE_CHECKS, CheckResult, Health
from tuner.errors import ActuatorError, NotRevertible, TunerError
from tuner.journal.journal import (
    APPLIED,
    INTENDED,
    NOT_REVERTIBLE,
    OPEN_STATES,
    REVERT_FAILED,
    REVERTED,
    VERIFIED,
    ChangeState,
    Journal,
    fold,
)
from tuner.journal.view import VERIFICATION_FAILED
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

    def data(self) -> dict[str, Any]:
        t = self.target
        return {
            "id": self.id,
            "policy": self.policy,
            "kind": self.kind,
            "target": f"{t.name} peer {t.peer}" if t.peer else t.name,
            "before": self.before,
            "after": self.after,
            "status": self.status,
            "reason": self.reason or None,
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

    # -- recovery and rollback ------------------------------------------------------
    def _revert(self, state: ChangeState, reason: str, batch: str = "") -> Outcome:
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
            self.journal.append(REVERT_FAILED, state.change, reason=str(exc), **common)
            log.error(
                "change.revert_failed",
                change=state.change,
                target=str(state.target),
                error=str(exc),
            )
            return Outcome(
                state.change,
                state.policy,
                state.target.kind,
                state.target,
                state.desired,
                state.prior,
                "revert_failed",
                str(exc),
            )
        self.journal.append(REVERTED, state.change, reason=reason, **common)
        log.warning("change.reverted", change=state.change, target=str(state.target), reason=reason)
        return Outcome(
            state.change,
            state.policy,
            state.target.kind,
            state.target,
            state.desired,
            state.prior,
            "reverted",
            reason,
        )

    def recover(self) -> list[Outcome]:
        """Revert every change the journal shows as intended or applied, newest first."""
        changes = fold(self.journal.read().records)
        open_ = sorted(
            (c for c in changes.values() if c.state in OPEN_STATES),
            key=lambda c: c.first_ts,
            reverse=True,
        )
        return [self._revert(c, "recovered: not verified before wg-tuner stopped") for c in open_]

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
                out.append(self._revert(state, "rollback --all"))
            return out
        if change is not None:
            selected = [c for c in kept if c.change == change or c.change.startswith(change)]
        elif last:
            batch = max(kept, key=lambda c: c.last_ts).batch if kept else None
            selected = [c for c in kept if c.batch == batch]
        else:
            selected = []
        selected.sort(key=lambda c: c.first_ts, reverse=True)
        return [self._revert(c, "rollback requested") for c in selected]

    # -- apply ----------------------------------------------------------------------
    def _checks(self, change: ProposedChange, verify: Verify) -> list[HealthCheck]:
        actuator = self.actuators[change.kind]
        checks = list(actuator.health_checks(change.target, change.after))
        seen = {c.name for c in checks}
        params = (
            {"interface": change.target.name}
            if change.kind in ("mtu", "keepalive", "mss_clamp")
            else {}
        )
        checks += [HealthCheck(n, params) for n in verify.health if n not in seen]
        return checks

    def _evaluate(
        self,
        items: Sequence[tuple[ProposedChange, list[HealthCheck]]],
        snapshot: Snapshot,
        before: Snapshot | None,
        baseline: Mapping[tuple[str, str], CheckResult] | None,
    ) -> dict[tuple[str, str], CheckResult]:
        out = {}
        for change, checks in items:
            for check in checks:
                key = (change.id, check.name)
                base = None if baseline is None else baseline.get(key)
                out[key] = self.health.run(
                    check,
                    change.target,
                    change.after,
                    snapshot,
                    before,
                    baseline=base,
                )
        return out

    def apply(
        self, plan: Plan, policies: Sequence[Policy], history: Sequence[Snapshot]
    ) -> BatchResult:
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
        items = [(c, self._checks(c, by_name[c.policy].verify)) for c in admitted]
        before = history[-2] if len(history) > 1 else None
        baseline = self._evaluate(items, history[-1], before, None)
        gates = {k for k, r in baseline.items() if r.ok or k[1] in VALUE_CHECKS}
        done = self._apply_changes(items, batch, (settle, window), result)
        if not done:  # None: failed and rolled back; []: nothing could be applied
            return result
        ids = {s.change.rsplit(".", 1)[0] for s in done}
        live = [(c, k) for c, k in items if c.id in ids]
        failing, last = self._verify(
            live, gates=gates, baseline=baseline, settle=settle, window=window, before=before
        )
        for state, (change, checks) in zip(done, live, strict=True):
            report = [
                {
                    "name": k.name,
                    "gate": (change.id, k.name) in gates,
                    "baseline": baseline[(change.id, k.name)].ok,
                    "passed": last[(change.id, k.name)].ok,
                    "detail": last[(change.id, k.name)].detail,
                }
                for k in checks
            ]
            status = "verified"
            reason = ""
            if not failing:
                self.journal.append(
                    VERIFIED,
                    state.change,
                    policy=state.policy,
                    target=state.target,
                    prior=state.prior,
                    desired=state.desired,
                    batch=batch,
                )
                log.info("change.verified", change=state.change, target=str(state.target))
            else:
                status = "applied"
            result.outcomes.append(
                Outcome(
                    state.change,
                    state.policy,
                    change.kind,
                    state.target,
                    state.prior,
                    state.desired,
                    status,
                    reason,
                    report,
                )
            )
        if failing:
            names = ", ".join(sorted({n for _, n in failing}))
            culprits = {cid for cid, _ in failing}
            for state in reversed(done):
                base_id = state.change.rsplit(".", 1)[0]
                why = (
                    f"{VERIFICATION_FAILED}: {names}"
                    if base_id in culprits
                    else "rolled back with its batch"
                )
                out = self._revert(state, why, batch)
                result.rolled_back.append(out)
                for o in result.outcomes:
                    if o.id == state.change:
                        o.status, o.reason = out.status, why
            result.revert_failed = any(o.status == "revert_failed" for o in result.rolled_back)
        return result

    def _apply_changes(
        self,
        items: Sequence[tuple[ProposedChange, list[HealthCheck]]],
        batch: str,
        times: tuple[float, float],
        result: BatchResult,
    ) -> list[ChangeState] | None:
        """Apply in order under the journal; on a failure undo in reverse, return None."""
        settle, window = times
        done: list[ChangeState] = []
        for change, _ in items:
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
                self.journal.append(NOT_REVERTIBLE, run_id, reason=str(exc), **common)
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
                result.rolled_back.append(self._revert(state, f"apply failed: {exc}", batch))
                for undo in reversed(done):
                    result.rolled_back.append(
                        self._revert(undo, "rolled back: a later change of its batch failed", batch)
                    )
                result.revert_failed = any(o.status == "revert_failed" for o in result.rolled_back)
                return None
            now = self.clock()
            self.journal.append(
                APPLIED, run_id, verify_after=now + settle, deadline=now + settle + window, **common
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
        return done

    def _verify(
        self,
        items: Sequence[tuple[ProposedChange, list[HealthCheck]]],
        *,
        gates: set[tuple[str, str]],
        baseline: Mapping[tuple[str, str], CheckResult],
        settle: float,
        window: float,
        before: Snapshot | None,
    ) -> tuple[list[tuple[str, str]], dict[tuple[str, str], CheckResult]]:
        """Gate checks that fail for ``grace`` seconds in a row, or still fail at the end."""
        self.sleep(settle)
        end = self.clock() + window
        failing_since: dict[tuple[str, str], float] = {}
        last: dict[tuple[str, str], CheckResult] = {}
        while True:
            snapshot = self.observer.observe()
            last = self._evaluate(items, snapshot, before, baseline)
            _fault_point("verifying")
            now = self.clock()
            for key, res in last.items():
                if key not in gates:
                    continue
                if res.ok:
                    failing_since.pop(key, None)
                else:
                    failing_since.setdefault(key, now)
            expired = [k for k, t in failing_since.items() if now - t >= self.settings.grace]
            if expired:
                return expired, last
            if now >= end:
                return sorted(failing_since), last
            self.sleep(min(self.settings.interval, max(0.0, end - now)))
