"""One decision path: ``plan`` decides exactly what ``apply`` (and the daemon) decide.

Each case seeds a journal and a state directory with one kind of history, then runs the
real ``run_plan``, ``run_apply`` and ``Daemon.cycle`` on copies of it, against the same
in-memory host, and compares every proposed change and its verdict (guard, reason,
until). ``plan`` must also leave the state directory byte for byte as it was.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.schemas import validate
from tuner.actuators.base import HealthCheck, Target
from tuner.core.plan import Plan
from tuner.engine.apply import run_apply, run_plan
from tuner.engine.daemon import Daemon
from tuner.engine.executor import Executor, VerifySettings
from tuner.engine.health import CheckResult
from tuner.engine.planning import FREEZE_FILE, Planner
from tuner.exporters.report import plan_data, render_text
from tuner.journal.journal import (
    APPLIED,
    DRIFTED,
    INTENDED,
    NOT_REVERTIBLE,
    REVERT_FAILED,
    REVERTED,
    VERIFIED,
    Journal,
)
from tuner.journal.lock import StateLock
from tuner.journal.view import VERIFICATION_FAILED
from tuner.model.policy import Policy
from tuner.model.snapshot import Conntrack, HostCounters, Knobs, Snapshot
from tuner.policy.loader import load_text

NOW = 1_900_000_000 // 86400 * 86400 + 12 * 3600.0  # 12:00 UTC
MAX = "net.netfilter.nf_conntrack_max"
UDP = "net.netfilter.nf_conntrack_udp_timeout"
A = Target("sysctl", MAX)
B = Target("sysctl", UDP)

POLICY = """
apiVersion: wg-tuner/v1
kind: Policy
metadata: {{name: {name}, summary: s, why: w}}
spec:
  scope: host
  priority: {priority}
  when: {{all: [{{metric: conntrack.fill, op: ">", value: 0.9}}]}}
  action: {action}
  guards: {guards}
  verify: {{settle: 0s, window: 1s}}
"""


def policies(windows: str = "") -> list[Policy]:
    guards = "{windows: [" + windows + "]}" if windows else "{}"
    text = POLICY.format(
        name="grow-table",
        priority=60,
        action="{kind: sysctl, key: " + MAX + ", factor: 2, max: 4194304}",
        guards=guards,
    )
    text += "---" + POLICY.format(
        name="short-udp",
        priority=50,
        action="{kind: sysctl, key: " + UDP + ", set: 60}",
        guards="{}",
    )
    # Never fires (fill cannot pass 2), but its standing change holds A (sticky).
    text += "---" + POLICY.format(
        name="shrink-table",
        priority=40,
        action="{kind: sysctl, key: " + MAX + ", set: 1000, sticky: true}",
        guards="{}",
    ).replace("value: 0.9", "value: 2")
    found, issues = load_text(text, "agreement.yaml")
    assert not issues, issues
    return found


class MemSysctls:
    kind: ClassVar[str] = "sysctl"

    def __init__(self, values: dict[Target, str]) -> None:
        self.values = values

    def read(self, target: Target) -> str | None:
        return self.values.get(target)

    def apply(self, target: Target, desired: str | None) -> bool:
        changed = self.values.get(target) != desired
        self.values[target] = str(desired)
        return changed

    def revert(self, target: Target, prior: str | None) -> None:
        self.values[target] = str(prior)

    def check(self, target: Target) -> str | None:
        return None

    def same(self, a: str | None, b: str | None) -> bool:
        return a == b

    def health_checks(self, target: Target, desired: str | None) -> tuple[HealthCheck, ...]:
        return (HealthCheck("sysctl_is", {}),)


class PassingHealth:
    def run(self, check: HealthCheck, *args: Any, baseline: CheckResult | None) -> CheckResult:
        return CheckResult(check.name, True, "fake")


class Host:
    """The observer: a full conntrack table, sysctls read from the actuator's values."""

    def __init__(self, act: MemSysctls) -> None:
        self.act = act

    def observe(self, interfaces: tuple[str, ...] = ()) -> Snapshot:
        sysctls = {t.name: v for t, v in self.act.values.items()}
        return Snapshot(
            NOW,
            NOW,
            "net:[agree]",
            (),
            (),
            HostCounters(conntrack=Conntrack(950, 1000)),
            Knobs(sysctls=sysctls),
        )


