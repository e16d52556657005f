"""Drive one real actuator from inside a namespace (``ip netns exec NS python -m ...``).

Prints JSON: {"value": ..., "changed": ..., "check": ...} or {"error": type, "message": ...}.
"""

from __future__ import annotations

import argparse
import json

from tuner.actuators.base import Actuator, Target
from tuner.actuators.mss import MssClampActuator
from tuner.actuators.mss_iptables import IptablesMss
from tuner.actuators.registry import build
from tuner.errors import TunerError


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind")
    parser.add_argument("name")
    parser.add_argument("op", choices=("read", "apply", "revert", "check"))
    parser.add_argument("value", nargs="?")
    parser.add_argument("--peer", default="")
    parser.add_argument("--absent", action="store_true", help="value is None")
    parser.add_argument("--iptables", action="store_true", help="MSS through the fallback")
    args = parser.parse_args()
    actuator: Actuator = MssClampActuator(IptablesMss()) if args.iptables else build()[args.kind]
    target = Target(args.kind, args.name, args.peer)
    value = None if args.absent else args.value
    out: dict[str, object] = {}
    try:
        if args.op == "apply":
            out["changed"] = actuator.apply(target, value)
        elif args.op == "revert":
            actuator.revert(target, value)
        elif args.op == "check":
            out["check"] = actuator.check(target)
        if args.op != "check":
            out["value"] = actuator.read(target)
    except TunerError as exc:
        out = {"error": type(exc).__name__, "message": str(exc)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
