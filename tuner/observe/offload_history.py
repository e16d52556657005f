"""When each underlay NIC feature was seen turning on: the memory behind ``offload-errors``
("receive errors rose after a feature was turned on").

The kernel keeps no record of a feature change, so the observer remembers what it saw:
each ``DEV/feature``'s state and since when it has held it (wall clock: the first
snapshot that saw it so). A feature seen off and later on was turned on (by wg-tuner or
anyone) at most one snapshot before it was first seen on. A feature already on when
wg-tuner first looked has no known time and is never suspected.

The memory is a small JSON file (0600) in the state directory, so the one-shot runs of
``apply`` and the daemon share it; ``plan`` and ``status`` read it and never write it.
A missing, unreadable or corrupt file is an empty memory, never an error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from tuner.files import write_atomic

log = structlog.get_logger("tuner.observe.offload_history")

FILE = "offloads.json"
MAX_ENTRIES = 1024
"""Features remembered at most (those of devices gone the longest are forgotten first)."""


@dataclass(frozen=True, slots=True)
class Seen:
    state: str
    """``on`` or ``off``."""
    since: float | None
    """Wall-clock time it was first seen in this state; None: before wg-tuner looked."""


def _parse(data: object) -> dict[str, Seen]:
    out: dict[str, Seen] = {}
    features = data.get("features") if isinstance(data, dict) else None
    if not isinstance(features, dict):
        return out
    for key, entry in features.items():
        if not isinstance(key, str) or "/" not in key or not isinstance(entry, dict):
            continue
        state, since = entry.get("state"), entry.get("since")
        if state not in ("on", "off"):
            continue
        if since is not None and (isinstance(since, bool) or not isinstance(since, int | float)):
            continue
        out[key] = Seen(state, None if since is None else float(since))
    return out


class OffloadHistory:
    """``update`` folds one reading of the features into the memory and returns, for each
    feature now on whose turning on was seen, when that was."""

    def __init__(self, path: Path | None = None, *, write: bool = True) -> None:
        self.path = path
        self.write = write
        self.seen: dict[str, Seen] = {}
        self._loaded = False

    def _load(self) -> None:
        # Once per process: apply and the daemon hold the state lock, so no other writer
        # runs beside them, and plan never writes.
        self._loaded = True
        if self.path is None:
            return
        try:
            self.seen = _parse(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("offload_history.unreadable", path=str(self.path), error=str(exc))

    def _save(self) -> None:
        if self.path is None or not self.write:
            return
        body = {"features": {k: {"state": s.state, "since": s.since} for k, s in self.seen.items()}}
        try:
            write_atomic(self.path, json.dumps(body, sort_keys=True))
        except OSError as exc:
            log.warning("offload_history.unwritable", path=str(self.path), error=str(exc))

    def update(self, offloads: Mapping[str, str], now: float) -> dict[str, float]:
        if not self._loaded:
            self._load()
        changed = False
        for key, state in offloads.items():
            old = self.seen.get(key)
            if old is None:
                self.seen[key] = Seen(state, None)
                changed = True
            elif old.state != state:
                self.seen[key] = Seen(state, now)
                changed = True
        if len(self.seen) > MAX_ENTRIES:
            # Keep every feature just read, then the rest by most recent change.
            rest = sorted(
                (k for k in self.seen if k not in offloads),
                key=lambda k: self.seen[k].since or 0.0,
                reverse=True,
            )
            keep = set(offloads) | set(rest[: max(0, MAX_ENTRIES - len(offloads))])
            self.seen = {k: v for k, v in self.seen.items() if k in keep}
            changed = True
        if changed:
            self._save()
        return {
            key: seen.since
            for key, seen in self.seen.items()
            if key in offloads and seen.state == "on" and seen.since is not None
        }
