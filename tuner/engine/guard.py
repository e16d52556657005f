"""Commit-confirmed that survives the controller: a revert deadline enforced outside it.

When a batch is applied, ``Guards.arm`` starts something the applying process's death
cannot cancel, due at the batch's revert deadline (end of its window + grace + a margin):

- under systemd (PID 1) in the initial network namespace, a transient timer
  (``systemd-run --on-active``, unit ``wg-tuner-guard-BATCH``) that starts
  ``wg-tuner guard --wait`` a little ahead of the deadline (``LEAD``), so the guard's own
  start-up is not charged to the deadline, with the caller's PYTHONPATH (a unit started
  by systemd inherits nothing from the caller);
- elsewhere, a detached guard process (its own session, SIGHUP ignored, stdio on
  /dev/null) running ``wg-tuner guard --wait``, holding nothing but the state directory,
  the batch id and the deadline.

``run_guard`` is the one recovery either runs: take the state lock (waiting while a live
wg-tuner holds it and the batch is still open), then revert what of the batch is still
unverified, journaled with cause ``deadline``. A batch verified or reverted meanwhile is
left alone, so the guard, the applying process and the next start's recovery are
idempotent with each other. Verification or revert ``cancel`` the guard early.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from tuner.errors import LockBusy

log = structlog.get_logger("tuner.guard")

MARGIN = 2.0
"""Seconds after the revert deadline before the guard acts (the applying process's own
verdict comes at the deadline at the latest)."""
GIVE_UP = 86400.0
"""A guard waiting for a lock holder that never finishes stops after this long."""
UNIT_PREFIX = "wg-tuner-guard-"
LEAD = 15.0
"""Seconds before the deadline the systemd timer starts the guard, which then sleeps to
the second. A Python start is 0.1 s on a host and several seconds under emulation; a
guard started at the deadline would be late by all of it."""
PASS_ENV = ("PYTHONPATH",)
"""What a systemd-started guard needs of the caller's environment to import wg-tuner."""
INHERIT_NOT = frozenset({"WG_TUNER_FAULT_KILL_AFTER"})
"""The crash tests' fault injection is for the applying process, never its guard."""
_BATCH = re.compile(r"[0-9a-f]{1,32}")

SANDBOX = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "PrivateMounts=yes",
    "PrivateDevices=yes",
    "ProtectKernelModules=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "MemoryDenyWriteExecute=yes",
    "RemoveIPC=yes",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service @network-io",
    "SystemCallFilter=~@privileged @resources @mount @swap @reboot @debug @cpu-emulation "
    "@obsolete @raw-io",
    "SystemCallErrorNumber=EPERM",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    "DevicePolicy=closed",
    "UMask=0077",
    "KeyringMode=private",
    "LimitCORE=0",
    "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_DAC_OVERRIDE CAP_SYSLOG",
    "ReadWritePaths=-/var/lib/prometheus/node-exporter -/etc/sysctl.d -/etc/wireguard",
)
"""The daemon unit's sandbox, for the guard's transient unit: a guard reverts what the
daemon changed and needs no more than the daemon (tests hold the two equal)."""
_PRIVATE = {
    "PrivateTmp=yes": ("/tmp", "/var/tmp"),  # noqa: S108 - paths compared, never written
    "ProtectHome=yes": ("/home", "/root"),
}
"""Applied unless the guard's own state directory or code lives there (a test's)."""


def sandbox(state_dir: Path, runs_from: Sequence[Path] | None = None) -> list[str]:
    """The guard unit's properties: SANDBOX, its state directory writable, and the
    private /tmp and hidden homes unless what it runs from (this interpreter and
    PYTHONPATH by default) lives in them."""
    if runs_from is None:
        runs_from = [Path(sys.executable)]
        runs_from += [Path(p) for p in os.environ.get("PYTHONPATH", "").split(":") if p]
    # The path as the unit will exec it and where it leads: a venv under /tmp whose
    # python links to /root/.pyenv needs both /tmp and /root.
    used = [state_dir.resolve(), *(q for p in runs_from for q in (p.absolute(), p.resolve()))]
    out = [*SANDBOX, f"ReadWritePaths=-{state_dir.resolve()}"]
    for prop, roots in _PRIVATE.items():
        if not any(str(p).startswith(root + "/") for p in used for root in roots):
            out.append(prop)
    return out


def guard_argv(state_dir: Path, batch: str, deadline: float, *, wait: bool) -> list[str]:
    """The command either mechanism runs: this interpreter, this package, no shell."""
    if not _BATCH.fullmatch(batch):
        raise ValueError(f"bad batch id {batch!r}")
    # -S passes on: a Python started without site (the VM lab's bundle) has no site to find.
    python = [sys.executable, "-S"] if sys.flags.no_site else [sys.executable]
    argv = [*python, "-m", "tuner", "--log-format", "json", "guard"]
    argv += ["--state-dir", str(state_dir), "--batch", batch, "--deadline", f"{deadline:.3f}"]
    return [*argv, "--wait"] if wait else argv


def _same_netns_as_init() -> bool:
    try:
        return os.stat("/proc/self/ns/net").st_ino == os.stat("/proc/1/ns/net").st_ino
    except OSError:
        return False


def systemd_is_init() -> bool:
    """As sd_booted(3): /run/systemd/system exists only when systemd is PID 1."""
    return Path("/run/systemd/system").is_dir()


