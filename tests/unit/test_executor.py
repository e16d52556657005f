"""The executor with in-memory actuators, a fake health and no sleeping."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.conftest import REPO
from tests.reliability import FigureFn
from tuner.actuators.base import HealthCheck, Target
from tuner.core.guards import ADMIT, Decision
from tuner.core.plan import Plan, ProposedChange
from tuner.engine.executor import Executor, VerifySettings
from tuner.engine.health import CheckResult
from tuner.errors import JournalError, PermanentActuatorError
from tuner.journal import view
from tuner.journal.journal import APPLIED, INTENDED, REVERT_FAILED, REVERTED, Cause, Journal
from tuner.model.policy import (
    Action,
    Condition,
    Op,
    Policy,
    Scope,
    Selector,
    Verify,
)
from tuner.model.snapshot import HostCounters, Knobs, Snapshot

pytestmark = pytest.mark.timing


class MemActuator:
    kind: ClassVar[str] = "sysctl"

    def __init__(self, values: dict[Target, str]) -> None:
        self.values = dict(values)
        self.fail_apply: set[Target] = set()
        self.fail_revert: set[Target] = set()
        self.log: list[tuple[str, Target, str | None]] = []

    def read(self, target: Target) -> str | None:
        return self.values.get(target)

    def apply(self, target: Target, desired: str | None) -> bool:
        if target in self.fail_apply:
            raise PermanentActuatorError(f"{target}: refused")
        self.log.append(("apply", target, desired))
        changed = self.values.get(target) != desired
        self.values[target] = str(desired)
        return changed

    def revert(self, target: Target, prior: str | None) -> None:
        if target in self.fail_revert:
            raise PermanentActuatorError(f"{target}: revert refused")
        self.log.append(("revert", target, prior))
        self.values[target] = str(prior)

    def check(self, target: Target) -> str | None:
        return None

    def same(self, a: str | None, b: str | None) -> bool:
        return a == b

    def health_checks(self, target: Target, desired: str | None) -> tuple[HealthCheck, ...]:
        return (HealthCheck("tunnel_passes_tcp", {}),)


class FakeHealth:
    def __init__(self) -> None:
        self.ok_after = True
        self.calls = 0

    def run(
        self,
        check: HealthCheck,
        target: Target,
        desired: str | None,
        snapshot: Any,
        before: Any,
        *,
        baseline: CheckResult | None,
    ) -> CheckResult:
        self.calls += 1
        ok = True if baseline is None else self.ok_after
        return CheckResult(check.name, ok, "fake")


class FakeObserver:
    def observe(self, interfaces: tuple[str, ...] = ()) -> Snapshot:
        return SNAP


SNAP = Snapshot(1.0, 1.0, "n", (), (), HostCounters(), Knobs())
TARGETS = [Target("sysctl", f"net.core.k{i}") for i in range(3)]
POLICY = Policy(
    "p",
    "s",
    "w",
    Scope.HOST,
    Selector(),
    (Condition("conntrack.fill", Op.GT, 0),),
    True,
    Action("sysctl", value=2, key="net.core.rmem_max"),
    verify=Verify(settle=0, window=0),
)


def change(i: int) -> ProposedChange:
    return ProposedChange(f"c-{i}", "p", "sysctl", TARGETS[i], "1", "2", "why", (), 50, ADMIT)


def executor(tmp_path: Path, **settings: Any) -> tuple[Executor, MemActuator, FakeHealth]:
    act = MemActuator(dict.fromkeys(TARGETS, "1"))
    health = FakeHealth()
    clock = iter(range(1000, 100000))
    ex = Executor(
        Journal(tmp_path / "state"),
        {"sysctl": act},
        FakeObserver(),  # type: ignore[arg-type]
        health,
        VerifySettings(**{"grace": 0, "interval": 0, **settings}),
        clock=lambda: float(next(clock)),
        sleep=lambda s: None,
    )
    return ex, act, health


def plan(n: int = 3) -> Plan:
    return Plan(1.0, "n", (), tuple(change(i) for i in range(n)))


def states(ex: Executor) -> list[tuple[str, str]]:
    return [(r.state, r.change.split(".")[0]) for r in ex.journal.read().records]


def test_all_verified(tmp_path: Path) -> None:
    ex, act, _ = executor(tmp_path)
    result = ex.apply(plan(), [POLICY], [SNAP, SNAP])
    assert [o.status for o in result.outcomes] == ["verified"] * 3
    assert all(v == "2" for v in act.values.values())


def test_partial_failure_undoes_earlier_changes_in_reverse(
    tmp_path: Path, figure: FigureFn
) -> None:
    ex, act, _ = executor(tmp_path)
    act.fail_apply.add(TARGETS[2])
    result = ex.apply(plan(), [POLICY], [SNAP, SNAP])
    assert [o.status for o in result.rolled_back] == ["reverted"] * 3
    reverts = [t for op, t, _ in act.log if op == "revert"]
    assert reverts == [TARGETS[2], TARGETS[1], TARGETS[0]]
    assert all(v == "1" for v in act.values.values())
    figure(
        "Rollback and crash safety",
        "third of three changes fails to apply -> undo order; values left changed",
        f"{' then '.join(str(t) for t in reverts)}; {sum(v != '1' for v in act.values.values())}",
    )
    assert ("intended", "c-2") in states(ex) and ("applied", "c-2") not in states(ex)


def test_verification_failure_reverts_and_cools_down(tmp_path: Path) -> None:
    ex, act, health = executor(tmp_path)
    health.ok_after = False
    result = ex.apply(plan(2), [POLICY], [SNAP, SNAP])
    assert [o.status for o in result.rolled_back] == ["reverted", "reverted"]
    assert all(v == "1" for v in act.values.values())
    ctx = view.context(ex.journal.read().records, 2000.0, {"p": 600.0})
    assert ctx.cooldown_until["p"] > 2000.0
    assert ctx.failed[TARGETS[0]] == frozenset({"2"})
    assert not ctx.pending


def test_failed_revert_freezes(tmp_path: Path) -> None:
    ex, act, health = executor(tmp_path)
    health.ok_after = False
    act.fail_revert.add(TARGETS[0])
    result = ex.apply(plan(1), [POLICY], [SNAP, SNAP])
    assert result.revert_failed
    ctx = view.context(ex.journal.read().records, 2000.0, {})
    assert ctx.frozen and "rollback --clear-freeze" in ctx.frozen


def test_recovery_reverts_what_a_crash_left_open(tmp_path: Path) -> None:
    ex, act, _ = executor(tmp_path)
    act.values[TARGETS[0]] = "2"  # applied before the crash
    j = ex.journal
    j.append(INTENDED, "c-0.x", policy="p", target=TARGETS[0], prior="1", desired="2")
    j.append(APPLIED, "c-0.x", policy="p", target=TARGETS[0], prior="1", desired="2")
    j.append(INTENDED, "c-1.x", policy="p", target=TARGETS[1], prior="1", desired="2")
    recovered = ex.recover()
    assert [o.target for o in recovered] == [TARGETS[1], TARGETS[0]]  # newest first
    assert act.values[TARGETS[0]] == "1" and act.values[TARGETS[1]] == "1"
    assert ex.recover() == []  # converged: nothing left open


def test_full_disk_applies_nothing(tmp_path: Path, figure: FigureFn) -> None:
    ex, act, _ = executor(tmp_path)

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    ex.journal.fsync = full
    with pytest.raises(JournalError):
        ex.apply(plan(1), [POLICY], [SNAP, SNAP])
    assert act.log == [] and all(v == "1" for v in act.values.values())
    figure(
        "Journal and state", "full disk (ENOSPC on the journal) -> changes applied", len(act.log)
    )


def test_rollback_all_restores_pre_wg_tuner_values(tmp_path: Path) -> None:
    ex, act, _ = executor(tmp_path)
    ex.apply(plan(1), [POLICY], [SNAP, SNAP])
    second = Plan(
        1.0,
        "n",
        (),
        (ProposedChange("c-9", "p", "sysctl", TARGETS[0], "2", "3", "w", (), 50, ADMIT),),
    )
    ex.apply(second, [POLICY], [SNAP, SNAP])
    assert act.values[TARGETS[0]] == "3"
    out = ex.rollback(everything=True)
    assert [o.status for o in out] == ["reverted"]
    assert act.values[TARGETS[0]] == "1"
    assert REVERTED in [r.state for r in ex.journal.read().records]
    assert REVERT_FAILED not in [r.state for r in ex.journal.read().records]


def test_held_changes_are_not_applied(tmp_path: Path) -> None:
    ex, act, _ = executor(tmp_path)
    held = Plan(
        1.0,
        "n",
        (),
        (
            ProposedChange(
                "c-0",
                "p",
                "sysctl",
                TARGETS[0],
                "1",
                "2",
                "w",
                (),
                50,
                ADMIT.__class__(Decision.HOLD, "freeze", "frozen"),
            ),
        ),
    )
    assert ex.apply(held, [POLICY], [SNAP, SNAP]).outcomes == []
    assert act.log == []


def test_a_hundred_racing_starts_never_overlap(tmp_path: Path, figure: FigureFn) -> None:
    log = tmp_path / "log"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.locker", str(tmp_path / "s"), str(log), "60"],
            cwd=REPO,
        )
        for _ in range(100)
    ]
    codes = [p.wait(timeout=120) for p in procs]
    assert codes == [0] * 100
    lines = log.read_text().splitlines()
    assert len(lines) == 200
    overlaps = sum(
        not (enter.startswith("enter") and leave == "exit" + enter[5:])
        for enter, leave in zip(lines[::2], lines[1::2], strict=True)
    )
    figure("Concurrency", "100 racing starts -> times two were inside apply at once", overlaps)
    assert overlaps == 0


def test_lock_busy_is_a_clear_error(tmp_path: Path) -> None:
    from tuner.errors import LockBusy
    from tuner.journal.lock import StateLock

    with StateLock(tmp_path / "s"), pytest.raises(LockBusy, match="another wg-tuner"):
        StateLock(tmp_path / "s", wait=0.1).__enter__()


def test_persist_policy_writes_through_after_verification_and_undoes_on_rollback(
    tmp_path: Path,
) -> None:
    from dataclasses import replace

    from tuner.actuators.persist import Persistence

    ex, act, _ = executor(tmp_path)
    ex.persistence = Persistence(tmp_path / "root")
    rmem = Target("sysctl", "net.core.rmem_max")
    act.values[rmem] = "212992"
    persist_policy = replace(POLICY, action=replace(POLICY.action, persist=True))
    p = Plan(
        1.0,
        "n",
        (),
        (
            ProposedChange(
                "c-p", "p", "sysctl", rmem, "212992", "425984", "w", (), 50, ADMIT, persist=True
            ),
        ),
    )
    result = ex.apply(p, [persist_policy], [SNAP, SNAP])
    assert [o.status for o in result.outcomes] == ["verified"]
    conf = tmp_path / "root" / "etc/sysctl.d/90-wg-tuner.conf"
    assert "net.core.rmem_max = 425984" in conf.read_text()
    ex.rollback(everything=True)
    assert act.values[rmem] == "212992"
    assert not conf.exists()


def test_not_revertible_is_recorded_and_held_at_plan_time(tmp_path: Path) -> None:
    from tuner.errors import NotRevertible

    ex, act, _ = executor(tmp_path)

    def refuse(target: Target, desired: str | None) -> bool:
        raise NotRevertible(f"{target}: the kernel rejects writes")

    act.apply = refuse  # type: ignore[method-assign]
    result = ex.apply(plan(1), [POLICY], [SNAP, SNAP])
    assert [o.status for o in result.outcomes] == ["held"]
    ctx = view.context(ex.journal.read().records, 2000.0, {})
    assert "rejects writes" in ctx.blocked[TARGETS[0]]


def test_daemon_history_keeps_peer_detail_only_as_long_as_needed(tmp_path: Path) -> None:
    from dataclasses import replace

    from tuner.engine.daemon import Daemon
    from tuner.model.snapshot import Implementation, Link, Peer, WgInterface

    ex, _, _ = executor(tmp_path)
    peer = Peer("k" * 43 + "=", None, (), 0.0, 0, 0, 0)
    iface = WgInterface(
        "wg0", Implementation.KERNEL, None, 1, 0, Link("wg0", 1, "wireguard", 1420, "UP"), (peer,)
    )
    d = Daemon(None, ex, ex.journal, list, tmp_path, interval=10.0)  # type: ignore[arg-type]
    d.set_policies([POLICY])  # host scope only: detail for 3 intervals
    for t in range(0, 1200, 10):
        d._remember(replace(SNAP, taken_at=float(t), interfaces=(iface,)))
    kept = list(d._history)
    assert kept[-1].taken_at == 1190.0 and kept[0].taken_at >= 1190.0 - 900
    detailed = [s for s in kept if s.interfaces[0].peers]
    assert len(detailed) == 4  # the last 30 s
    assert all(s.interfaces[0].implementation is Implementation.KERNEL for s in kept)


def test_a_host_condition_on_interfaces_held_past_the_detail_window_fires_in_both_modes(
    tmp_path: Path,
) -> None:
    """wg.userspace is derived from interfaces: thinning must not turn it into 0."""
    from dataclasses import replace

    from tuner.core.guards import PlanContext
    from tuner.core.plan import plan as decide
    from tuner.engine.daemon import Daemon
    from tuner.model.snapshot import Implementation, Link, Peer, WgInterface
    from tuner.policy.loader import load_text

    text = """
