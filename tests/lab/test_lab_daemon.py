"""`wg-tuner run` on the real lab: quiet when healthy, fixes a blackhole within a few
cycles, leaves nothing unverified on SIGTERM, survives a broken SIGHUP reload."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, WG_TUNER
from tests.reliability import FigureFn
from tuner.lab.lab import Lab
from tuner.policy.loader import load_or_raise

FAST = ["--settle", "1", "--verify-window", "4", "--grace", "3", "--probe-timeout", "0.3"]


class Daemon:
    def __init__(self, lab: Lab, state: Path, *args: str, role: str = "a") -> None:
        self.state = state
        self.log = state / "daemon.log"
        state.mkdir(parents=True, exist_ok=True)
        self._out = open(self.log, "w")  # noqa: SIM115 - closed in close()
        argv = [
            "ip",
            "netns",
            "exec",
            lab.topo.host(role).netns,
            WG_TUNER,
            "run",
            "--interval",
            "2",
            "--state-dir",
            str(state),
            "--log-format",
            "json",
            *args,
        ]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self._out)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._out.close()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["event"] == name]

    def wait_for(self, test: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not test():
            assert self.proc.poll() is None, f"daemon exited: {self.log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, (
                f"timed out waiting for {what}; journal "
                f"{[(r['state'], r.get('reason')) for r in self.journal()][-6:]}"
            )
            time.sleep(0.2)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def journal(self) -> list[dict[str, Any]]:
        path = self.state / "journal.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@contextmanager
def daemon(lab: Lab, state: Path, *args: str, role: str = "a") -> Iterator[Daemon]:
    d = Daemon(lab, state, *args, role=role)
    try:
        yield d
    finally:
        d.close()
        subprocess.run(
            ["ip", "-n", lab.topo.a.netns, "link", "set", lab.topo.a.wg, "mtu", "1420"], check=False
        )


def every_line_is_json(d: Daemon) -> None:
    for line in d.log.read_text().splitlines():
        json.loads(line)


def test_healthy_tunnel_stays_untouched_for_a_minute(
    lab: Lab, tmp_path: Path, figure: FigureFn
) -> None:
    with daemon(lab, tmp_path, "--mode", "enforce", "--metrics-listen", "", *FAST) as d:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            lab.kick("a")  # a little real traffic, both ways
            time.sleep(5)
        assert d.stop() == 0
    assert len(d.named("cycle.done")) >= 25
    assert all(e["duration_ms"] > 0 for e in d.named("cycle.done"))
    assert d.named("change.applied") == [] and d.journal() == []
    every_line_is_json(d)
    figure(
        "Daemon",
        "healthy tunnel, 60 s of enforce mode with traffic -> changes made",
        f"0 in {len(d.named('cycle.done'))} cycles",
    )


@pytest.mark.timing
def test_blackhole_while_running_is_fixed_and_verified(
    lab: Lab, tmp_path: Path, figure: FigureFn
) -> None:
    with daemon(lab, tmp_path, "--mode", "enforce", "--metrics-listen", "", *FAST) as d:
        d.wait_for(lambda: len(d.named("cycle.done")) >= 2, 30, "two cycles")
        lab.fault("mtu-blackhole", True, mtu=1400)
        try:
            onset = len(d.named("cycle.done"))
            stalled = threading.Thread(target=lab.traffic, args=(20.0,))
            stalled.start()  # a user's bulk transfer, stalling in the blackhole
            d.wait_for(
                lambda: any(r["state"] == "verified" for r in d.journal()), 60, "a verified change"
            )
            cycles = len(d.named("cycle.done")) - onset
            stalled.join()
            bulk = lab.traffic(2.0)
            # an operator sets another MTU by hand: drift, and hands off (onDrift: hold)
            a = lab.topo.a
            subprocess.run(["ip", "-n", a.netns, "link", "set", a.wg, "mtu", "1380"], check=True)
            changed_at = len(d.named("cycle.done"))
            d.wait_for(lambda: bool(d.named("drift.detected")), 20, "the drift to be seen")
            drift_cycles = len(d.named("cycle.done")) - changed_at
            stalled = threading.Thread(target=lab.traffic, args=(8.0,))
            stalled.start()  # 1380 is too big for the path: traffic stalls, probes run
            d.wait_for(
                lambda: any(e.get("guard") == "drift" for e in d.named("guard.held")),
                30,
                "the policy to keep its hands off",
            )
            stalled.join()
        finally:
            lab.fault("mtu-blackhole", False)
        assert d.stop() == 0
    (applied,) = d.named("change.applied")
    assert applied["after"] == "1340"
    assert cycles <= 6, cycles
    assert bulk["ok"] and bulk["bytes"] > 1_000_000, bulk
    (drift,) = d.named("drift.detected")
    assert (drift["ours"], drift["now"]) == ("1340", "1380")
    # The cycle in flight when the MTU changed may have observed before it (under a CPU
    # hog it often has): it ends without the drift, and the next cycle sees it.
    assert drift_cycles <= 2, drift_cycles
    assert [r["state"] for r in d.journal()][-1] == "drifted"
    every_line_is_json(d)
    figure(
        "Drift and contention",
        "MTU set by hand after wg-tuner's verified fix (daemon, onDrift: hold) -> cycles to "
        "detect (the one in flight counts); wg-tuner writes afterwards",
        f"{drift_cycles}; 0",
    )
    figure(
        "Remediation",
        "blackhole (path 1400) switched on under a running daemon -> cycles to a verified "
        "fix; bulk TCP afterwards",
        f"{cycles} cycles; {bulk['bytes'] * 8 / 2.0 / 1e6:.0f} Mbit/s",
    )


@pytest.mark.timing
def test_sigterm_during_verification_leaves_nothing_unverified(
    lab: Lab, tmp_path: Path, figure: FigureFn
) -> None:
    args = [
        "--mode",
        "enforce",
        "--metrics-listen",
        "",
        "--settle",
        "1",
        "--verify-window",
        "60",
        "--grace",
        "3",
        "--probe-timeout",
        "0.3",
    ]
    lab.fault("mtu-blackhole", True, mtu=1400)
    try:
        with daemon(lab, tmp_path, *args) as d:
            d.wait_for(
                lambda: any(r["state"] == "applied" for r in d.journal()), 60, "an applied change"
            )
            started = time.monotonic()
            assert d.stop() == 0
            assert time.monotonic() - started < 30
    finally:
        lab.fault("mtu-blackhole", False)
    final = {}
    for record in d.journal():
        final[record["change"]] = record["state"]
    assert final and set(final.values()) <= {"verified", "reverted"}, final
    figure(
        "Daemon",
        "SIGTERM inside a 60 s verification window -> changes left unverified",
        sum(v not in ("verified", "reverted") for v in final.values()),
    )
    assert d.named("daemon.stopped")


def test_sighup_with_a_broken_policy_keeps_the_last_good_set(
    lab: Lab, tmp_path: Path, figure: FigureFn
) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    shipped = len(load_or_raise([REPO / "policies"]))
    port = "19586"
    with daemon(
        lab,
        tmp_path / "state",
        "--mode",
        "observe",
        "--policies",
        str(policies),
        "--metrics-listen",
        port,  # a port alone: the address is the default one
    ) as d:
        d.wait_for(lambda: len(d.named("cycle.done")) >= 1, 30, "a cycle")
        (policies / "broken.yaml").write_text("apiVersion: wg-tuner/v1\nkind: Policy\nspec: 1\n")
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for(lambda: bool(d.named("policy.reload_failed")), 30, "the reload to fail")
        cycles = len(d.named("cycle.done"))
        d.wait_for(lambda: len(d.named("cycle.done")) >= cycles + 2, 30, "more cycles")
        metrics = scrape(lab, port)
        assert "wg_tuner_policy_errors" in metrics
        assert metrics["wg_tuner_policy_errors"] != ["0.0"]
        assert "wireguard_latest_handshake_seconds" in metrics
        listening = listeners(lab, int(port))
        assert listening == ["127.0.0.1"], listening  # loopback only
        assert d.stop() == 0
    (failed,) = d.named("policy.reload_failed")
    assert any("broken.yaml" in e for e in failed["errors"])
    assert failed["kept"] == shipped
    every_line_is_json(d)
    figure(
        "Security",
        "metrics endpoint given only a port (the default address) -> listening on",
        ", ".join(listening),
    )
    figure(
        "Daemon",
        "SIGHUP with a broken policy file -> policies kept in force; error metric",
        f"{failed['kept']} of {shipped}; "
        f"wg_tuner_policy_errors {metrics['wg_tuner_policy_errors'][0]}",
    )


def scrape(lab: Lab, port: str) -> dict[str, list[str]]:
    out = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            lab.topo.a.netns,
            "python3",
            "-c",
            "import sys,urllib.request;"
            "sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())",
            f"http://127.0.0.1:{port}/metrics",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    series: dict[str, list[str]] = {}
    for line in out.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{")[0].split(" ")[0]
            series.setdefault(name, []).append(line.rsplit(" ", 1)[1])
    return series


def listeners(lab: Lab, port: int) -> list[str]:
    table = subprocess.run(
        ["ip", "netns", "exec", lab.topo.a.netns, "cat", "/proc/net/tcp"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = []
    for line in table.splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, hexport = local.split(":")
        if state == "0A" and int(hexport, 16) == port:
            found.append(".".join(str(int(addr[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


_ = (os, urllib)


def fresh_handshake(lab: Lab, younger_than: float = 60.0, timeout: float = 180.0) -> float:
    """Keep traffic flowing until the lab's handshake is younger than ``younger_than``
    seconds (WireGuard re-handshakes on traffic 120 s after the last one); its age."""
    deadline = time.monotonic() + timeout
    while (age := time.time() - lab.wg.latest_handshake(lab.topo.a)) >= younger_than:
        assert time.monotonic() < deadline, f"no fresh handshake in {timeout:.0f} s ({age:.0f})"
        lab.kick("a")
        time.sleep(1)
    return age


def test_down_peer_gives_findings_and_no_tuning(lab: Lab, tmp_path: Path, figure: FigureFn) -> None:
    # A shared lab's handshake may already be old. A peer down for 40 s on top of that
    # crosses 135 s of staleness, where the symptom cannot be told from an expired NAT
    # mapping (nat-keepalive's known ambiguity; the stress run's suite hit it). Start
    # fresh, as a peer that just went down is.
    fresh_handshake(lab)
    with daemon(lab, tmp_path, "--mode", "enforce", "--metrics-listen", "", *FAST) as d:
        d.wait_for(lambda: len(d.named("cycle.done")) >= 2, 30, "two cycles")  # probed once
        lab.fault("down", True)
        try:
            stop = time.monotonic() + 40
            while time.monotonic() < stop:  # a user keeps trying to reach b
                lab.kick("a")
                time.sleep(2)
            findings = [e for e in d.named("cycle.done") if e["findings"]]
        finally:
            lab.fault("down", False)
        assert d.stop() == 0
    assert findings, "a down peer in demand must be reported"
    assert d.named("change.applied") == [] and d.journal() == []
    every_line_is_json(d)
    figure(
        "Remediation",
        "hard-down peer under demand for 40 s -> cycles with findings; changes made",
        f"{len(findings)}; 0",
    )


@pytest.mark.soak
@pytest.mark.timeout(1200)
def test_toggling_a_fault_causes_no_oscillation(lab: Lab, tmp_path: Path, figure: FigureFn) -> None:
    """The blackhole goes on and off every 20 s for 10 minutes (the soak run beside the
    main suite); the MTU is lowered once and stays."""
    duration = float(os.environ.get("WG_TUNER_TOGGLE_SECONDS", "600"))
    with daemon(lab, tmp_path, "--mode", "enforce", "--metrics-listen", "", *FAST) as d:
        d.wait_for(lambda: len(d.named("cycle.done")) >= 2, 30, "two cycles")
        end = time.monotonic() + duration
        on = False
        try:
            while time.monotonic() < end:
                on = not on
                lab.fault("mtu-blackhole", on, **({"mtu": 1400} if on else {}))
                user = threading.Thread(target=lab.traffic, args=(3.0,))
                user.start()  # a user's bulk transfer in every phase
                flip = min(time.monotonic() + 20, end)
                while time.monotonic() < flip:
                    lab.kick("a")
                    time.sleep(2)
                user.join()
        finally:
            if on:
                lab.fault("mtu-blackhole", False)
        assert d.stop() == 0
    states = [r["state"] for r in d.journal()]
    assert states.count("applied") == 1, states
    assert "reverted" not in states
    assert len(d.named("cycle.done")) >= duration / 2 - 5
    figure(
        "Daemon",
        f"blackhole toggled every 20 s for {duration / 60:g} min -> changes applied; reverted",
        f"{states.count('applied')}; {states.count('reverted')}",
    )


def test_interfaces_that_come_and_go_do_not_break_the_loop(
    lab: Lab, tmp_path: Path, figure: FigureFn
) -> None:
    extra = f"{lab.topo.prefix}-x"
    env = dict(os.environ, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD="1")
    with daemon(lab, tmp_path, "--mode", "enforce", "--metrics-listen", "", *FAST) as d:
        d.wait_for(lambda: len(d.named("cycle.done")) >= 2, 30, "two cycles")
        wg = subprocess.Popen(
            ["ip", "netns", "exec", lab.topo.a.netns, "wireguard-go", "-f", extra],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            d.wait_for(
                lambda: any(e["interfaces"] == 2 for e in d.named("cycle.done")),
                30,
                "the new interface to be seen",
            )
        finally:
            wg.terminate()
            wg.wait(timeout=10)
        seen = len(d.named("cycle.done"))
        d.wait_for(lambda: len(d.named("cycle.done")) >= seen + 3, 30, "three more cycles")
        assert d.named("cycle.done")[-1]["interfaces"] == 1
        assert d.stop() == 0
    assert d.named("cycle.failed") == []
    figure("Daemon", "a WireGuard interface appears and disappears -> failed cycles", 0)
    assert d.named("change.applied") == []
    every_line_is_json(d)


@pytest.mark.timing
def test_peer_restart_during_the_window_is_no_false_rollback(
    lab: Lab, tmp_path: Path, figure: FigureFn
) -> None:
    args = [
        "--mode",
        "enforce",
        "--metrics-listen",
        "",
        "--settle",
        "1",
        "--verify-window",
        "25",
        "--probe-timeout",
        "0.3",
    ]  # default grace: 20 s
    lab.fault("mtu-blackhole", True, mtu=1400)
    try:
        with daemon(lab, tmp_path, *args) as d:
            d.wait_for(
                lambda: any(r["state"] == "applied" for r in d.journal()), 60, "an applied change"
            )
            lab.restart("b")  # b's WireGuard goes dark and comes back inside the grace
            d.wait_for(
                lambda: d.journal()[-1]["state"] in ("verified", "reverted"), 90, "the verdict"
            )
            assert d.stop() == 0
    finally:
        lab.fault("mtu-blackhole", False)
    assert [r["state"] for r in d.journal()] == ["intended", "applied", "verified"]
    figure(
        "Verification noise",
        "far side's wireguard-go restarted inside the verification window -> false rollbacks",
        0,
    )
    assert lab.traffic(1.0)["ok"]


@pytest.mark.timing
def test_a_stopped_daemon_resumes_without_a_stale_verdict(
    lab: Lab, tmp_path: Path, figure: FigureFn
) -> None:
    """SIGSTOP after a change is applied, SIGCONT after its window ended: the window
    nobody watched proves nothing, so the change is undone and made again, watched."""
    lab.fault("mtu-blackhole", True, mtu=1400)
    try:
        with daemon(lab, tmp_path, "--mode", "enforce", "--metrics-listen", "", *FAST) as d:
            d.wait_for(
                lambda: any(r["state"] == "applied" for r in d.journal()), 60, "an applied change"
            )
            d.proc.send_signal(signal.SIGSTOP)
            time.sleep(20)  # the 1 s settle + 4 s window end while it is stopped
            d.proc.send_signal(signal.SIGCONT)
            user = threading.Thread(target=lab.traffic, args=(10.0,))
            user.start()  # the user's transfer stalls again once the change is undone
            d.wait_for(
                lambda: any(r["state"] == "verified" for r in d.journal()), 60, "a verified fix"
            )
            user.join()
            assert d.stop() == 0
    finally:
        lab.fault("mtu-blackhole", False)
    records = d.journal()
    states = [r["state"] for r in records]
    assert states == ["intended", "applied", "reverted", "intended", "applied", "verified"]
    assert "stalled" in records[2]["reason"]
    (stalled,) = d.named("verification.stalled")
    assert stalled["gap"] >= 15
    figure(
        "Rollback and crash safety",
        "daemon SIGSTOPped 20 s with a change in its 4 s window, then resumed -> verdicts "
        "on stale evidence; outcome",
        "0; undone, re-applied and verified under watch",
    )


def test_a_hung_config_socket_times_out_and_the_loop_goes_on(
    lab: Lab, tmp_path: Path, figure: FigureFn
) -> None:
    """a's wireguard-go stops answering its config socket (SIGSTOP) for a few cycles."""
    a = lab.topo.a
    (pid,) = [int(p["pid"]) for p in lab.require().processes if p["match"] == a.wg]
    with daemon(lab, tmp_path, "--mode", "enforce", "--metrics-listen", "", *FAST) as d:
        d.wait_for(lambda: len(d.named("cycle.done")) >= 2, 30, "two cycles")
        os.kill(pid, signal.SIGSTOP)
        try:
            hung_at = len(d.named("cycle.done"))
            d.wait_for(
                lambda: len(d.named("cycle.done")) >= hung_at + 2, 30, "cycles while it hangs"
            )
        finally:
            os.kill(pid, signal.SIGCONT)
        d.wait_for(lambda: d.named("cycle.done")[-1]["interfaces"] == 1, 30, "the interface back")
        assert d.stop() == 0
    hung = [e for e in d.named("cycle.done")[hung_at:] if e["interfaces"] == 0]
    assert hung, "the hung interface must be reported as unreadable"
    assert d.named("observe.interface_failed")
    assert d.named("cycle.failed") == [] and d.journal() == []
    assert max(e["duration_ms"] for e in hung) < 10_000  # bounded by the socket timeout
    figure(
        "Daemon",
        "WireGuard config socket hangs (wireguard-go stopped) -> cycles that went on; "
        "longest; changes made",
        f"{len(hung)}; {max(e['duration_ms'] for e in hung) / 1000:.1f} s; 0",
    )
