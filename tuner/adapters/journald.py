"""The userspace WireGuard daemon's log in the systemd journal, read through journalctl
from a cursor: every entry once, never unbounded, nothing but the message kept.

wireguard-go writes its lines to stdout, which systemd hands to the journal whatever
unit started it (``wg-quick@IF``, a unit of its own), so entries are matched by
``_COMM=wireguard-go`` and ``_UID=0`` in the current boot. ``_COMM`` alone is anyone's:
every user may name a process wireguard-go and log what it likes; ``_UID`` is journald's
own record of the writer's credentials (from the kernel), and only root runs the
WireGuard daemon. What such an entry may say is limited too: only wireguard-go's own
kinds of line are taken from it (``tuner.observe.logs``), never a kernel's.

The first read starts ``lookback`` seconds back; each later one starts after the
cursor of the last entry read. At most ``PER_READ`` entries are taken per call (the
rest wait for the next call), and a journalctl that does not finish in ``timeout``
seconds is stopped with what it gave. Where there is no journal (no journald, a
container) nothing is spawned.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

from tuner.adapters.kmsg import PER_READ, TEXT_MAX, USERSPACE_KINDS, KmsgRecord

log = structlog.get_logger("tuner.journald")

JOURNAL_DIRS = (Path("/run/log/journal"), Path("/var/log/journal"))
WIREGUARD_GO = ("_COMM=wireguard-go", "_UID=0")


def parse_entry(line: str) -> tuple[str, KmsgRecord | None] | None:
    """(cursor, record) of one ``journalctl -o json`` line; None for a malformed line,
    a None record for an entry without a usable message (journalctl gives a message of
    over 4096 bytes as null). A binary MESSAGE (an array of bytes in journalctl's JSON)
    is decoded with replacement; unprintable characters are replaced, not kept."""
    try:
        entry = json.loads(line)
        cursor = entry["__CURSOR"]
        monotonic = int(entry["__MONOTONIC_TIMESTAMP"]) / 1e6
        message = entry.get("MESSAGE")
        priority = int(entry.get("PRIORITY", 6))
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(cursor, str):
        return None
    if isinstance(message, list):
        try:
            message = bytes(message).decode("utf-8", errors="replace")
        except (ValueError, TypeError):
            return cursor, None
    if not isinstance(message, str):
        return cursor, None
    text = "".join(c if c.isprintable() else "?" for c in message[:TEXT_MAX])
    return cursor, KmsgRecord(0, monotonic, priority & 7, text)


class Journald:
    """A reader of the journal's entries that match ``matches`` (wireguard-go's by
    default). ``read`` returns the entries new since the last call."""

    kinds: frozenset[str] = USERSPACE_KINDS
    """What an entry of wireguard-go's may be classified as."""

    def __init__(
        self,
        matches: Sequence[str] = WIREGUARD_GO,
        *,
        lookback: float = 600.0,
        files: Sequence[Path] = (),
        binary: str = "journalctl",
        timeout: float = 15.0,
        journal_dirs: Sequence[Path] = JOURNAL_DIRS,
        min_interval: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``min_interval``: seconds between two journalctl runs at least (a daemon with
        a short interval does not spawn one every cycle; what waits is read next time)."""
        self.matches = tuple(matches)
        self.lookback = lookback
        self.files = tuple(files)
        self.binary = binary
        self.timeout = timeout
        self.journal_dirs = tuple(journal_dirs)
        self.min_interval = min_interval
        self.monotonic = monotonic
        self._last_run: float | None = None
        self.cursor: str | None = None
        self.available = True
        self.failure: str | None = None
        """Why the last journalctl run failed (exit status, signal, timeout), or None."""

    def _has_journal(self) -> bool:
        if self.files:
            return True
        return any(d.is_dir() and any(d.iterdir()) for d in self.journal_dirs)

    def argv(self) -> list[str]:
        argv = [self.binary, "--output=json", "--no-pager", "--quiet", "--boot"]
        argv.append("--output-fields=MESSAGE,PRIORITY")  # cursor and timestamps come always
        argv += [f"--file={f}" for f in self.files]
        if self.cursor is not None:
            argv.append(f"--after-cursor={self.cursor}")
        else:
            argv.append(f"--since=-{int(self.lookback)}s")
        return [*argv, *self.matches]

    def read(self) -> list[KmsgRecord]:
        if not self.available or not self._has_journal():
            return []
        now = self.monotonic()
        if self._last_run is not None and now - self._last_run < self.min_interval:
            return []
        self._last_run = now
        try:
            proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                errors="replace",
                env={**os.environ, "SYSTEMD_COLORS": "0"},
            )
        except OSError:
            self.available = False  # no journalctl here
            return []
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            proc.kill()

        stopper = threading.Timer(self.timeout, stop)
        stopper.start()
        out: list[KmsgRecord] = []
        try:
            for line in proc.stdout or ():
                parsed = parse_entry(line)
                if parsed is None:
                    continue
                self.cursor, record = parsed
                if record is not None:
                    out.append(record)
                if len(out) >= PER_READ:
                    break
        finally:
            if len(out) >= PER_READ:
                proc.kill()  # the rest waits for the next read, after our cursor
            proc.communicate()  # the timer still stops one that never ends
            stopper.cancel()
        failure = (
            f"no answer in {self.timeout:.0f} s"
            if timed_out.is_set()
            else f"exit status {proc.returncode}"
            if proc.returncode not in (0, None, -9)
            else None
        )
        if failure != self.failure and failure is not None:
            log.warning("journal.read_failed", why=failure, entries=len(out))
        self.failure = failure
        return out

    def close(self) -> None:
        """Nothing is held between reads (the cursor is ours)."""