apiVersion: wg-tuner/v1
kind: Policy
metadata: {name: userspace-long, summary: s, why: w}
spec:
  scope: host
  when: {all: [{metric: wg.userspace, op: "==", value: 1, for: 120s}]}
  action: {kind: alert}
"""
    (policy,), issues = load_text(text, "p.yaml")
    assert not issues
    ex, _, _ = executor(tmp_path)
    peer = Peer("k" * 43 + "=", None, (), 0.0, 0, 0, 0)
    link = Link("wg0", 1, "tun", 1420, "UP")
    iface = WgInterface("wg0", Implementation.USERSPACE, None, 1, 0, link, (peer,))
    d = Daemon(None, ex, ex.journal, list, tmp_path, interval=10.0)  # type: ignore[arg-type]
    d.set_policies([policy])  # detail window: 30 s, far shorter than the 120 s hold
    full = []
    for t in range(0, 200, 10):
        snap = replace(SNAP, taken_at=float(t), monotonic=float(t), interfaces=(iface,))
        full.append(snap)
        d._remember(snap)
    assert [s for s in d._history if not s.interfaces[0].peers], "history was thinned"
    ctx = PlanContext(now=190.0)
    one_shot = decide(full, [policy], ctx).findings
    daemon = decide(list(d._history), [policy], ctx).findings
    assert [f.policy for f in one_shot] == ["userspace-long"]
    assert daemon == one_shot


def test_a_failing_cycle_does_not_end_the_loop(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    from tuner.engine.daemon import Daemon
    from tuner.engine.planning import Planner
    from tuner.errors import ObserveError

    ex, act, _ = executor(tmp_path)
    calls = {"n": 0}

    class Flaky:
        def observe(self, interfaces: tuple[str, ...] = ()) -> Snapshot:
            calls["n"] += 1
            if calls["n"] == 2:
                raise ObserveError("wg0: config socket timed out")
            return SNAP

    planner = Planner(Flaky(), None, {"sysctl": act})  # type: ignore[arg-type]
    d = Daemon(planner, ex, ex.journal, list, tmp_path, interval=0.0, max_cycles=4)
    with capture_logs() as logs:
        assert d.run([POLICY]) == 0
    events = [e["event"] for e in logs]
    assert events.count("cycle.failed") == 1
    assert events.count("cycle.done") == 3
    assert d.state.cycles == 4 and d.state.cycle_errors == 1
    assert "daemon.stopped" in events


def test_a_window_that_passed_while_stalled_is_not_verified(
    tmp_path: Path, figure: FigureFn
) -> None:
    """SIGSTOP past the deadline: the first step after resuming must not verify."""
    clock = [1000.0]
    ex, act, _ = executor(tmp_path, window=10.0, settle=0.0, max_gap=15.0)
    ex.clock = ex.journal.clock = lambda: clock[0]
    ex.start(plan(1), [POLICY], [SNAP, SNAP])
    assert ex.advance([POLICY], SNAP, SNAP).outcomes == []  # watching: in the window
    clock[0] += 60  # stopped for a minute; the 10 s window ended meanwhile
    result = ex.advance([POLICY], SNAP, SNAP)
    (out,) = result.rolled_back
    assert out.status == "reverted" and "stalled 60 s" in out.reason
    assert act.values[TARGETS[0]] == "1"
    ctx = view.context(ex.journal.read().records, clock[0], {"p": 600.0})
    assert "p" not in ctx.cooldown_until and not ctx.failed  # free to try again at once
    # watched properly, the same change verifies
    clock[0] += 1
    ex.start(plan(1), [POLICY], [SNAP, SNAP])
    for _ in range(12):
        clock[0] += 1
        ex.advance([POLICY], SNAP, SNAP)
    assert states(ex)[-1] == ("verified", "c-0")
    figure(
        "Rollback and crash safety",
        "wg-tuner stopped 60 s inside a 10 s verification window -> verified on stale "
        "evidence; after resuming",
        "0; reverted, then re-applied and verified",
    )


def test_one_failed_check_at_the_deadline_is_noise_not_a_verdict(tmp_path: Path) -> None:
    clock = [1000.0]
    ex, act, health = executor(tmp_path, window=5.0, settle=0.0, grace=3.0)
    ex.clock = ex.journal.clock = lambda: clock[0]
    ex.start(plan(1), [POLICY], [SNAP, SNAP])
    for _ in range(4):
        clock[0] += 1
        assert ex.advance([POLICY], SNAP, SNAP).outcomes == []
    health.ok_after = False  # a probe lost right at the deadline
    clock[0] += 1
    assert ex.advance([POLICY], SNAP, SNAP).outcomes == []  # no verdict yet
    health.ok_after = True
    clock[0] += 1
    (out,) = ex.advance([POLICY], SNAP, SNAP).outcomes
    assert out.status == "verified" and act.values[TARGETS[0]] == "2"
    # but a failure that lasts the grace still rolls back, deadline or not
    ex2, act2, health2 = executor(tmp_path / "2", window=2.0, settle=0.0, grace=3.0)
    ex2.clock = ex2.journal.clock = lambda: clock[0]
    ex2.start(plan(1), [POLICY], [SNAP, SNAP])
    health2.ok_after = False
    outcomes = []
    for _ in range(6):
        clock[0] += 1
        outcomes += ex2.advance([POLICY], SNAP, SNAP).rolled_back
    assert [o.status for o in outcomes] == ["reverted"] and act2.values[TARGETS[0]] == "1"


def test_rate_checks_measure_from_the_first_snapshot_after_the_settle(tmp_path: Path) -> None:
    """The plan's snapshot is older than the change by the apply's own time: growth in
    between (drops the change had not yet had a chance to stop) must not count against
    it. The first step after the settle still measures from the plan's snapshot; every
    later one from that step's snapshot."""
    ex, _, health = executor(tmp_path, settle=0, window=5, grace=30)
    seen: list[Any] = []
    real = health.run

    def run(check: HealthCheck, target: Target, desired: str | None, snapshot: Any,
            before: Any, *, baseline: CheckResult | None) -> CheckResult:  # fmt: skip
        seen.append(before)
        return real(check, target, desired, snapshot, before, baseline=baseline)

    health.run = run  # type: ignore[method-assign]
    planned = Snapshot(0.5, 0.5, "n", (), (), HostCounters(), Knobs())
    ex.start(plan(1), [POLICY], [planned])
    seen.clear()
    steps = [Snapshot(float(t), float(t), "n", (), (), HostCounters(), Knobs()) for t in (2, 3, 4)]
    per_step = []
    for snap in steps:
        ex.advance([POLICY], snap, planned)
        per_step.append({id(b) for b in seen})
        seen.clear()
    assert per_step == [{id(planned)}, {id(steps[0])}, {id(steps[0])}]


