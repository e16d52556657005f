"""The ``wg-tuner`` command line: the parser and the entry point.

The commands themselves are in ``tuner.commands``, imported only once one is chosen, so
``--version``, ``--help`` and a usage error never pay for pyroute2, prometheus_client
or the engine. Results go to stdout, logs to stderr. Every command acts on the network
namespace it runs in (``ip netns exec NS wg-tuner ...``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from tuner import __version__, exit_codes
from tuner.errors import TunerError
from tuner.exporters.naming import PEER_NAMES, PWE
from tuner.terminal import EscapingStream, escape_controls

DEFAULT_STATE_DIR = "/var/lib/wg-tuner"
LAB_FAULTS = ("mtu-blackhole", "nat-timeout", "loss", "down", "bad-gro")
SYSTEM_POLICIES = Path("/etc/wg-tuner/policies")
DEFAULT_METRICS = "127.0.0.1:10586"
"""Not 9586: both WireGuard exporters listen there, and wg-tuner runs beside them. The
exporters' allocated range (9100-9999) is full, so the default lies above it."""


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # On subcommands the defaults are suppressed so an option given before the
    # subcommand is not overwritten by the subcommand's default.
    default = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=default(Path(os.environ.get("WG_TUNER_STATE_DIR", DEFAULT_STATE_DIR))),
        help=f"state directory (env WG_TUNER_STATE_DIR; default {DEFAULT_STATE_DIR})",
    )
    parser.add_argument(
        "--policies",
        type=Path,
        default=default(None),
        metavar="DIR",
        help="policy directory (env WG_TUNER_POLICIES; default /etc/wg-tuner/policies "
        "when it exists, else the bundled policies/)",
    )
    parser.add_argument(
        "--config-root",
        type=Path,
        default=default(Path("/")),
        metavar="DIR",
        help="root of the /etc/wireguard and /etc/sysctl.d that persist: true writes "
        "verified changes into (default /; an image build or a test gives another)",
    )
    parser.add_argument(
        "--log-format",
        choices=("json", "console"),
        default=default(None),
        help="log format on stderr (default: console on a terminal, JSON lines otherwise)",
    )


def _apply_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--verify-window",
        type=float,
        metavar="SECONDS",
        help="verification window (default: each policy's)",
    )
    p.add_argument(
        "--settle",
        type=float,
        metavar="SECONDS",
        help="wait this long after a change before checking (default: policy's)",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="a check must fail this long in a row to fail (default 20)",
    )
    p.add_argument(
        "--lock-wait",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="wait this long for another wg-tuner to finish (default 10)",
    )
    p.add_argument(
        "--probe-timeout",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="wait this long for each probe reply (default 0.5)",
    )


