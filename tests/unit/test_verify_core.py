"""The verification state machine (pure): no I/O, no clock but the one passed in."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuner.core.verify import Checked, Member, Step, judge, stalled
from tuner.journal import view
from tuner.journal.journal import REVERTED, Cause, Journal
from tuner.model.target import Target

pytestmark = pytest.mark.timing

A = Member("a", verify_after=10.0, deadline=30.0)
B = Member("b", verify_after=10.0, deadline=40.0)


def ok(change: str, name: str = "x", gate: bool = True) -> Checked:
    return Checked(change, name, gate, True)


def bad(change: str, name: str = "x", gate: bool = True) -> Checked:
    return Checked(change, name, gate, False)


def test_waits_before_the_deadline_and_keeps_after_it() -> None:
    assert judge([A], [ok("a")], 20.0, 5.0, {}).step is Step.WAIT
    assert judge([A], [ok("a")], 30.0, 5.0, {}).step is Step.KEEP


def test_keeps_only_when_every_member_was_checked_after_its_deadline() -> None:
    assert judge([A, B], [ok("a"), ok("b")], 35.0, 5.0, {}).step is Step.WAIT
    assert judge([A, B], [ok("a")], 45.0, 5.0, {}).step is Step.WAIT  # b not checked
    assert judge([A, B], [ok("a"), ok("b")], 45.0, 5.0, {}).step is Step.KEEP


def test_a_gate_failing_for_its_grace_rolls_back_and_blames_its_member() -> None:
    first = judge([A, B], [bad("a"), ok("b")], 12.0, 5.0, {})
    assert first.step is Step.WAIT and first.failing_since == {"a/x": 12.0}
    later = judge([A, B], [bad("a"), ok("b")], 17.0, 5.0, first.failing_since)
    assert later.step is Step.ROLL_BACK
    assert later.culprits == {"a"} and later.failing == ("x",)


def test_a_pass_resets_the_grace() -> None:
    first = judge([A], [bad("a")], 12.0, 5.0, {})
    passed = judge([A], [ok("a")], 14.0, 5.0, first.failing_since)
    assert dict(passed.failing_since) == {}
    again = judge([A], [bad("a")], 16.0, 5.0, passed.failing_since)
    assert again.step is Step.WAIT  # grace counts from 16, not 12


def test_a_check_that_just_failed_at_the_deadline_holds_the_verdict() -> None:
    assert judge([A], [bad("a")], 30.0, 5.0, {}).step is Step.WAIT


def test_a_non_gate_failure_never_rolls_back() -> None:
    verdict = judge([A], [bad("a", gate=False)], 100.0, 0.0, {})
    assert verdict.step is Step.KEEP


def test_a_pause_inside_a_window_is_a_stall() -> None:
    assert stalled([A], now=50.0, gap=30.0, max_gap=15.0)  # window ended at 30, in the gap
    assert not stalled([A], now=50.0, gap=10.0, max_gap=15.0)
    assert not stalled([A], now=100.0, gap=20.0, max_gap=15.0)  # gap began after the window


def test_guards_read_the_cause_code_never_the_words(tmp_path: Path) -> None:
    t = Target("sysctl", "net.core.rmem_max")
    journal = Journal(tmp_path, clock=lambda: 1000.0)
    kw = {"policy": "p", "target": t, "prior": "1", "desired": "2"}
    journal.append(
        REVERTED, "c1", reason="the words do not matter", code=Cause.VERIFICATION_FAILED, **kw
    )
    journal.append(
        REVERTED,
        "c2",
        reason="verification failed: but not by code",
        code=Cause.ROLLBACK,
        **kw | {"policy": "q", "desired": "3"},
    )
    ctx = view.context(journal.read().records, 1100.0, {"p": 600.0, "q": 600.0})
    assert ctx.cooldown_until == {"p": 1600.0}
    assert ctx.failed[t] == {"2"}


def test_a_journal_written_before_codes_still_reads_its_causes(tmp_path: Path) -> None:
    import json

    from tuner.journal.journal import _checksum

    body = {
        "seq": 1,
        "ts": 5.0,
        "state": "reverted",
        "change": "c1",
        "policy": "p",
        "target": {"kind": "sysctl", "name": "net.core.rmem_max", "peer": ""},
        "prior": "1",
        "desired": "2",
        "verify_after": None,
        "deadline": None,
        "reason": "verification failed: sysctl_is",
        "batch": "",
        "extra": {},
    }
    body["sum"] = _checksum(body)
    (tmp_path / "journal.jsonl").write_text(json.dumps(body) + "\n")
    (record,) = Journal(tmp_path).read().records
    assert record.code is Cause.VERIFICATION_FAILED


def test_an_unknown_state_is_a_skipped_line_not_a_record(tmp_path: Path) -> None:
    import json

    from tuner.journal.journal import _checksum

    body = {"seq": 1, "ts": 5.0, "state": "half-applied", "change": "c1"}
    body["sum"] = _checksum(body)
    (tmp_path / "journal.jsonl").write_text(json.dumps(body) + "\n")
    read = Journal(tmp_path).read()
    assert read.records == () and read.skipped == (1,)
