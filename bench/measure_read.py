"""Run inside a namespace: time reading one interface, against `wg show IF dump`.

Prints one JSON object. Timings are medians over --repeat runs, in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import time
from collections.abc import Callable

from tuner.adapters.uapi import UapiClient, parse_get
from tuner.exporters import logs
from tuner.observe.collector import Observer
from tuner.observe.paths import HostPaths


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(samples), 1)


def cycle_cost(observer: Observer, repeat: int) -> dict[str, float]:
    """A daemon cycle with the shipped policies and nothing due (probes excluded)."""
    import resource
    import tempfile
    from pathlib import Path

    from tuner.actuators.registry import build
    from tuner.engine.daemon import Daemon
    from tuner.engine.executor import Executor
    from tuner.engine.health import Health
    from tuner.engine.planning import Planner
    from tuner.journal.journal import Journal
    from tuner.observe.probes import PathProber
    from tuner.policy.loader import load_or_raise

    repo = Path(__file__).resolve().parent.parent
    policies = load_or_raise([repo / "policies"])
    state = Path(tempfile.mkdtemp(prefix="wg-tuner-bench-"))
    journal = Journal(state)
    actuators = build()
    executor = Executor(journal, actuators, observer, Health(observer, PathProber(), actuators))
    daemon = Daemon(Planner(observer, None, actuators), executor, journal, lambda: policies, state)
    daemon.cycle(policies)  # warm: history needs a previous snapshot for rates
    cost = median_ms(lambda: daemon.cycle(policies), repeat)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"cycle_ms": cost, "rss_mb": round(rss_kb / 1024, 1)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("ifname")
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    logs.configure("json", level=logging.WARNING)  # stdout carries only the result
    paths = HostPaths()
    client = UapiClient(paths.wg_socket_dir, timeout=30)
    observer = Observer(paths=paths, uapi=client)
    raw = client._request(args.ifname, b"get=1\n\n")
    text = raw.decode("ascii")
    peers = len(parse_get(args.ifname, text).peers)
    result = {
        "peers": peers,
        "reply_bytes": len(raw),
        "wg_show_dump_ms": median_ms(
            lambda: subprocess.run(
                ["wg", "show", args.ifname, "dump"], capture_output=True, check=True
            ),
            args.repeat,
        ),
        "socket_only_ms": median_ms(
            lambda: client._request(args.ifname, b"get=1\n\n"), args.repeat
        ),
        "parse_only_ms": median_ms(lambda: parse_get(args.ifname, text), args.repeat),
        "interface_read_ms": median_ms(lambda: client.get(args.ifname), args.repeat),
        "snapshot_ms": median_ms(lambda: observer.observe((args.ifname,)), args.repeat),
    }
    result.update(cycle_cost(observer, args.repeat))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
