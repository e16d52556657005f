"""The revert guard's arming (a real fake systemd-run, a spawned process) and its logic."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tuner.engine.guard import (
    LEAD,
    MARGIN,
    SANDBOX,
    UNIT_PREFIX,
    Guards,
    guard_argv,
    run_guard,
    sandbox,
)
from tuner.errors import LockBusy
from tuner.journal.lock import StateLock, holder
from tuner.journal.lock import stuck as lock_stuck

pytestmark = pytest.mark.timing


def recorder(tmp_path: Path, name: str) -> Path:
    """An executable that appends its argument list (JSON) to NAME.calls."""
    path = tmp_path / name
    calls = tmp_path / f"{name}.calls"
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def calls(tmp_path: Path, name: str) -> list[list[str]]:
    path = tmp_path / f"{name}.calls"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_under_systemd_a_transient_timer_runs_the_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", "/opt/bundle")
    tools = {n: recorder(tmp_path, n) for n in ("systemd-run", "systemctl")}
    guards = Guards(
        tmp_path / "state",
        systemd=lambda: True,
        which=lambda n: str(tools[n]) if n in tools else None,
        clock=lambda: 1000.0,
    )
    armed = guards.arm("ab12cd34", 1030.0)
    assert armed == {"how": "systemd", "unit": f"{UNIT_PREFIX}ab12cd34", "at": 1030.0 + MARGIN}
    (argv,) = calls(tmp_path, "systemd-run")
    assert f"--unit={UNIT_PREFIX}ab12cd34" in argv
    # Started LEAD seconds early; the guard then waits to the second.
    assert f"--on-active={32 - LEAD:.0f}s" in argv and "--collect" in argv
    assert "--setenv=PYTHONPATH=/opt/bundle" in argv
    # The daemon's sandbox, its state directory writable; /tmp (the state here) not private.
    properties = [a.removeprefix("--property=") for a in argv if a.startswith("--property=")]
    assert set(SANDBOX) <= set(properties)
    assert f"ReadWritePaths=-{(tmp_path / 'state').resolve()}" in properties
    assert "PrivateTmp=yes" not in properties
    command = argv[argv.index("--") + 1 :]
    assert command == guard_argv(tmp_path / "state", "ab12cd34", 1030.0 + MARGIN, wait=True)
    guards.cancel("ab12cd34", armed)
    unit = f"{UNIT_PREFIX}ab12cd34"
    assert calls(tmp_path, "systemctl") == [["stop", f"{unit}.timer"], ["stop", f"{unit}.service"]]


def test_a_systemd_guard_due_sooner_than_its_lead_starts_at_once(tmp_path: Path) -> None:
    tool = recorder(tmp_path, "systemd-run")
    guards = Guards(tmp_path, systemd=lambda: True, which=lambda n: str(tool), clock=lambda: 0.0)
    guards.arm("01", 3.0)
    (argv,) = calls(tmp_path, "systemd-run")
    assert "--on-active=1s" in argv


def test_without_systemd_a_detached_guard_process_is_spawned(tmp_path: Path) -> None:
    spawned: list[list[str]] = []
    guards = Guards(
        tmp_path,
        systemd=lambda: False,
        spawn=lambda argv: spawned.append(list(argv)) or 4242,
        clock=lambda: 0.0,
    )
    armed = guards.arm("00ff", 10.0)
    assert armed == {"how": "process", "pid": 4242, "at": 10.0 + MARGIN}
    assert spawned == [guard_argv(tmp_path, "00ff", 10.0 + MARGIN, wait=True)]
    assert spawned[0][:3] == [sys.executable, "-m", "tuner"]


def test_a_failing_systemd_run_falls_back_to_the_process(tmp_path: Path) -> None:
    guards = Guards(
        tmp_path,
        systemd=lambda: True,
        which=lambda n: "/bin/false",
        run=lambda argv: 1,
        spawn=lambda argv: 7,
        clock=lambda: 0.0,
    )
    assert guards.arm("01", 5.0)["how"] == "process"


def test_the_real_spawn_detaches_into_its_own_session(tmp_path: Path) -> None:
    marker = tmp_path / "sid"
    script = f"import os; open({str(marker)!r}, 'w').write(str(os.getsid(0)))"
    guards = Guards(tmp_path)
    pid = guards.detach([sys.executable, "-c", script])
    guards._children[pid].wait(timeout=30)
    guards.reap()
    assert guards._children == {}
    assert int(marker.read_text()) == pid  # a session leader of its own: no SIGHUP from ours
    assert os.getsid(0) != pid


def test_batch_ids_are_checked_before_reaching_a_command() -> None:
    with pytest.raises(ValueError, match="bad batch"):
        guard_argv(Path("/x"), "--oops", 1.0, wait=True)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def test_the_guard_waits_for_the_deadline_then_reverts_what_is_open() -> None:
    clock = Clock()
    reverted: list[float] = []
    result = run_guard(
        batch="b",
        deadline=130.0,
        wait=True,
        open_members=lambda: 1,
        locked_revert=lambda: reverted.append(clock.now) or 1,
        clock=clock,
        sleep=clock.sleep,
    )
    assert result.reverted == 1 and reverted == [130.0]


def test_a_batch_verified_before_the_deadline_ends_the_guard_early() -> None:
    clock = Clock()
    state = {"open": 1}

    def open_members() -> int:
        if clock.now >= 110:
            state["open"] = 0  # verified at 110
        return state["open"]

    result = run_guard(
        batch="b",
        deadline=130.0,
        wait=True,
        open_members=open_members,
        locked_revert=lambda: pytest.fail("must not revert a verified batch"),
        clock=clock,
        sleep=clock.sleep,
    )
    assert result.reverted == 0 and clock.now < 130


def test_a_live_lock_holder_decides_first_and_the_guard_reverts_nothing_twice() -> None:
    clock = Clock()
    tries = {"n": 0}
    state = {"open": 1}

    def locked_revert() -> int:
        tries["n"] += 1
        if tries["n"] < 3:
            raise LockBusy("held")
        state["open"] = 0
        return 0

    def open_members() -> int:
        if tries["n"] == 2:
            state["open"] = 0  # the holder reverted it itself meanwhile
        return state["open"]

    result = run_guard(
        batch="b",
        deadline=100.0,
        wait=False,
        open_members=open_members,
        locked_revert=locked_revert,
        clock=clock,
        sleep=clock.sleep,
    )
    assert result.reverted == 0 and tries["n"] == 2


def test_the_unit_file_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze (Debian systemd) is required"
    unit = (REPO / "systemd" / "wg-tuner.service").read_text()
    exe = Path(sys.executable).parent / "wg-tuner"
    (tmp_path / "wg-tuner.service").write_text(unit.replace("/usr/local/bin/wg-tuner", str(exe)))
    proc = subprocess.run(
        [analyze, "verify", str(tmp_path / "wg-tuner.service")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_the_guards_sandbox_is_the_daemon_units() -> None:
    unit = (REPO / "systemd" / "wg-tuner.service").read_text()
    lines = set(unit.replace("\\\n", "").splitlines())
    flat = {" ".join(line.split()) for line in lines}
    missing = [prop for prop in SANDBOX if " ".join(prop.split()) not in flat]
    assert missing == []
    production = sandbox(Path("/var/lib/wg-tuner"), [Path("/usr/bin/python3")])
    assert "PrivateTmp=yes" in production and "ProtectHome=yes" in production
    # A venv in /tmp whose python links elsewhere: the unit execs the path in /tmp.
    venv = Path(tempfile.mkdtemp(prefix="wgt-venv-"))
    try:
        (venv / "python").symlink_to("/usr/bin/python3")
        assert "PrivateTmp=yes" not in sandbox(Path("/var/lib/wg-tuner"), [venv / "python"])
    finally:
        shutil.rmtree(venv)


def test_a_stuck_lock_holder_does_not_pin_the_change() -> None:
    """The holder never releases the lock (stopped, wedged): once its heartbeat is stale
    the guard reverts without the lock instead of waiting a day."""
    now = [100.0]
    reverted: list[str] = []

    def busy() -> int:
        raise LockBusy("held")

    result = run_guard(
        batch="b1",
        deadline=100.0,
        wait=False,
        open_members=lambda: 1,
        locked_revert=busy,
        holder_stuck=lambda: 42.0 if now[0] > 105 else None,
        unlocked_revert=lambda: reverted.append("b1") or 1,
        clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s),
    )
    assert reverted == ["b1"] and result.reverted == 1
    assert 5.0 < result.waited < 6.5  # waited while the holder kept up, not a second more


def test_the_lock_heartbeat_tells_a_stuck_holder_from_a_live_one(tmp_path: Path) -> None:
    with StateLock(tmp_path, wait=0, beat=1.0) as lock:
        assert lock_stuck(tmp_path) is None  # just taken
        past = time.time() - 60
        os.utime(tmp_path / "lock", (past, past))
        silent = lock_stuck(tmp_path)
        assert silent is not None and silent > 59
        lock.beat()
        assert lock_stuck(tmp_path) is None
        assert holder(tmp_path) == f"pid {os.getpid()}"
    assert lock_stuck(tmp_path) is None  # free: nobody to be stuck
