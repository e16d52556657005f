"""Commit-confirmed that survives the controller (real wireguard-go, real netlink).

A bad change (the tunnel cut right after it) is reverted even when the process that made
it gets SIGHUP, kill -9 or a closed stdout, with no wg-tuner command started afterwards;
a good change is kept once verified; the guard and a restarted apply never revert twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import WG_TUNER
from tests.lab.test_lab_apply import FAST, apply, blackhole, journal_states, mtu
from tests.reliability import FigureFn
from tuner.lab.lab import Lab

pytestmark = pytest.mark.timing

__all__ = ["blackhole"]  # the fixture, shared with test_lab_apply

WINDOW, GRACE = "6", "2"


def start(lab: Lab, state: Path, **popen: Any) -> subprocess.Popen[str]:
    """`apply` in a session of its own (as over SSH), with a short window."""
    argv = ["ip", "netns", "exec", lab.topo.a.netns, WG_TUNER, "apply", "--format", "json"]
    argv += ["--state-dir", str(state), *FAST[:2], "--verify-window", WINDOW, "--grace", GRACE]
    argv += FAST[6:]
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(argv, text=True, start_new_session=True, **popen)


def records(state: Path) -> list[dict[str, Any]]:
    path = state / "journal.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x] if path.exists() else []


def wait_for(what: str, ok: Callable[[], bool], timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return time.time()


def applied_record(state: Path, proc: subprocess.Popen[str]) -> dict[str, Any]:
    def seen() -> bool:
        assert proc.poll() is None or "applied" in journal_states(state), "apply ended early"
        return "applied" in journal_states(state)

    wait_for("the change to be applied", seen, 40)
    (rec,) = [r for r in records(state) if r["state"] == "applied"]
    assert rec["extra"]["guard"]["how"] == "process"  # no systemd as PID 1 here
    return rec


def revert_deadline(rec: dict[str, Any]) -> float:
    """End of the window + grace: what the issue calls the deadline."""
    return float(rec["deadline"]) + float(GRACE)


def guard_gone(rec: dict[str, Any]) -> bool:
    return not Path(f"/proc/{rec['extra']['guard']['pid']}").exists()


def finish(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


def test_sighup_to_the_session_does_not_stop_verification(blackhole: Lab, tmp_path: Path) -> None:
    lab = blackhole
    proc = start(lab, tmp_path)
    try:
        applied_record(tmp_path, proc)
        lab.fault("down", True)  # the new MTU "cut the session": verification fails
        os.killpg(proc.pid, signal.SIGHUP)  # what a dropped SSH session sends
        out, err = proc.communicate(timeout=60)
    finally:
        lab.fault("down", False)
        finish(proc)
    assert proc.returncode == 3, err[-2000:]
    assert '"apply.hangup"' in err
    assert json.loads(out)["rolled_back"][0]["code"] == "verification_failed"
    assert mtu(lab) == 1420


def test_kill_9_the_guard_reverts_a_bad_change_without_a_rerun(
    blackhole: Lab, tmp_path: Path, figure: FigureFn
) -> None:
    lab = blackhole
    proc = start(lab, tmp_path)
    try:
        rec = applied_record(tmp_path, proc)
        lab.fault("down", True)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        reverted_at = wait_for("the guard's revert", lambda: mtu(lab) == 1420, 60)
    finally:
        lab.fault("down", False)
        finish(proc)
    late = reverted_at - revert_deadline(rec)
    figure(
        "Rollback and crash safety",
        "apply killed (-9) during the window of a bad change -> seconds from its deadline "
        "(window + grace) to the guard's revert, no wg-tuner started",
        round(late, 1),
        "s",
    )
    assert -1.0 < late < 5.0, late
    last = records(tmp_path)[-1]
    assert (last["state"], last["code"]) == ("reverted", "deadline")
    wait_for("the guard to end", lambda: guard_gone(rec), 20)


def test_a_closed_stdout_and_stderr_do_not_stop_the_revert(blackhole: Lab, tmp_path: Path) -> None:
    lab = blackhole
    proc = start(lab, tmp_path)
    try:
        applied_record(tmp_path, proc)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader went away: every write now gets EPIPE
        proc.stderr.close()
        lab.fault("down", True)
        proc.wait(timeout=60)
    finally:
        lab.fault("down", False)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3  # rolled back, reported by its exit code alone
    assert journal_states(tmp_path)[-1] == "reverted"
    assert records(tmp_path)[-1]["code"] == "verification_failed"
    assert mtu(lab) == 1420


def test_sigterm_reverts_what_is_unverified_before_exiting(blackhole: Lab, tmp_path: Path) -> None:
    lab = blackhole
    proc = start(lab, tmp_path)
    try:
        rec = applied_record(tmp_path, proc)
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        finish(proc)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    last = records(tmp_path)[-1]
    assert (last["state"], last["code"]) == ("reverted", "interrupted")
    assert mtu(lab) == 1420
    wait_for("the cancelled guard to end", lambda: guard_gone(rec), 10)


def test_a_good_change_verified_before_the_apply_died_is_kept(
    blackhole: Lab, tmp_path: Path
) -> None:
    lab = blackhole
    proc = start(lab, tmp_path)
    try:
        rec = applied_record(tmp_path, proc)
        wait_for("verification", lambda: "verified" in journal_states(tmp_path), 40)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        finish(proc)
    wait_for("the cancelled guard to end", lambda: guard_gone(rec), 10)
    wait_for("its deadline to pass", lambda: time.time() > rec["extra"]["guard"]["at"] + 1, 30)
    assert mtu(lab) == 1340
    assert journal_states(tmp_path)[-1] == "verified"


def test_a_good_change_whose_apply_died_is_reverted_then_replanned(
    blackhole: Lab, tmp_path: Path
) -> None:
    lab = blackhole
    proc = start(lab, tmp_path)
    try:
        applied_record(tmp_path, proc)
        os.killpg(proc.pid, signal.SIGKILL)  # before its verdict: nothing proved it good
        proc.communicate(timeout=30)
    finally:
        finish(proc)
    wait_for("the guard's revert", lambda: mtu(lab) == 1420, 60)
    assert records(tmp_path)[-1]["code"] == "deadline"
    again = apply(lab, tmp_path)
    assert again.returncode == 0, again.stderr
    assert mtu(lab) == 1340 and journal_states(tmp_path)[-1] == "verified"


def test_the_guard_and_a_restarted_apply_revert_once(blackhole: Lab, tmp_path: Path) -> None:
    lab = blackhole
    proc = start(lab, tmp_path)
    try:
        rec = applied_record(tmp_path, proc)
        lab.fault("down", True)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        # A new apply right at the guard's moment: both want to undo the same change.
        wait_for("the deadline", lambda: time.time() >= rec["extra"]["guard"]["at"] - 0.3, 30)
        rerun = apply(lab, tmp_path)
    finally:
        lab.fault("down", False)
        finish(proc)
    assert rerun.returncode in (0, 3), rerun.stderr[-2000:]
    wait_for("the guard to end", lambda: guard_gone(rec), 30)
    reverts = [r for r in records(tmp_path) if r["change"] == rec["change"]]
    assert [r["state"] for r in reverts].count("reverted") == 1, reverts
    assert [r["state"] for r in reverts][-1] == "reverted"


def test_a_stopped_apply_holding_the_lock_does_not_pin_a_bad_change(
    blackhole: Lab, tmp_path: Path, figure: FigureFn
) -> None:
    """SIGSTOP (or a process wedged in a read) holds the state lock forever: the guard
    used to wait on it for a day. Its heartbeat stops, so the guard reverts without it."""
    lab = blackhole
    proc = start(lab, tmp_path)
    try:
        rec = applied_record(tmp_path, proc)
        lab.fault("down", True)
        os.killpg(proc.pid, signal.SIGSTOP)
        reverted_at = wait_for(
            "the guard's revert past a stuck holder", lambda: mtu(lab) == 1420, 90
        )
    finally:
        lab.fault("down", False)
        os.killpg(proc.pid, signal.SIGCONT)
        finish(proc)
    late = reverted_at - revert_deadline(rec)
    figure(
        "Rollback and crash safety",
        "apply stopped (SIGSTOP, the lock held) during the window of a bad change -> seconds "
        "from its deadline to the guard's revert",
        round(late, 1),
        "s",
    )
    last = next(r for r in records(tmp_path) if r["state"] == "reverted")
    assert last["code"] == "deadline", last
    assert late < 45.0, late  # STUCK_MIN (30 s) after the last beat, plus the guard's poll
