"""The journal's share of a cycle, empty and after a year of one change a minute.

A year is written the way the daemon writes it (``Journal.append`` for intended, applied
and verified, ``compact_if_due`` after each change; fsync off to keep the run short).
Then the journal work of one daemon cycle (read, pending, the guards' context) is timed
on that journal and on an empty one: warm (the daemon's Journal object, served from
memory while unchanged) and cold (a fresh Journal object: a first read, as apply does).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from tuner.engine.planning import decision_context
from tuner.journal.journal import APPLIED, INTENDED, OPEN_STATES, VERIFIED, Journal, fold
from tuner.model.target import Target

KEYS = [f"net.core.k{i}" for i in range(8)]
MINUTES_A_YEAR = 365 * 24 * 60


def write_year(state: Path, minutes: int) -> tuple[float, int, int]:
    """Write ``minutes`` changes; (seconds, compactions, the largest the file got)."""
    clock = [0.0]
    journal = Journal(state, clock=lambda: clock[0], fsync=lambda fd: None)
    began = time.perf_counter()
    compactions = peak = 0
    for n in range(minutes):
        clock[0] = n * 60.0
        kw = {
            "policy": f"p{n % 3}",
            "target": Target("sysctl", KEYS[n % len(KEYS)]),
            "prior": str(n),
            "desired": str(n + 1),
            "batch": f"{n:08x}",
        }
        for state_ in (INTENDED, APPLIED, VERIFIED):
            journal.append(state_, f"c-{n:010x}.{n:08x}", **kw)
        if journal.compact_if_due():
            compactions += 1
        elif n % 97 == 0:
            peak = max(peak, journal.path.stat().st_size)
    seconds = time.perf_counter() - began
    journal.compact()  # measure both ages at the same point of the compaction cycle
    return seconds, compactions, peak


def cycle_cost(state: Path, now: float, repeat: int, *, warm: bool) -> float:
    journal = Journal(state)
    samples = []
    for _ in range(repeat):
        if not warm:
            journal = Journal(state)
        t0 = time.perf_counter()
        records = journal.read().records
        pending = [c for c in fold(records).values() if c.state in OPEN_STATES]
        decision_context(records, [], now, state)
        samples.append((time.perf_counter() - t0) * 1000)
        if pending:
            raise SystemExit("the benchmark journal has open changes")
    return round(statistics.median(samples), 3)


def run(minutes: int = MINUTES_A_YEAR, repeat: int = 51) -> dict[str, float]:
    out: dict[str, float] = {"minutes": minutes}
    with tempfile.TemporaryDirectory() as empty_dir:
        empty = Path(empty_dir)
        out["empty_warm_ms"] = cycle_cost(empty, 0.0, repeat, warm=True)
        out["empty_cold_ms"] = cycle_cost(empty, 0.0, repeat, warm=False)
    for name, length in (("day", 24 * 60), ("year", minutes)):
        with tempfile.TemporaryDirectory() as folder:
            state = Path(folder)
            seconds, compactions, peak = write_year(state, length)
            now = length * 60.0
            out[f"{name}_write_seconds"] = round(seconds, 1)
            out[f"{name}_compactions"] = compactions
            out[f"{name}_bytes"] = (state / "journal.jsonl").stat().st_size
            out[f"{name}_peak_bytes"] = peak
            out[f"{name}_records"] = len(Journal(state).read().records)
            out[f"{name}_warm_ms"] = cycle_cost(state, now, repeat, warm=True)
            out[f"{name}_cold_ms"] = cycle_cost(state, now, repeat, warm=False)
    return out


def render(r: dict[str, float]) -> list[str]:
    def row(name: str, label: str) -> str:
        return (
            f"| {label} | {r[f'{name}_bytes'] / 1024:.0f} KiB | "
            f"{r[f'{name}_peak_bytes'] / 1024:.0f} KiB | {int(r[f'{name}_records']):,} | "
            f"{r[f'{name}_warm_ms']} | {r[f'{name}_cold_ms']} |"
        )

    return [
        "## The journal after a year",
        "",
        f"{int(r['minutes']):,} changes, one a minute (a year), over 8 sysctls, each journaled",
        "as intended, applied and verified by `Journal.append`, with the daemon's compaction",
        f"every 2,000 appends ({int(r['year_compactions'])} compactions;",
        f"{r['year_write_seconds']} s to write with fsync off). Timed: the cycle's journal",
        "work (read, the pending changes, the guards' context). Warm: the daemon's Journal",
        "object, served from memory while the file is unchanged. Cold: a fresh one (a first",
        "read, as `apply` does). Both ages are measured right after a compaction; the peak",
        "is the largest the file got between compactions. Goal: a year's journal costs and",
        "weighs what a day's does (within 10 %): what compaction keeps does not grow with",
        "age.",
        "",
        "| journal | size | peak | records | warm (ms) | cold (ms) |",
        "|---|---:|---:|---:|---:|---:|",
        f"| empty | 0 KiB | 0 KiB | 0 | {r['empty_warm_ms']} | {r['empty_cold_ms']} |",
        row("day", "after a day"),
        row("year", "after a year"),
    ]


if __name__ == "__main__":
    print("\n".join(render(run())))
