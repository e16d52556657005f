"""One wg-tuner per state directory: an exclusive flock, waited for a bounded time."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from tuner.errors import LockBusy
from tuner.journal.journal import ensure_state_dir

LOCK_FILE = "lock"


class StateLock:
    def __init__(self, state_dir: Path, wait: float = 10.0) -> None:
        self.path = state_dir / LOCK_FILE
        self.state_dir = state_dir
        self.wait = wait
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
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                    os.close(fd)
                    raise LockBusy(
                        f"another wg-tuner holds {self.path}"
                        + (f" (pid {holder})" if holder else "")
                        + "; try again later"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        return self

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
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return f"pid {pid}" if pid.isdigit() else "unknown"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