@dataclass
class Guards:
    """Arms and cancels revert guards. The ports are injectable for tests."""

    state_dir: Path
    systemd: Callable[[], bool] = field(default=lambda: systemd_is_init() and _same_netns_as_init())
    which: Callable[[str], str | None] = shutil.which
    run: Callable[[Sequence[str]], int] = lambda argv: (
        subprocess.run(list(argv), check=False, capture_output=True, timeout=30).returncode
    )
    spawn: Callable[[Sequence[str]], int] | None = None
    """Start a detached process, return its pid (default: ``detach``)."""
    clock: Callable[[], float] = time.time
    _children: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def detach(self, argv: Sequence[str]) -> int:
        """A process in its own session (no SIGHUP from ours), stdio on /dev/null, cwd /."""
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            cwd="/",
            env={k: v for k, v in os.environ.items() if k not in INHERIT_NOT},
        )
        self._children[proc.pid] = proc
        return proc.pid

    def arm(self, batch: str, deadline: float) -> dict[str, object]:
        """Start the guard of ``batch``; returns how (journaled with the batch)."""
        due = max(1.0, deadline + MARGIN - self.clock())
        systemd_run = self.which("systemd-run") if self.systemd() else None
        if systemd_run:
            unit = f"{UNIT_PREFIX}{batch}"
            env = [f"--setenv={k}={os.environ[k]}" for k in PASS_ENV if os.environ.get(k)]
            argv = [
                systemd_run,
                "--quiet",
                "--collect",
                f"--unit={unit}",
                "--description=wg-tuner revert deadline",
                f"--on-active={max(1.0, due - LEAD):.0f}s",
                "--timer-property=AccuracySec=1s",
                "--property=Type=oneshot",
                *(f"--property={prop}" for prop in sandbox(self.state_dir)),
                *env,
                "--",
                *guard_argv(self.state_dir, batch, deadline + MARGIN, wait=True),
            ]
            if self.run(argv) == 0:
                log.info("guard.armed", batch=batch, how="systemd", unit=unit, due_in=round(due))
                return {"how": "systemd", "unit": unit, "at": deadline + MARGIN}
            log.warning("guard.systemd_failed", batch=batch)
        spawn = self.spawn or self.detach
        pid = spawn(guard_argv(self.state_dir, batch, deadline + MARGIN, wait=True))
        log.info("guard.armed", batch=batch, how="process", pid=pid, due_in=round(due))
        return {"how": "process", "pid": pid, "at": deadline + MARGIN}

    def cancel(self, batch: str, armed: dict[str, object]) -> None:
        """Stop the guard early (the batch was verified or reverted). Best effort: a
        guard that still fires finds nothing open and does nothing."""
        if armed.get("how") == "systemd":
            systemctl = self.which("systemctl")
            if systemctl:
                # The timer, then its service if the guard has already started and
                # waits (one call each: a unit that is not loaded fails only its own).
                for suffix in (".timer", ".service"):
                    self.run([systemctl, "stop", f"{armed.get('unit')}{suffix}"])
        elif armed.get("how") == "process":
            pid = armed.get("pid")
            if isinstance(pid, int) and _is_our_guard(pid, batch):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        self.reap()
        log.info("guard.cancelled", batch=batch, how=armed.get("how"))

    def reap(self) -> None:
        """Collect guard processes of ours that have ended (no zombies in a daemon)."""
        for pid, proc in list(self._children.items()):
            if proc.poll() is not None:
                del self._children[pid]


def _is_our_guard(pid: int, batch: str) -> bool:
    """Only signal a process whose command line is this batch's guard (pids are reused)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"guard" in argv and batch.encode() in argv


@dataclass(frozen=True, slots=True)
class GuardResult:
    reverted: int
    waited: float


def run_guard(
    *,
    batch: str,
    deadline: float,
    wait: bool,
    open_members: Callable[[], int],
    locked_revert: Callable[[], int],
    holder_stuck: Callable[[], float | None] = lambda: None,
    unlocked_revert: Callable[[], int] | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> GuardResult:
    """Sleep to the deadline (``wait``), then revert what of ``batch`` is still open.

    ``open_members`` reads the journal (no lock); ``locked_revert`` takes the state lock
    without waiting, reverts the batch's open members and returns how many, or raises
    LockBusy while a live wg-tuner holds the lock. While it does, ``holder_stuck`` says
    how long that holder has shown no progress (None: it is keeping up); a stuck holder
    does not pin the change: ``unlocked_revert`` reverts it without the lock.
    """
    if wait:
        while (left := deadline - clock()) > 0:
            if open_members() == 0:
                log.info("guard.nothing_open", batch=batch)
                return GuardResult(0, 0.0)
            sleep(min(left, 1.0))
    began = clock()
    while True:
        if open_members() == 0:
            return GuardResult(0, clock() - began)
        try:
            reverted = locked_revert()
        except LockBusy:
            silent = holder_stuck()
            if silent is not None and unlocked_revert is not None:
                log.warning("guard.holder_stuck", batch=batch, silent_s=round(silent, 1))
                reverted = unlocked_revert()
                log.warning("guard.reverted", batch=batch, reverted=reverted, locked=False)
                return GuardResult(reverted, clock() - began)
            if clock() - began > GIVE_UP:
                log.error("guard.gave_up", batch=batch)
                return GuardResult(0, clock() - began)
            sleep(0.5)  # its holder is alive and will decide; look again
            continue
        log.warning("guard.reverted", batch=batch, reverted=reverted)
        return GuardResult(reverted, clock() - began)


def ignore_hangup() -> None:
    """A guard outlives the session that started it."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