def stack(state: Path, values: dict[Target, str]) -> tuple[Planner, Executor, Journal]:
    act = MemSysctls(dict(values))
    host = Host(act)
    ticks = iter(range(10**6))
    journal = Journal(state, clock=lambda: NOW)
    executor = Executor(
        journal,
        {"sysctl": act},
        host,  # type: ignore[arg-type]
        PassingHealth(),  # type: ignore[arg-type]
        VerifySettings(grace=0, interval=0),
        clock=lambda: NOW + next(ticks) * 0.01,
        sleep=lambda s: None,
    )
    planner = Planner(host, None, {"sysctl": act}, clock=lambda: NOW)  # type: ignore[arg-type]
    return planner, executor, journal


@dataclass(frozen=True)
class Case:
    name: str
    seed: Callable[[Journal, Path], None]
    values: dict[Target, str]
    expect: dict[Target, str]
    """Per target: the decision (admit/noop) or the guard that holds it."""
    windows: str = ""
    live: bool = False
    """Another wg-tuner holds the state lock (a daemon verifying): apply cannot run,
    the daemon's cycle is what plan must agree with."""


def at(journal: Journal, ts: float, state: str, change: str, target: Target, **kw: Any) -> None:
    journal.clock = lambda: ts
    kw.setdefault("policy", "grow-table" if target == A else "short-udp")
    journal.append(state, change, target=target, **kw)


def nothing(j: Journal, d: Path) -> None:
    return None


def verified(j: Journal, d: Path) -> None:
    at(j, NOW - 7200, INTENDED, "c1.x", A, prior="1000", desired="2000", batch="x")
    at(j, NOW - 7199, APPLIED, "c1.x", A, prior="1000", desired="2000", batch="x")
    at(j, NOW - 7100, VERIFIED, "c1.x", A, prior="1000", desired="2000", batch="x")


def rolled_back(age: float, failed: str = "2000") -> Callable[[Journal, Path], None]:
    def seed(j: Journal, d: Path) -> None:
        kw = {"prior": "1000", "desired": failed, "batch": "x"}
        at(j, NOW - age - 60, INTENDED, "c1.x", A, **kw)
        at(j, NOW - age - 59, APPLIED, "c1.x", A, **kw)
        at(j, NOW - age, REVERTED, "c1.x", A, reason=f"{VERIFICATION_FAILED}: sysctl_is", **kw)

    return seed


def pending(j: Journal, d: Path) -> None:
    at(j, NOW - 5, INTENDED, "c1.x", A, prior="1000", desired="2000", batch="x")
    at(
        j,
        NOW - 4,
        APPLIED,
        "c1.x",
        A,
        prior="1000",
        desired="2000",
        batch="x",
        verify_after=NOW + 100,
        deadline=NOW + 200,
    )


def drifted(j: Journal, d: Path) -> None:
    verified(j, d)  # it set 2000; the host now reads 3000


def contested(j: Journal, d: Path) -> None:
    verified(j, d)
    at(j, NOW - 3000, DRIFTED, "c1.x", A, prior="1000", desired="2000", extra={"seen": "3000"})
    at(j, NOW - 2900, INTENDED, "c2.y", A, prior="3000", desired="2000", batch="y")
    at(j, NOW - 2899, APPLIED, "c2.y", A, prior="3000", desired="2000", batch="y")
    at(j, NOW - 2800, VERIFIED, "c2.y", A, prior="3000", desired="2000", batch="y")
    at(j, NOW - 600, DRIFTED, "c2.y", A, prior="3000", desired="2000", extra={"seen": "3000"})


def freeze_file(j: Journal, d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / FREEZE_FILE).write_text("change freeze for the holidays\n")


def revert_failed(j: Journal, d: Path) -> None:
    at(j, NOW - 100, REVERT_FAILED, "c1.x", A, prior="1000", desired="2000", reason="EIO")


def rate(j: Journal, d: Path) -> None:
    value = 1000
    for n in range(4):
        t = NOW - 3000 + n * 600
        kw = {"prior": str(value), "desired": str(value * 2), "batch": f"b{n}"}
        at(j, t, INTENDED, f"r{n}.b", A, **kw)
        at(j, t + 1, APPLIED, f"r{n}.b", A, **kw)
        at(j, t + 60, VERIFIED, f"r{n}.b", A, **kw)
        value *= 2


