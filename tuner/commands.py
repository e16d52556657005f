"""What each ``wg-tuner`` command does: build the real adapters, run one use case, print.

``tuner.cli`` parses the command line and imports this module only once a command is
chosen. Every command acts on the network namespace it runs in.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from tuner import exit_codes
from tuner.actuators import registry
from tuner.actuators.persist import Persistence
from tuner.adapters.nft import Nft
from tuner.engine.apply import EXIT_REVERT_FAILED, run_apply, run_plan
from tuner.engine.daemon import Daemon
from tuner.engine.executor import Executor, VerifySettings
from tuner.engine.guard import Guards, ignore_hangup, run_guard
from tuner.engine.health import Health
from tuner.engine.planning import Planner
from tuner.errors import NotRoot, PortBusy, UsageError
from tuner.exporters import report
from tuner.exporters.controller_metrics import (
    ControllerCollector,
    ControllerState,
    LiveSnapshotCollector,
)
from tuner.exporters.metrics import (
    render,
    write_textfile,
)
from tuner.exporters.serve import Rendered, serve
from tuner.exporters.snapshot_json import snapshot_to_data
from tuner.exporters.status import render_text
from tuner.hardening import no_core_dumps
from tuner.journal.journal import FREEZE_CLEARED, OPEN_STATES, Cause, Journal, fold
from tuner.journal.lock import StateLock
from tuner.journal.lock import stuck as lock_stuck
from tuner.model.kinds import typed
from tuner.model.probe_schedule import ProbeSchedule
from tuner.model.rates import rates
from tuner.observe.collector import Observer
from tuner.observe.offload_history import FILE as OFFLOAD_FILE
from tuner.observe.offload_history import OffloadHistory
from tuner.observe.probes import PathProber, ProbeMemory, ProbeSettings
from tuner.policy import loader as policy_loader

EXIT_OK = exit_codes.OK
EXIT_ERROR = exit_codes.ERROR
EXIT_CHANGES = exit_codes.CHANGES

log = structlog.get_logger("tuner.commands")


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise NotRoot(
            f"{what} needs root (CAP_NET_ADMIN): it reads WireGuard config sockets and netlink; "
            "run it with sudo"
        )


def _observer(args: argparse.Namespace | None = None, *, remember: bool = False) -> Observer:
    """The live host's observer; with ``args``, reading the offload memory of its state
    directory, which only a run that changes things (``remember``: apply, run) writes."""
    history = OffloadHistory(args.state_dir / OFFLOAD_FILE, write=remember) if args else None
    return Observer(nft=Nft(), offload_history=history)


def _prober(args: argparse.Namespace) -> PathProber:
    memory_path: Path | None = args.state_dir / "probes.json"
    try:
        args.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        memory_path = None  # an unwritable state dir: probe without memory
    default = ProbeSettings()
    timeout = getattr(args, "probe_timeout", default.timeout)
    # The search's time is ten reply timeouts (5 s at the default 0.5 s): a longer
    # timeout on a lossy path must not leave it fewer rounds and an inexact answer.
    budget = max(default.budget, default.budget / default.timeout * timeout)
    return PathProber(ProbeSettings(timeout=timeout, budget=budget), ProbeMemory(memory_path))


def _json(data: object) -> str:
    """Indented for a terminal; compact otherwise, where json's C encoder runs (an indent
    forces the pure-Python one: 0.6 s of a 10,000-peer ``status --format json``)."""
    return json.dumps(data, sort_keys=True, indent=2 if sys.stdout.isatty() else None)


def cmd_status(args: argparse.Namespace) -> int:
    require_root("wg-tuner status")
    observer = _observer(args)
    only = tuple(args.interface or ())
    first = observer.observe(only)
    rate = None
    snapshot = first
    if args.sample > 0 and first.interfaces:
        time.sleep(args.sample)
        snapshot = observer.observe(only)
        rate = rates(first, snapshot)
    if args.probe:
        snapshot = _prober(args).probe(
            snapshot, [(i.name, p.public_key) for i in snapshot.interfaces for p in i.peers]
        )
    if args.format == "json":
        sys.stdout.write(_json(snapshot_to_data(snapshot, rate)) + "\n")
    else:
        sys.stdout.write(render_text(snapshot, rate))
    return EXIT_ERROR if snapshot.errors else EXIT_OK


def cmd_metrics(args: argparse.Namespace) -> int:
    require_root("wg-tuner metrics")
    snapshot = _observer().observe()
    if args.textfile:
        write_textfile(
            snapshot, args.textfile, args.peer_metric_names, host_series=args.host_series
        )
        log.info("metrics.written", path=str(args.textfile))
    else:
        sys.stdout.write(render(snapshot, args.peer_metric_names, host_series=args.host_series))
    return EXIT_OK


def cmd_lab(args: argparse.Namespace) -> int:
    from tuner.lab.lab import Lab

    require_root("wg-tuner lab")
    lab = Lab(args.prefix, args.state_dir, getattr(args, "impl", None))
    if args.lab_cmd == "up":
        lab.up()
        print(
            f"lab {args.prefix} is up ({lab.impl} WireGuard): hosts {lab.topo.a.netns} and "
            f"{lab.topo.b.netns}, router {lab.topo.router}"
        )
        print(f"try: ip netns exec {lab.topo.a.netns} wg-tuner status")
    elif args.lab_cmd == "down":
        print(f"lab {args.prefix} removed" if lab.down() else f"lab {args.prefix} is not up")
    elif args.lab_cmd == "status":
        data = lab.status()
        if args.format == "json":
            print(json.dumps(data, indent=2, sort_keys=True))
        else:
            _print_lab_status(data)
    elif args.lab_cmd == "fault":
        params: dict[str, object] = {}
        if args.state == "on":
            if args.name == "mtu-blackhole" and args.mtu is not None:
                params["mtu"] = args.mtu
            if args.name == "nat-timeout" and args.timeout is not None:
                params["timeout"] = args.timeout
            if args.name == "loss":
                if args.percent is not None:
                    params["percent"] = args.percent
                if args.delay_ms is not None:
                    params["delay_ms"] = args.delay_ms
        applied = lab.fault(args.name, args.state == "on", **params)
        shown = {k: v for k, v in applied.items() if k != "saved"}
        print(f"fault {args.name} {args.state}" + (f" {json.dumps(shown)}" if shown else ""))
    elif args.lab_cmd == "traffic":
        result = lab.traffic(args.seconds, args.sender)
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK if result["ok"] else EXIT_ERROR
    return EXIT_OK


def _print_lab_status(data: dict[str, Any]) -> None:
    if not data.get("up"):
        print(f"lab {data['prefix']} is not up")
        return
    print(f"lab {data['prefix']} ({data.get('impl', 'userspace')} WireGuard)")
    namespaces = data["namespaces"]
    for ns, exists in namespaces.items():
        print(f"  netns {ns}: {'present' if exists else 'MISSING'}")
    processes = data["processes"]
    for proc in processes:
        print(
            f"  {proc['what']} {proc['match']} pid {proc['pid']}: "
            f"{'running' if proc['alive'] else 'NOT RUNNING'}"
        )
    hosts = data["hosts"]
    for role, host in hosts.items():
        hs = host.get("latest_handshake")
        age = f"{time.time() - hs:.0f}s ago" if hs else "never"
        print(
            f"  host {role}: {host['interface']} {host['tunnel_address']} handshake {age}"
            + (f" error {host['error']}" if "error" in host else "")
        )
    faults = data["faults"]
    print("  faults: " + (", ".join(faults) if faults else "none"))


def cmd_validate(args: argparse.Namespace) -> int:
    paths = list(args.paths) or [args.policies]
    policies, issues = policy_loader.load(paths)
    for issue in issues:
        print(issue)
    if issues:
        print(f"{len(issues)} error(s); nothing was loaded", file=sys.stderr)
        return EXIT_ERROR
    print(f"{len(policies)} policies valid: " + ", ".join(p.name for p in policies))
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    policies = policy_loader.load_or_raise([args.policies])
    require_root("wg-tuner plan")
    # The same journal, state directory and parts as apply; no journal record, no lock.
    journal = Journal(args.state_dir)
    executor, planner = _one_shot_parts(args, journal, guarded=False)
    result = run_plan(
        planner=planner,
        executor=executor,
        journal=journal,
        policies=policies,
        state_dir=args.state_dir,
        sample=args.sample,
    )
    render = {"json": report.render_json, "markdown": report.render_markdown}.get(
        args.format, report.render_text
    )
    sys.stdout.write(render(result.plan, result.notes, result.preview))
    log.info(
        "plan.done",
        findings=len(result.plan.findings),
        changes=len(result.plan.changes),
        admitted=len(result.plan.admitted),
        recover=len(result.preview.recover),
    )
    if args.detailed_exitcode and result.changed:
        return EXIT_CHANGES
    return EXIT_OK


def _one_shot_parts(
    args: argparse.Namespace, journal: Journal, *, guarded: bool
) -> tuple[Executor, Planner]:
    """What plan and apply decide with: the same executor (its recovery and drift reads)
    and the same planner over the same actuators, so their decisions can only agree."""
    executor = _executor(args, journal, guarded=guarded)
    planner = Planner(
        executor.observer, _prober(args), dict(executor.actuators), schedule=_one_shot(args)
    )
    return executor, planner


def _one_shot(args: argparse.Namespace) -> ProbeSchedule:
    """A one-shot run wants fresh evidence: probe now, oldest-probed first, bounded."""
    return ProbeSchedule(sweep_interval=0.0, min_interval=0.0, max_per_cycle=args.probe_max)


STALL_SECONDS = 15.0


def _executor(args: argparse.Namespace, journal: Journal, *, guarded: bool = False) -> Executor:
    """The executor of every command; ``guarded`` (apply, run) arms a revert guard that
    outlives this process for every batch it applies."""
    observer = _observer(args, remember=guarded)
    actuators = registry.build()
    # A pause between two verification steps longer than this means wg-tuner was not
    # watching (stopped, starved): the daemon steps once per interval, apply every second.
    max_gap = max(STALL_SECONDS, 3 * getattr(args, "interval", 1.0))
    settings = VerifySettings(
        settle=getattr(args, "settle", None),
        window=getattr(args, "verify_window", None),
        grace=getattr(args, "grace", VerifySettings().grace),
        max_gap=max_gap,
    )
    return Executor(
        journal,
        actuators,
        observer,
        Health(observer, _prober(args), actuators),
        settings,
        # Verified changes of persist: true policies are written through; reverts and
        # rollbacks (guard, rollback) undo what was written.
        persistence=Persistence(getattr(args, "config_root", Path("/"))),
        guards=Guards(args.state_dir) if guarded else None,
    )


def _print_outcomes(title: str, outcomes: list[dict[str, object]]) -> None:
    lines: list[str] = []
    _outcome_lines(lines, title, outcomes)
    for line in lines:
        print(line)


def _outcome_lines(lines: list[str], title: str, outcomes: list[dict[str, object]]) -> None:
    if not outcomes:
        return
    lines.append(f"{title}:")
    for o in outcomes:
        verification = o.get("verification")
        checks = ""
        if isinstance(verification, dict) and verification.get("checks"):
            checks = "; checks: " + ", ".join(
                f"{c['name']}={'ok' if c['passed'] else 'FAIL'}" for c in verification["checks"]
            )
        reason = f" ({o['reason']})" if o.get("reason") else ""
        lines.append(
            f"  [{o['id']}] {o['policy']}: {o['kind']} {o['target']} {o['before']} -> "
            f"{o['after']}: {o['status']}{reason}{checks}"
        )


def _apply_signals(executor: Executor) -> dict[str, int]:
    """A one-shot apply outlives the session that started it: SIGHUP (a dropped SSH
    session) is logged and verification goes on; SIGTERM and SIGINT ask it to revert
    what it left unverified and end. Returns the signal that asked, once one has."""
    asked: dict[str, int] = {}

    def hangup(signum: int, frame: FrameType | None) -> None:
        log.warning("apply.hangup", action="verification continues")

    def stop(signum: int, frame: FrameType | None) -> None:
        log.warning("apply.stopping", signal=signal.Signals(signum).name)
        asked.setdefault("signal", signum)
        executor.stop.set()

    signal.signal(signal.SIGHUP, hangup)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return asked


def _emit(text: str) -> None:
    """Write a result; a closed stdout (SIGPIPE, a dropped session) loses the text, never
    the outcome or the exit code."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's exit flush succeeds
        os.close(devnull)