def test_a_daemon_that_cannot_observe_reverts_what_passed_its_deadline_and_starves_the_watchdog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verification runs only after an observation: a cycle that cannot observe must not
    leave an applied change standing past its revert deadline, nor feed the watchdog."""
    import socket

    from tuner.engine.daemon import Daemon
    from tuner.engine.planning import Planner
    from tuner.errors import ObserveError

    clock = [1000.0]
    ex, act, _ = executor(tmp_path, window=10.0, settle=0.0)
    ex.clock = ex.journal.clock = lambda: clock[0]
    ex.start(plan(1), [POLICY], [SNAP, SNAP])
    assert act.values[TARGETS[0]] == "2"
    ex.recover = list  # type: ignore[method-assign]  # as if this daemon applied it

    class Blind:
        def observe(self, interfaces: tuple[str, ...] = ()) -> Snapshot:
            clock[0] += 6  # each failing cycle takes the clock past more of the window
            raise ObserveError("netlink: timed out")

    beats: list[float] = []
    planner = Planner(Blind(), None, {"sysctl": act})  # type: ignore[arg-type]
    d = Daemon(
        planner,
        ex,
        ex.journal,
        list,
        tmp_path,
        interval=0.0,
        enforce=True,
        max_cycles=3,
        clock=lambda: clock[0],
        on_progress=lambda: beats.append(clock[0]),
    )
    notify = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(notify))
        server.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", str(notify))
        d.run([POLICY])
        sent = []
        while True:
            try:
                sent.append(server.recv(200))
            except BlockingIOError:
                break
    assert act.values[TARGETS[0]] == "1", "reverted from the journal alone"
    last = ex.journal.read().records[-1]
    assert (last.state, last.code) == ("reverted", Cause.DEADLINE)
    assert b"WATCHDOG=1" not in sent and beats == []