def partial_batch(j: Journal, d: Path) -> None:
    a = {"prior": "1000", "desired": "2000", "batch": "x"}
    b = {"prior": "30", "desired": "60", "batch": "x"}
    at(j, NOW - 900, INTENDED, "ca.x", A, **a)
    at(j, NOW - 899, APPLIED, "ca.x", A, **a)
    at(j, NOW - 898, INTENDED, "cb.x", B, **b)
    at(j, NOW - 897, APPLIED, "cb.x", B, **b)
    at(j, NOW - 800, REVERTED, "cb.x", B, reason=f"{VERIFICATION_FAILED}: sysctl_is", **b)
    at(j, NOW - 799, REVERTED, "ca.x", A, reason="rolled back with its batch", **a)


def not_revertible(j: Journal, d: Path) -> None:
    at(j, NOW - 100, NOT_REVERTIBLE, "cb.x", B, prior="30", desired="60", reason="EPERM")


def sticky(j: Journal, d: Path) -> None:
    kw = {"prior": "2000", "desired": "1000", "batch": "s", "policy": "shrink-table"}
    at(j, NOW - 900, INTENDED, "cs.s", A, **kw)
    at(j, NOW - 899, APPLIED, "cs.s", A, **kw)
    at(j, NOW - 800, VERIFIED, "cs.s", A, **kw)


def torn(j: Journal, d: Path) -> None:
    verified(j, d)
    with open(j.path, "ab") as fh:
        fh.write(b'{"seq": 99, "state": "appl')


BASE = {A: "1000", B: "30"}
CASES = [
    Case("empty", nothing, BASE, {A: "admit", B: "admit"}),
    Case("verified, then grown again", verified, {A: "2000", B: "30"}, {A: "admit", B: "admit"}),
    Case("rolled back, in cooldown", rolled_back(60, "1500"), BASE, {A: "cooldown", B: "admit"}),
    Case("rolled-back value", rolled_back(7200), BASE, {A: "failed-before", B: "admit"}),
    Case(
        "pending, verifier alive",
        pending,
        {A: "2000", B: "30"},
        {A: "blast-radius", B: "admit"},
        live=True,
    ),
    Case("pending, verifier died", pending, {A: "2000", B: "30"}, {A: "admit", B: "admit"}),
    Case("drifted knob", drifted, {A: "3000", B: "30"}, {A: "drift", B: "admit"}),
    Case("contested knob", contested, {A: "3000", B: "30"}, {A: "contested", B: "admit"}),
    Case("frozen by file", freeze_file, BASE, {A: "freeze", B: "freeze"}),
    Case("frozen by a failed revert", revert_failed, BASE, {A: "freeze", B: "freeze"}),
    Case("rate exhausted", rate, {A: "16000", B: "30"}, {A: "rate", B: "admit"}),
    Case("maintenance window", nothing, BASE, {A: "maintenance", B: "admit"}, "02:00-04:00"),
    Case("partial batch", partial_batch, BASE, {A: "admit", B: "failed-before"}),
    Case("not revertible", not_revertible, BASE, {A: "admit", B: "revertible"}),
    Case("torn journal", torn, {A: "2000", B: "30"}, {A: "admit", B: "admit"}),
    Case("a sticky change stands", sticky, BASE, {A: "sticky", B: "admit"}),
]