def cmd_apply(args: argparse.Namespace) -> int:
    policies = policy_loader.load_or_raise([args.policies])
    require_root("wg-tuner apply")
    with StateLock(args.state_dir, wait=args.lock_wait) as lock:
        journal = Journal(args.state_dir)
        executor, planner = _one_shot_parts(args, journal, guarded=True)
        executor.on_progress = lock.beat
        asked = _apply_signals(executor)
        result = run_apply(
            planner=planner,
            executor=executor,
            journal=journal,
            policies=policies,
            state_dir=args.state_dir,
            sample=args.sample,
        )
    data = result.data()
    if args.format == "json":
        _emit(json.dumps(data, indent=2, sort_keys=True) + "\n")
    else:
        lines: list[str] = []
        _outcome_lines(lines, "recovered (reverted after an interrupted run)", data["recovered"])
        _outcome_lines(lines, "changes", data["changes"])
        _outcome_lines(lines, "rolled back", data["rolled_back"])
        if not data["changes"] and not data["recovered"]:
            lines.append("nothing to change")
        _emit("".join(f"{line}\n" for line in lines))
    code = 128 + asked["signal"] if "signal" in asked else result.exit_code
    log.info(
        "apply.done",
        changed=result.changed,
        exit_code=code,
        rolled_back=len(result.rolled_back),
        recovered=len(result.recovered),
    )
    return code


