"""The kernel log, read through /dev/kmsg from a cursor: every record once, never
unbounded.

/dev/kmsg hands out one record per read(2) as ``PRIO,SEQ,USEC,FLAGS;TEXT`` followed by
continuation lines (`` KEY=value``); the kernel escapes unprintable bytes as ``\\xNN``.
A reader that fell behind gets EPIPE once and continues at the oldest record still kept.
The descriptor stays open between reads (the cursor is the kernel's); the first read
skips records older than ``lookback`` seconds, so a start never replays a day of log.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

RECORD_MAX = 8192
"""The kernel's own limit for one record (CONSOLE_EXT_LOG_MAX)."""
TEXT_MAX = 512
"""Characters of a message kept: enough for any line wg-tuner classifies."""
PER_READ = 20_000
"""Records taken per call at most; the rest wait for the next call."""


KERNEL_KINDS = frozenset(
    {
        "conntrack_full",
        "link_down",
        "link_up",
        "netfilter_log",
        "fragmentation",
        "handshake_retry",
        "wireguard",
    }
)
"""What a kernel record may be classified as (``tuner.observe.logs``)."""
USERSPACE_KINDS = frozenset({"handshake_retry", "send_error", "userspace_error"})
"""What a userspace WireGuard's line may be classified as: never a kernel's kind."""


@dataclass(frozen=True, slots=True)
class KmsgRecord:
    seq: int
    monotonic: float
    """Seconds since boot on CLOCK_MONOTONIC (time.monotonic() on Linux)."""
    priority: int
    text: str


def parse_record(raw: bytes) -> KmsgRecord | None:
    """One /dev/kmsg record; None for anything malformed."""
    head, sep, body = raw.partition(b";")
    if not sep:
        return None
    fields = head.split(b",")
    if len(fields) < 3 or not all(f.isdigit() for f in fields[:3]):
        return None
    text = body.split(b"\n", 1)[0][:TEXT_MAX].decode("ascii", errors="replace")
    # Anything unprintable the kernel did not escape (it should) is replaced, not kept.
    text = "".join(c if c.isprintable() else "?" for c in text)
    if int(fields[0]) >> 3 != 0:
        # Not the kernel's: a process wrote it to /dev/kmsg (the kernel never lets one
        # claim facility 0, LOG_KERN). It says nothing wg-tuner may act on.
        return None
    return KmsgRecord(int(fields[1]), int(fields[2]) / 1e6, int(fields[0]) & 7, text)


class Kmsg:
    """A reader of /dev/kmsg. ``read`` returns the records new since the last call."""

    kinds: frozenset[str] = KERNEL_KINDS

    def __init__(
        self,
        path: str = "/dev/kmsg",
        lookback: float = 600.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.lookback = lookback
        self.monotonic = monotonic
        self._fd: int | None = None
        self._last_seq = -1
        self.available = True

    def _open(self) -> int | None:
        if self._fd is None and self.available:
            try:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                self.available = False  # no /dev/kmsg (a container) or no permission
        return self._fd

    def read(self) -> list[KmsgRecord]:
        fd = self._open()
        if fd is None:
            return []
        first = self._last_seq < 0
        oldest = self.monotonic() - self.lookback
        out: list[KmsgRecord] = []
        for _ in range(PER_READ):
            try:
                raw = os.read(fd, RECORD_MAX)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    continue  # overwritten while we were away: go on with what is left
                self.close()
                self.available = False
                break
            if not raw:
                break
            rec = parse_record(raw)
            if rec is None or rec.seq <= self._last_seq:
                continue
            self._last_seq = rec.seq
            if first and rec.monotonic < oldest:
                continue
            out.append(rec)
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