def verdicts(plan: Plan, state: Path) -> list[tuple[Any, ...]]:
    """Every change and its verdict; the state directory's own path made neutral."""
    return [
        (
            c.id,
            c.target,
            c.before,
            c.after,
            c.verdict.decision,
            c.verdict.guard,
            c.verdict.reason.replace(str(state), "STATE"),
            c.verdict.until,
        )
        for c in plan.changes
    ]


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def summary(plan: Plan) -> dict[Target, str]:
    out = {}
    for c in plan.changes:
        v = c.verdict
        out[c.target] = v.guard if v.decision.value == "hold" else v.decision.value
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_plan_decides_what_apply_and_the_daemon_decide(case: Case, tmp_path: Path) -> None:
    seeded = tmp_path / "seed"
    journal = Journal(seeded)
    case.seed(journal, seeded)
    seeded.mkdir(exist_ok=True)
    pols = policies(case.windows)

    def copy(name: str) -> Path:
        dest = tmp_path / name
        shutil.copytree(seeded, dest)
        return dest

    # plan, with the lock held by "another wg-tuner" in the live case
    planned_dir = copy("plan")
    holder = StateLock(planned_dir, wait=0) if case.live else None
    if holder:
        holder.__enter__()
    try:
        before = tree(planned_dir)
        planner, executor, journal = stack(planned_dir, case.values)
        dry = run_plan(
            planner=planner,
            executor=executor,
            journal=journal,
            policies=pols,
            state_dir=planned_dir,
            sample=0,
        )
        assert tree(planned_dir) == before, "plan wrote to the state directory"
    finally:
        if holder:
            holder.__exit__(None, None, None)
    assert summary(dry.plan) == case.expect
    if case.windows:
        held = next(c for c in dry.plan.changes if c.target == A)
        assert held.verdict.until == NOW + 14 * 3600, "maintenance: holds until 02:00 UTC"
        assert "(until " in render_text(dry.plan, dry.notes, dry.preview)

    # the daemon's cycle (it recovers at start unless it is the live verifier)
    daemon_dir = copy("daemon")
    planner, executor, journal = stack(daemon_dir, case.values)
    daemon = Daemon(
        planner, executor, journal, lambda: pols, daemon_dir, enforce=True, clock=lambda: NOW
    )
    if not case.live:
        executor.recover()
    assert verdicts(daemon.cycle(pols), daemon_dir) == verdicts(dry.plan, planned_dir)

    if case.live:
        return
    apply_dir = copy("apply")
    planner, executor, journal = stack(apply_dir, case.values)
    report = run_apply(
        planner=planner,
        executor=executor,
        journal=journal,
        policies=pols,
        state_dir=apply_dir,
        sample=0,
        rounds=1,
    )
    assert verdicts(report.plans[0], apply_dir) == verdicts(dry.plan, planned_dir)
    validate(report.data())
    validate(plan_data(dry.plan, dry.notes, dry.preview))
    assert [r.change for r in dry.preview.recover] == [o.id for o in report.recovered]
    assert [d.state.change for d in dry.preview.drift] == [o.id for o in report.drifted]


def test_plan_reports_what_recovery_would_revert(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    pending(journal, tmp_path)
    planner, executor, journal = stack(tmp_path, {A: "2000", B: "30"})
    dry = run_plan(
        planner=planner,
        executor=executor,
        journal=journal,
        policies=policies(),
        state_dir=tmp_path,
        sample=0,
    )
    assert [r.change for r in dry.preview.recover] == ["c1.x"]
    assert dry.changed
    grow = next(c for c in dry.plan.changes if c.target == A)
    assert (grow.before, grow.after) == ("1000", "2000"), "planned from the value put back"
    assert any("would first revert" in n for n in dry.notes)


def test_held_change_shows_its_guard_and_until_in_every_output(tmp_path: Path) -> None:
    from tuner.exporters.report import plan_data, render_text

    journal = Journal(tmp_path)
    rolled_back(60, "1500")(journal, tmp_path)
    planner, executor, journal = stack(tmp_path, BASE)
    dry = run_plan(
        planner=planner,
        executor=executor,
        journal=journal,
        policies=policies(),
        state_dir=tmp_path,
        sample=0,
    )
    data = plan_data(dry.plan, dry.notes, dry.preview)
    held = next(c for c in data["changes"] if c["policy"] == "grow-table")
    assert held["verdict"]["guard"] == "cooldown"
    assert held["verdict"]["until"] == NOW - 60 + 600
    text = render_text(dry.plan, dry.notes, dry.preview)
    assert "held by cooldown" in text and "until" in text


def test_cases_cover_the_histories_the_issue_lists() -> None:
    names = " ".join(c.name for c in CASES)
    for word in (
        "empty",
        "verified",
        "cooldown",
        "rolled-back value",
        "pending",
        "drifted",
        "contested",
        "frozen",
        "rate",
        "maintenance",
        "partial batch",
    ):
        assert word in names
    assert len(CASES) >= 10
