"""Compaction keeps exactly what guards and recovery need, atomically, and stays small."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tuner.journal import view
from tuner.journal.compact import keep
from tuner.journal.journal import (
    APPLIED,
    DRIFTED,
    FREEZE_CLEARED,
    INTENDED,
    NOT_REVERTIBLE,
    OPEN_STATES,
    REVERT_FAILED,
    REVERTED,
    VERIFIED,
    Cause,
    Journal,
    Record,
    fold,
)
from tuner.model.target import Target

TARGETS = [Target("sysctl", f"net.core.k{i}") for i in range(3)]
OUTCOMES = ("verified", "failed", "batch", "recovered", "open", "refused", "revert_failed")
COOLDOWNS = {"p0": 600.0, "p1": 0.0, "p2": 7200.0}


def lifecycle(n: int, t: float, target: Target, outcome: str, drift: bool) -> list[Record]:
    change, policy = f"c{n}", f"p{n % 3}"
    kw = {"policy": policy, "target": target, "prior": str(n), "desired": str(n + 1)}
    out = [Record(0, t, INTENDED, change, **kw)]  # type: ignore[arg-type]
    if outcome == "refused":
        return [*out, Record(0, t + 1, NOT_REVERTIBLE, change, reason="EPERM", **kw)]  # type: ignore[arg-type]
    out.append(Record(0, t + 1, APPLIED, change, **kw))  # type: ignore[arg-type]
    end = {
        "verified": (VERIFIED, Cause.NONE),
        "failed": (REVERTED, Cause.VERIFICATION_FAILED),
        "batch": (REVERTED, Cause.WITH_BATCH),
        "recovered": (REVERTED, Cause.RECOVERED),
        "revert_failed": (REVERT_FAILED, Cause.REVERT_ERROR),
    }.get(outcome)
    if end is not None:
        out.append(Record(0, t + 30, end[0], change, code=end[1], **kw))  # type: ignore[arg-type]
    if outcome == "verified" and drift:
        out.append(Record(0, t + 50, DRIFTED, change, extra={"seen": "x"}, **kw))  # type: ignore[arg-type]
    return out


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Record], float]:
    steps = draw(
        st.lists(
            st.tuples(
                st.floats(60, 20000),  # gap before this change
                st.sampled_from(TARGETS),
                st.sampled_from(OUTCOMES),
                st.booleans(),
                st.booleans(),  # an operator lifts a freeze after it
            ),
            min_size=1,
            max_size=40,
        )
    )
    t, records = 0.0, []
    for n, (gap, target, drawn, drift, clear) in enumerate(steps):
        t += gap
        # at most the last change can still be open
        outcome = "verified" if drawn == "open" and n != len(steps) - 1 else drawn
        records += lifecycle(n, t, target, outcome, drift)
        if clear:
            records.append(Record(0, t + 60, FREEZE_CLEARED, "freeze"))
    records.sort(key=lambda r: r.ts)
    numbered = [Record(i, *_rest(r)) for i, r in enumerate(records, 1)]
    return numbered, t + draw(st.floats(0, 4000))


def _rest(r: Record) -> tuple[object, ...]:
    return (
        r.ts,
        r.state,
        r.change,
        r.policy,
        r.target,
        r.prior,
        r.desired,
        r.verify_after,
        r.deadline,
        r.reason,
        r.batch,
        r.extra,
        r.code,
    )


def decisions(records: list[Record], now: float) -> tuple[object, ...]:
    """What the guards and recovery act on at ``now`` (expired history left out: the
    rate guard counts the last hour, cooldowns and backoffs only matter until they end)."""
    ctx = view.context(records, now, COOLDOWNS)
    ctx = replace(
        ctx,
        applies={p: tuple(t for t in ts if now - t < 3600) for p, ts in ctx.applies.items()},
        cooldown_until={p: u for p, u in ctx.cooldown_until.items() if u > now},
        contested={t: u for t, u in ctx.contested.items() if u > now},
    )
    ctx = replace(ctx, applies={p: ts for p, ts in ctx.applies.items() if ts})
    changes = fold(records)
    first: dict[Target, str | None] = {}
    for c in sorted(changes.values(), key=lambda c: c.first_ts):
        first.setdefault(c.target, c.prior)
    latest = {
        c.target: (c.state, c.desired) for c in sorted(changes.values(), key=lambda c: c.last_ts)
    }
    open_ = sorted(c.change for c in changes.values() if c.state in OPEN_STATES)
    return (ctx, first, latest, open_)


@settings(max_examples=300, deadline=None)
@given(histories())
def test_a_compacted_journal_decides_like_the_whole_one(
    history: tuple[list[Record], float],
) -> None:
    records, now = history
    kept = keep(records, now)
    for later in (now, now + 10, now + 3000, now + 90000):
        assert decisions(kept, later) == decisions(records, later)
    assert keep(kept, now) == kept  # compacting twice changes nothing


def test_weeks_of_one_change_a_minute_stay_small(tmp_path: Path) -> None:
    clock = [0.0]
    journal = Journal(tmp_path, clock=lambda: clock[0], fsync=lambda fd: None)
    compacted, peak = [], 0
    for n in range(20_000):  # two weeks of one change a minute over three targets
        clock[0] = n * 60.0
        kw = {"policy": "p", "target": TARGETS[n % 3], "prior": str(n), "desired": str(n + 1)}
        for state in (INTENDED, APPLIED, VERIFIED):
            journal.append(state, f"c{n}", **kw)
        if journal.compact_if_due():
            compacted.append(journal.path.stat().st_size)
        peak = max(peak, journal.path.stat().st_size)
    assert len(compacted) > 20
    assert max(compacted[2:]) < 1.1 * min(compacted[2:]), "the kept part does not grow with age"
    assert peak < compacted[-1] + 2 * 1024 * 1024  # at most COMPACT_AFTER records beyond it


def test_repeated_reads_are_served_from_memory(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    kw = {"policy": "p", "target": TARGETS[0], "prior": "1", "desired": "2"}
    journal.append(INTENDED, "c1", **kw)
    journal.read()
    reads = journal.file_reads
    for _ in range(5):
        journal.read()
    journal.append(APPLIED, "c1", **kw)
    assert [r.state for r in journal.read().records] == [INTENDED, APPLIED]
    assert journal.file_reads == reads, "an unchanged journal (and our own appends) cost no read"
    other = Journal(tmp_path)  # another process appends: the next read sees it
    other.append(VERIFIED, "c1", **kw)
    assert [r.state for r in journal.read().records][-1] == VERIFIED
    assert journal.file_reads == reads + 1


def test_kill_9_while_compacting_leaves_the_whole_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path, clock=lambda: 1000.0)
    for n in range(30):
        kw = {"policy": "p", "target": TARGETS[n % 3], "prior": str(n), "desired": str(n + 1)}
        for state in (INTENDED, APPLIED, VERIFIED):
            journal.append(state, f"c{n}", **kw)
    before = journal.path.read_bytes()
    expected = decisions(list(journal.read().records), 90000.0)
    script = (
        "from pathlib import Path; from tuner.journal.journal import Journal; "
        f"Journal(Path({str(tmp_path)!r})).compact()"
    )
    env = dict(os.environ, WG_TUNER_FAULT_KILL_AFTER="compacting")
    proc = subprocess.run([sys.executable, "-c", script], env=env, check=False)
    assert proc.returncode == -9
    assert journal.path.read_bytes() == before  # the old journal, whole
    kept = Journal(tmp_path, clock=lambda: 90000.0).compact()
    after = Journal(tmp_path).read()
    assert kept < 90 and after.skipped == ()
    assert decisions(list(after.records), 90000.0) == expected