def cmd_guard(args: argparse.Namespace) -> int:
    """The revert guard (started by apply and run, never by hand): see engine/guard.py."""
    ignore_hangup()
    journal = Journal(args.state_dir)
    # Built before the wait, so the deadline's work is the revert alone (under load or
    # emulation, building the actuators can take seconds).
    executor = _executor(args, journal)

    def open_members() -> int:
        states = fold(journal.read().records).values()
        return sum(1 for c in states if c.batch == args.batch and c.state in OPEN_STATES)

    def revert_open() -> int:
        mine = [c for c in executor.unverified() if c.batch == args.batch]
        why = "reverted by the revert guard: not verified by its deadline"
        failed = [
            o
            for c in mine
            if (o := executor.revert_state(c, Cause.DEADLINE, why)).status == "revert_failed"
        ]
        return len(mine) - len(failed)

    def locked_revert() -> int:
        with StateLock(args.state_dir, wait=0):
            return revert_open()

    result = run_guard(
        batch=args.batch,
        deadline=args.deadline,
        wait=args.wait,
        open_members=open_members,
        locked_revert=locked_revert,
        holder_stuck=lambda: lock_stuck(args.state_dir),
        unlocked_revert=revert_open,
    )
    log.info("guard.done", batch=args.batch, reverted=result.reverted)
    return EXIT_OK