class Parser(argparse.ArgumentParser):
    """argparse with usage errors on EX_USAGE (64): 2 means "changes proposed"."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(exit_codes.USAGE, f"{self.prog}: error: {message}\n")


def metric_names(parser: argparse.ArgumentParser) -> None:
    """``--peer-metric-names`` and ``--host-series``, for every command that writes metrics."""
    parser.add_argument(
        "--peer-metric-names",
        choices=PEER_NAMES,
        default=PWE,
        help="per-peer series named as prometheus_wireguard_exporter does (default; the "
        "shipped rules and dashboard use them), as wireguard_exporter does (device label, "
        "_info series), or both",
    )
    parser.add_argument(
        "--host-series",
        action="store_true",
        help="also export the host counters node_exporter has under its own names (CPU, "
        "softnet, link counters, conntrack, interrupts, its default netstat fields): for "
        "hosts without node_exporter; the shipped rules and dashboard use node_exporter's",
    )


def build_parser() -> argparse.ArgumentParser:  # noqa: PLR0915 - one flat list of options
    parser = Parser(
        prog="wg-tuner",
        description="Auto-tuning remediation controller for WireGuard hosts.",
        epilog=exit_codes.help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"wg-tuner {__version__}")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=exit_codes.help_text(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _common(p, top=False)
        p.set_defaults(func=f"cmd_{name}")  # in tuner.commands, imported once chosen
        return p

    status = add("status", "show WireGuard interfaces, peers and host health")
    status.add_argument("--format", choices=("text", "json"), default="text")
    status.add_argument(
        "--interface", action="append", metavar="NAME", help="only this interface (repeatable)"
    )
    status.add_argument(
        "--sample",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="observe twice this far apart to show rates (0: once, no rates)",
    )
    status.add_argument(
        "--probe", action="store_true", help="also probe each peer's path MTU through the tunnel"
    )
    status.add_argument(
        "--probe-timeout",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="wait this long for each probe reply (default 0.5)",
    )

    metrics = add("metrics", "print Prometheus metrics or write a textfile")
    metric_names(metrics)
    metrics.add_argument(
        "--textfile",
        type=Path,
        metavar="PATH",
        help="write atomically to PATH (node_exporter textfile collector)",
    )

    validate = add("validate", "check policy files; every error as file:line:col")
    validate.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="policy files or directories (default: --policies)",
    )
    plan_cmd = add("plan", "show what would change and why (dry-run)")
    plan_cmd.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    plan_cmd.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 2 when changes are proposed (0: none, 1: error)",
    )
    plan_cmd.add_argument(
        "--sample",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="observe twice this far apart for rates (default 2)",
    )
    plan_cmd.add_argument(
        "--probe-max",
        type=int,
        default=64,
        metavar="N",
        help="probe at most N peers, least recently probed first (default 64)",
    )
    plan_cmd.add_argument(
        "--probe-timeout",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="wait this long for each probe reply (default 0.5)",
    )
    apply_cmd = add("apply", "apply guarded changes once, verify, roll back")
    apply_cmd.add_argument("--format", choices=("text", "json"), default="text")
    _apply_options(apply_cmd)
    apply_cmd.add_argument(
        "--sample",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="observe twice this far apart for rates (default 2)",
    )
    apply_cmd.add_argument(
        "--probe-max",
        type=int,
        default=64,
        metavar="N",
        help="probe at most N peers per round (default 64)",
    )
    run = add("run", "reconcile continuously (daemon)")
    run.add_argument(
        "--peer-series-limit",
        type=int,
        default=0,
        metavar="N",
        help="per-peer series only for the N peers that moved the most bytes and for "
        "peers with findings (for hosts with 10,000+ peers; default 0: every peer)",
    )
    metric_names(run)
    run.add_argument(
        "--interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds between cycles (default 10)",
    )
    run.add_argument(
        "--mode",
        choices=("observe", "enforce"),
        default="observe",
        help="observe only reports; enforce applies (default observe)",
    )
    run.add_argument(
        "--metrics-listen",
        default=DEFAULT_METRICS,
        metavar="[ADDR:]PORT",
        help=f"Prometheus endpoint (default {DEFAULT_METRICS}; '' to disable)",
    )
    run.add_argument(
        "--textfile",
        type=Path,
        metavar="PATH",
        help="also write metrics atomically for node_exporter",
    )
    run.add_argument(
        "--probe-sweep",
        type=float,
        default=900.0,
        metavar="SECONDS",
        help="probe each quiet peer this often (default 900)",
    )
    _apply_options(run)
    rollback = add("rollback", "undo changes wg-tuner made")
    which = rollback.add_mutually_exclusive_group()
    which.add_argument("--last", action="store_true", help="the last verified batch")
    which.add_argument("--id", metavar="ID", help="one change (its id or a prefix)")
    which.add_argument(
        "--all",
        action="store_true",
        help="every knob wg-tuner ever touched, back to its original value",
    )
    rollback.add_argument(
        "--clear-freeze", action="store_true", help="lift the freeze a failed revert put in place"
    )
    rollback.add_argument("--format", choices=("text", "json"), default="text")
    _apply_options(rollback)
    guard = add("guard", "internal: the revert guard that apply and run start (not run by hand)")
    guard.add_argument("--batch", required=True, help="the batch whose deadline this guards")
    guard.add_argument("--deadline", type=float, required=True, help="Unix time to act at")
    guard.add_argument("--wait", action="store_true", help="sleep until the deadline first")
    history = add("history", "show the change journal")
    history.add_argument("--format", choices=("text", "json"), default="text")

    lab = add("lab", "build and drive the WireGuard test lab (namespaces)")
    lab_sub = lab.add_subparsers(dest="lab_cmd", metavar="LAB_COMMAND", required=True)

    def add_lab(name: str, help_text: str) -> argparse.ArgumentParser:
        p = lab_sub.add_parser(name, help=help_text, description=help_text)
        _common(p, top=False)
        p.add_argument("--prefix", default="wgt", help="name prefix of the lab (default wgt)")
        return p

    lab_up = add_lab("up", "build the lab")
    lab_up.add_argument(
        "--impl",
        choices=("kernel", "userspace"),
        help="WireGuard implementation (default: kernel where the running kernel can load "
        "the module, else wireguard-go)",
    )
    add_lab("down", "remove exactly what 'lab up' made")
    lab_status = add_lab("status", "show the lab")
    lab_status.add_argument("--format", choices=("text", "json"), default="text")
    fault = add_lab("fault", "switch a fault on or off")
    # Spelled out, not imported: tuner.lab.faults would cost every command's start
    # (tests/unit/test_cli.py checks the two lists agree).
    fault.add_argument("name", choices=LAB_FAULTS)
    fault.add_argument("state", choices=("on", "off"))
    fault.add_argument("--mtu", type=int, help="mtu-blackhole: path MTU (default 1400)")
    fault.add_argument("--timeout", type=int, help="nat-timeout: UDP timeout s (default 30)")
    fault.add_argument("--percent", type=float, help="loss: percent (default 5)")
    fault.add_argument("--delay-ms", type=int, help="loss: added delay (needs netem)")
    traffic = add_lab("traffic", "bulk TCP through the tunnel (iperf3)")
    traffic.add_argument("--seconds", type=float, default=3.0)
    traffic.add_argument("--from", dest="sender", choices=("a", "b"), default="a")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # --version, --help and usage errors end here
    from tuner import commands
    from tuner.exporters import logs

    logs.configure(args.log_format)
    if args.policies is None:
        args.policies = default_policies()
    terminal = sys.stdout
    sys.stdout = EscapingStream(terminal)
    try:
        result: int = getattr(commands, args.func)(args)
    except TunerError as exc:
        print(f"wg-tuner: error: {escape_controls(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("wg-tuner: interrupted", file=sys.stderr)
        return exit_codes.INTERRUPTED
    except BrokenPipeError:
        return exit_codes.OK
    finally:
        sys.stdout = terminal
    return result


def bundled_policies() -> Path:
    """The repository's policies/ (source checkout) or the installed data copy."""
    source = Path(__file__).resolve().parent.parent / "policies"
    if source.is_dir():
        return source
    return Path(sys.prefix) / "share" / "wg-tuner" / "policies"


def default_policies() -> Path:
    env = os.environ.get("WG_TUNER_POLICIES")
    if env:
        return Path(env)
    return SYSTEM_POLICIES if SYSTEM_POLICIES.is_dir() else bundled_policies()
