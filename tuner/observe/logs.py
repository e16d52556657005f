"""Kernel log lines and the userspace WireGuard's journal lines, classified into the
event kinds policies and operators use.

Only lines that match a kind are kept, as (kind, device, time); their text is not
stored, so nothing a log line says (a hostile one included) reaches a report, a metric
or the journal beyond its kind and an interface-name-shaped device.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import Protocol

from tuner.adapters.kmsg import USERSPACE_KINDS, Kmsg, KmsgRecord
from tuner.model.snapshot import LogEvent

_DEV = r"(?P<dev>[A-Za-z0-9_.@-]{1,15})"
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("conntrack_full", re.compile(r"nf_conntrack: table full, dropping packet")),
    ("link_down", re.compile(rf"\b{_DEV}:? (?:NIC )?[Ll]ink (?:is )?[Dd]own\b")),
    ("link_down", re.compile(rf"\b{_DEV}: carrier lost\b")),
    ("link_up", re.compile(rf"\b{_DEV}:? (?:NIC )?[Ll]ink (?:is )?[Uu]p\b")),
    ("link_up", re.compile(rf"ADDRCONF\(NETDEV_CHANGE\): {_DEV}: link becomes ready")),
    ("netfilter_log", re.compile(r"\bIN=\S* OUT=\S* .*\bSRC=\S+ DST=\S+")),
    ("fragmentation", re.compile(r"(?i)\b(?:fragmentation needed|frag(?:ment)? needed|pmtu)\b")),
    # WireGuard's own lines: the kernel module's (with dynamic debug on) and wireguard-go's
    # ("DEBUG: (wg0) 2026/12/02 15:00:00 peer(AbCd…WxYz) - ..." in the journal).
    (
        "handshake_retry",
        re.compile(rf"^wireguard: {_DEV}: Handshake for peer .* did not complete after"),
    ),
    (
        "handshake_retry",
        re.compile(rf"^[A-Z]+: \({_DEV}\) .*Handshake did not complete after \d+ seconds"),
    ),
    (
        "send_error",
        re.compile(rf"^[A-Z]+: \({_DEV}\) .*Failed to send (?:handshake|data|keepalive)"),
    ),
    ("wireguard", re.compile(rf"^wireguard: {_DEV}: ")),
    ("userspace_error", re.compile(rf"^ERROR: \({_DEV}\) ")),
)
"""First match wins; ``dev`` names the link where the line says one."""
KINDS = tuple(dict.fromkeys(kind for kind, _ in PATTERNS))

RECENT = 600.0
"""Seconds of events the Snapshot carries (policies look at the last 5-10 minutes)."""
RECENT_MAX = 2000
"""Events kept at most (a flood of one kind must not grow the Snapshot)."""


_NAMES_A_PROCESS = re.compile(r"^[^\[\]]{1,16}\[\d+\]: ")
"""A kernel line that starts with a process's name (``COMM[PID]: segfault at ...``):
the name is the process's to choose, so nothing in the line is the kernel's word."""
_QUOTING = "('\"<"
"""A match right after one of these is inside a quoted process name (``Killed
process 12 (COMM)``), never a driver's own words."""


def classify(text: str, kinds: frozenset[str] | None = None) -> tuple[str, str] | None:
    """(kind, device or "") for a line wg-tuner cares about, else None. ``kinds``: the
    kinds the line's source may produce (a userspace daemon's journal never produces a
    kernel's kinds, however its text reads)."""
    if kinds is not None and kinds is not USERSPACE_KINDS and _NAMES_A_PROCESS.match(text):
        return None
    for kind, pattern in PATTERNS:
        if kinds is not None and kind not in kinds:
            continue
        m = pattern.search(text)
        if m:
            if m.start() > 0 and text[m.start() - 1] in _QUOTING:
                continue
            return kind, (m.groupdict().get("dev") or "")
    return None


class LogSource(Protocol):
    """A log read from a cursor: each call returns the records new since the last."""

    available: bool
    kinds: frozenset[str]
    """What its records may be classified as (the kernel's kinds, or a daemon's)."""

    def read(self) -> list[KmsgRecord]: ...


class LogWatch:
    """Keeps the recent classified events of its sources (the kernel log, the journal)
    and the counts since it started."""

    def __init__(self, *sources: LogSource) -> None:
        self.sources: Sequence[LogSource] = sources or (Kmsg(lookback=RECENT),)
        self.recent: deque[LogEvent] = deque(maxlen=RECENT_MAX)
        self.counts: Counter[str] = Counter()

    def feed(self, records: Iterable[KmsgRecord], kinds: frozenset[str] | None = None) -> None:
        for rec in records:
            hit = classify(rec.text, kinds)
            if hit is not None:
                self.recent.append(LogEvent(hit[0], hit[1], rec.monotonic))
                self.counts[hit[0]] += 1

    def poll(self, now: float) -> tuple[tuple[LogEvent, ...], dict[str, int]]:
        for source in self.sources:
            self.feed(source.read(), source.kinds)
        while self.recent and self.recent[0].at < now - RECENT:
            self.recent.popleft()
        return tuple(self.recent), dict(self.counts)

    @property
    def available(self) -> bool:
        return any(source.available for source in self.sources)
