"""Hold the state lock briefly and log entry/exit (for the lock race test)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from tuner.errors import LockBusy
from tuner.journal.lock import StateLock


def main() -> int:
    state, log = Path(sys.argv[1]), Path(sys.argv[2])
    try:
        with StateLock(state, wait=float(sys.argv[3])):
            with open(log, "a") as fh:
                fh.write(f"enter {os.getpid()}\n")
            time.sleep(0.005)
            with open(log, "a") as fh:
                fh.write(f"exit {os.getpid()}\n")
    except LockBusy:
        return 75
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
