"""Inside a namespace: set values as wg-tuner would (journaled as verified), or run one
drift detection pass over them (``ip netns exec NS python -m tests.helpers.drift ...``).

``own STATE KIND NAME VALUE [--peer KEY]`` prints {"value": ...};
``detect STATE`` prints the drift outcomes as JSON.
"""

from __future__ import annotations

import argparse
import json
import secrets
from pathlib import Path

from tuner.actuators.base import Target
from tuner.actuators.registry import build
from tuner.engine.executor import Executor
from tuner.exporters import logs
from tuner.journal.journal import APPLIED, INTENDED, VERIFIED, Journal


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("op", choices=("own", "detect"))
    parser.add_argument("state")
    parser.add_argument("rest", nargs="*")
    parser.add_argument("--peer", default="")
    args = parser.parse_args()
    logs.configure("json")  # log lines to stderr: stdout carries only the result
    journal = Journal(Path(args.state))
    actuators = build()
    if args.op == "own":
        kind, name, value = args.rest
        target = Target(kind, name, args.peer)
        actuator = actuators[kind]
        prior = actuator.read(target)
        change = f"{kind}-{secrets.token_hex(3)}"
        common = {"policy": "drift-test", "target": target, "prior": prior, "desired": value}
        journal.append(INTENDED, change, **common)
        actuator.apply(target, value)
        journal.append(APPLIED, change, **common)
        journal.append(VERIFIED, change, **common)
        print(json.dumps({"value": actuator.read(target), "prior": prior}))
        return 0
    executor = Executor(journal, actuators, None, None)  # type: ignore[arg-type]
    print(json.dumps([o.data() for o in executor.detect_drift()]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