def cmd_rollback(args: argparse.Namespace) -> int:
    require_root("wg-tuner rollback")
    with StateLock(args.state_dir, wait=args.lock_wait):
        journal = Journal(args.state_dir)
        executor = _executor(args, journal)
        recovered = executor.recover()
        if args.clear_freeze:
            journal.append(
                FREEZE_CLEARED, "freeze", reason="cleared by operator", code=Cause.OPERATOR
            )
            print("freeze cleared")
        outcomes = executor.rollback(change=args.id, last=args.last, everything=args.all)
    data = [o.data() for o in recovered + outcomes]
    if args.format == "json":
        out = {"schema": "wg-tuner/rollback", "schemaVersion": 2, "rolled_back": data}
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        _print_outcomes("rolled back", data)
        if not data and not args.clear_freeze:
            print("nothing to roll back")
    failed = any(o["status"] == "revert_failed" for o in data)
    return EXIT_REVERT_FAILED if failed else EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    result = Journal(args.state_dir).read()
    rows = [
        {
            "seq": r.seq,
            "ts": r.ts,
            "state": r.state,
            "change": r.change,
            "policy": r.policy,
            "target": str(r.target) if r.target else None,
            "prior": typed(r.target.kind, r.prior) if r.target else r.prior,
            "desired": typed(r.target.kind, r.desired) if r.target else r.desired,
            "reason": r.reason or None,
            "code": r.code.value or None,
        }
        for r in result.records
    ]
    if args.format == "json":
        out = {
            "schema": "wg-tuner/history",
            "schemaVersion": 2,
            "records": rows,
            "skipped_lines": list(result.skipped),
        }
        print(json.dumps(out, indent=2))
        return EXIT_OK
    for r in rows:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(str(r["ts"]))))
        print(
            f"{stamp}  {r['state']:<14} {r['change']:<22} {r['policy'] or '-':<18} "
            f"{r['target'] or '-'}  {r['prior']} -> {r['desired']}"
            + (f"  ({r['reason']})" if r["reason"] else "")
        )
    if result.skipped:
        print(f"skipped torn or corrupt lines: {list(result.skipped)}", file=sys.stderr)
    if not rows:
        print("the journal is empty")
    return EXIT_OK


