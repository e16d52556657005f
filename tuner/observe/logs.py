"""Kernel log lines, classified into the event kinds policies and operators use.

Only lines that match a kind are kept, as (kind, device, time); their text is not
stored, so nothing a log line says (a hostile one included) reaches a report, a metric
or the journal beyond its kind and an interface-name-shaped device.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Iterable

from tuner.adapters.kmsg import Kmsg, KmsgRecord
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
    ("wireguard", re.compile(rf"^wireguard: {_DEV}: ")),
)
"""First match wins; ``dev`` names the link where the line says one."""
KINDS = tuple(dict.fromkeys(kind for kind, _ in PATTERNS))

RECENT = 600.0
"""Seconds of events the Snapshot carries (policies look at the last 5-10 minutes)."""
RECENT_MAX = 2000
"""Events kept at most (a flood of one kind must not grow the Snapshot)."""


def classify(text: str) -> tuple[str, str] | None:
    """(kind, device or "") for a line wg-tuner cares about, else None."""
    for kind, pattern in PATTERNS:
        m = pattern.search(text)
        if m:
            return kind, (m.groupdict().get("dev") or "")
    return None


class LogWatch:
    """Keeps the recent classified events and the counts since it started."""

    def __init__(self, source: Kmsg | None = None) -> None:
        self.source = source if source is not None else Kmsg(lookback=RECENT)
        self.recent: deque[LogEvent] = deque(maxlen=RECENT_MAX)
        self.counts: Counter[str] = Counter()

    def feed(self, records: Iterable[KmsgRecord]) -> None:
        for rec in records:
            hit = classify(rec.text)
            if hit is not None:
                self.recent.append(LogEvent(hit[0], hit[1], rec.monotonic))
                self.counts[hit[0]] += 1

    def poll(self, now: float) -> tuple[tuple[LogEvent, ...], dict[str, int]]:
        self.feed(self.source.read())
        while self.recent and self.recent[0].at < now - RECENT:
            self.recent.popleft()
        return tuple(self.recent), dict(self.counts)

    @property
    def available(self) -> bool:
        return self.source.available
