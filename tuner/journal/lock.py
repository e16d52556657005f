"""One wg-tuner per state directory: an exclusive flock, waited for a bounded time.

The holder writes its pid and how often it promises to show progress (``beat``), and
shows it by touching the lock file (``StateLock.beat``: the daemon after each cycle
that did its work, a one-shot after each verification step). A holder whose last beat
is far older than its promise is stuck (stopped, starved, wedged in a read): a revert
guard then acts without the lock rather than let it pin an unverified change.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from tuner.errors import LockBusy
from tuner.journal.journal import ensure_state_dir

LOCK_FILE = "lock"


STUCK_MIN = 30.0
"""A holder is never called stuck sooner than this after its last beat: longer than the
15 s pause after which a resumed wg-tuner undoes an unwatched window itself, so a short
stop is the holder's to handle and only a long one the guard's."""


class StateLock:
    def __init__(self, state_dir: Path, wait: float = 10.0, beat: float = 5.0) -> None:
        self.path = state_dir / LOCK_FILE
        self.state_dir = state_dir
        self.wait = wait
        self.beat_every = beat
        self.fd: int | None = None

    def __enter__(self) -> StateLock:
        ensure_state_dir(self.state_dir)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").partition("\n")[0]
                    os.close(fd)
                    raise LockBusy(
                        f"another wg-tuner holds {self.path}"
                        + (f" (pid {holder})" if holder else "")
                        + "; try again later"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\nbeat={self.beat_every:g}\n".encode(), 0)
        self.fd = fd
        return self

    def beat(self) -> None:
        """Progress: the lock file's mtime is now."""
        if self.fd is not None:
            os.utime(self.fd)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock
            self.fd = None


def holder(state_dir: Path) -> str | None:
    """Who holds the state lock right now ("pid N", or "unknown"), or None when nobody
    does. Reads only: a missing lock file is a free lock and is not created."""
    path = state_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"unknown ({exc.strerror})"
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").partition("\n")[0].strip()
            return f"pid {pid}" if pid.isdigit() else "unknown"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def stuck(state_dir: Path, now: float | None = None) -> float | None:
    """Seconds since the lock's holder last showed progress, when that is far past its
    promise (three beats, at least STUCK_MIN); None when it is free or keeping up."""
    path = state_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 64, 0).decode(errors="replace")
            promise = 5.0
            for line in text.splitlines():
                key, _, value = line.partition("=")
                if key == "beat":
                    with contextlib.suppress(ValueError):
                        promise = max(0.1, float(value))
            silent = (time.time() if now is None else now) - os.fstat(fd).st_mtime
            return silent if silent > max(STUCK_MIN, 3 * promise) else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