def _listen(value: str) -> tuple[str, int] | None:
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--metrics-listen {value!r}: expected [ADDR:]PORT")
    return host, int(port)


def cmd_run(args: argparse.Namespace) -> int:
    policies = policy_loader.load_or_raise([args.policies])
    require_root("wg-tuner run")
    no_core_dumps()  # before the first read of a private key
    listen = _listen(args.metrics_listen)
    with StateLock(args.state_dir, wait=args.lock_wait, beat=args.interval) as lock:
        journal = Journal(args.state_dir)
        executor = _executor(args, journal, guarded=True)
        planner = Planner(
            executor.observer,
            _prober(args),
            dict(executor.actuators),
            schedule=ProbeSchedule(sweep_interval=args.probe_sweep),
        )
        state = ControllerState()
        registry_ = CollectorRegistry(auto_describe=False)
        registry_.register(
            LiveSnapshotCollector(
                state,
                args.peer_metric_names,
                args.peer_series_limit,
                host_series=args.host_series,
            )
        )
        registry_.register(ControllerCollector(state))
        rendered = Rendered()
        rendered.update(registry_)  # the controller's series before the first cycle
        if listen is not None:
            try:
                serve(listen[0], listen[1], rendered)
            except OSError as exc:
                raise PortBusy(
                    f"cannot serve metrics on {listen[0]}:{listen[1]}: {exc.strerror} "
                    "(another exporter there? choose one with --metrics-listen)"
                ) from None
            log.info("metrics.listening", address=listen[0], port=listen[1])

        def after_cycle(s: ControllerState) -> None:
            if listen is None and not args.textfile:
                return  # nobody reads the metrics: rendering 50,000 peers would be waste
            try:  # once per cycle: scrapes and the textfile share it
                rendered.update(registry_, args.textfile)
            except OSError as exc:
                log.warning("metrics.textfile_failed", error=str(exc))

        daemon = Daemon(
            planner,
            executor,
            journal,
            lambda: policy_loader.load_or_raise([args.policies]),
            args.state_dir,
            interval=args.interval,
            enforce=args.mode == "enforce",
            state=state,
            on_cycle=after_cycle,
            on_progress=lock.beat,
        )
        daemon.install_signals()
        return daemon.run(policies)
