"""NAT keepalives on the lab: a sits behind a NAT (RFC 6598 address, random source
ports) that forgets UDP mappings after ``timeout`` seconds; b is the public hub.

The proof is the symptom's own: b's view of a's endpoint stops churning, and a ping
from the hub reaches a after an idle gap longer than the NAT's timeout.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.lab.test_lab_daemon import FAST, Daemon, daemon
from tests.reliability import FigureFn
from tuner.lab.lab import Lab

# Mostly waiting on the NAT's timeout: run beside the main suite in a lab of their own.
pytestmark = [pytest.mark.timeout(600), pytest.mark.soak]


def keepalive(lab: Lab, role: str) -> int:
    host = lab.topo.host(role)
    return lab.uapi.get(host.wg).peers[0].persistent_keepalive


def endpoint_at_b(lab: Lab) -> str | None:
    return lab.uapi.get(lab.topo.b.wg).peers[0].endpoint


def hub_reaches_a(lab: Lab) -> bool:
    """One echo from b to a's tunnel address, answered within 3 s."""
    ping = ["ping", "-n", "-q", "-c", "1", "-W", "3", lab.topo.a.tunnel_addr]
    argv = ["ip", "netns", "exec", lab.topo.b.netns, *ping]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


@contextmanager
def nat(lab: Lab, timeout: int) -> Iterator[None]:
    lab.fault("nat-timeout", True, timeout=timeout)
    try:
        lab.kick("a")  # b now sees a through the NAT (the first, expected, new endpoint)
        deadline = time.monotonic() + 10
        while not (endpoint_at_b(lab) or "").startswith(lab.topo.b.gateway + ":"):
            assert time.monotonic() < deadline, "b never saw a through the NAT"
            lab.kick("a")
            time.sleep(0.3)
        yield
    finally:
        lab.fault("nat-timeout", False)
        for role in ("a", "b"):
            host = lab.topo.host(role)
            key = lab.uapi.get(host.wg).peers[0].public_key
            subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    host.netns,
                    "wg",
                    "set",
                    host.wg,
                    "peer",
                    key,
                    "persistent-keepalive",
                    "0",
                ],
                check=False,
            )
        lab.kick("a")  # the lab works for the next test without the NAT
        assert lab.traffic(1.0)["ok"]


@contextmanager
def a_talks_now_and_then(lab: Lab, every: float) -> Iterator[None]:
    """a sends a few datagrams every ``every`` seconds, idle in between."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            lab.kick("a")

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


@contextmanager
def b_takes_kicks_silently(lab: Lab) -> Iterator[None]:
    """A socket on b's discard port that reads nothing and answers nothing. Without it
    b's kernel answers a's kicks with port-unreachable errors through the tunnel: the
    hub sends at once and its passive keepalive 10 s later never comes, so whether the
    hub "sent in the silence" (what makes a churn bound the lifetime) would hang on
    which of two snapshots that error fell into."""
    code = "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
    code += "s.bind(('',9));time.sleep(3600)\n"
    argv = ["ip", "netns", "exec", lab.topo.b.netns, sys.executable, "-c", code]
    sink = subprocess.Popen(argv)
    try:
        time.sleep(0.5)
        assert sink.poll() is None, "the sink on b did not start"
        yield
    finally:
        sink.kill()
        sink.wait()


def run_args(window: float) -> tuple[str, ...]:
    """The lab daemon's fast timers (FAST) with a verification window of ``window`` s."""
    fast = list(FAST)
    fast[fast.index("--verify-window") + 1] = str(window)
    return ("--mode", "enforce", "--metrics-listen", "", *fast)


def idle_then_hub_pings(lab: Lab, timeout: int) -> tuple[bool, str | None, str | None]:
    """Nobody talks for longer than the NAT's timeout; then the hub pings a."""
    before = endpoint_at_b(lab)
    time.sleep(timeout + 10)
    reached = hub_reaches_a(lab)
    lab.kick("a")
    time.sleep(1)
    return reached, before, endpoint_at_b(lab)


@pytest.mark.parametrize(("timeout", "ladder"), [(30, ["25"]), (20, ["25", "15"])])
def test_the_hubs_keepalive_steps_down_until_the_churn_stops(
    lab: Lab, tmp_path: Path, figure: FigureFn, timeout: int, ladder: list[str]
) -> None:
    """Only the hub runs wg-tuner. a talks every timeout + 15 s (the hub's passive
    keepalive answers 10 s after a's packet and refreshes the mapping too), so each of
    a's packets after the NAT forgot leaves on a new port: churn at the hub."""
    textfile = tmp_path / "metrics.prom"
    args = (*run_args(timeout + 25), "--textfile", str(textfile))
    with (
        nat(lab, timeout),
        b_takes_kicks_silently(lab),
        daemon(lab, tmp_path, *args, role="b") as d,
    ):
        # The silence before a churn bounds the NAT's lifetime only if the hub saw a's
        # traffic arrive (rx grow between two of its snapshots) before it: a daemon
        # that started after a's last packet has seen none, and the first churn gives
        # no bound. So a talks once the hub's daemon is running, then now and then.
        d.wait_for(lambda: bool(d.named("cycle.done")), 60, "the hub's first cycle")
        lab.kick("a")
        with a_talks_now_and_then(lab, timeout + 15):
            d.wait_for(
                lambda: any(r["state"] == "verified" for r in d.journal()),
                300,
                "a verified keepalive",
            )
            reached, before, after = idle_then_hub_pings(lab, timeout)
        final = keepalive(lab, "b")
        series = textfile.read_text()
        assert d.stop() == 0
    journal = d.journal()
    applied = [r["desired"] for r in journal if r["state"] == "applied"]
    states = [(r["desired"], r["state"]) for r in journal if r["state"] != "intended"]
    assert applied == ladder, states
    for rung in ladder[:-1]:  # every rung above the last was rolled back, never verified
        assert (rung, "verified") not in states, states
        reverted = [r for r in journal if r["desired"] == rung and r["state"] == "reverted"]
        assert reverted and "peer_endpoint_stable" in str(reverted[0]), reverted
    assert (ladder[-1], "verified") in states
    assert final == int(ladder[-1]) < timeout
    assert keepalive(lab, "a") == 0  # the NATed host runs no wg-tuner here
    assert reached, "the hub's ping after the idle gap was lost"
    assert before == after, "the endpoint churned after the keepalive was verified"
    # The exported bound is a true upper bound on the NAT's real timeout, and the one
    # the last keepalive fits under.
    (bound,) = [
        float(line.rsplit(" ", 1)[1])
        for line in series.splitlines()
        if line.startswith("wg_tuner_peer_nat_lifetime_seconds{")
    ]
    assert timeout <= bound and int(ladder[-1]) < bound, (timeout, bound)
    assert "wg_tuner_peer_endpoint_changes_total{" in series
    figure(
        "Remediation",
        f"NAT forgetting after {timeout} s, wg-tuner on the hub only -> keepalives tried; "
        "hub reaches a after idle",
        f"{' -> '.join(ladder)} s; {reached}",
    )


def _quiet(d: Daemon) -> bool:
    return not d.named("change.applied")


@pytest.mark.parametrize(("timeout", "hub_too"), [(20, True), (20, False), (30, True), (30, False)])
def test_the_natted_host_keeps_its_own_mapping(
    lab: Lab, tmp_path: Path, figure: FigureFn, timeout: int, hub_too: bool
) -> None:
    """a sees that it reaches b's public address from 100.64.0.2 and sets its own
    keepalive; with wg-tuner on the hub too, the hub sees no churn and does nothing."""
    with nat(lab, timeout), ExitStack() as stack:
        hub = (
            stack.enter_context(daemon(lab, tmp_path / "b", *run_args(5), role="b"))
            if hub_too
            else None
        )
        d = stack.enter_context(daemon(lab, tmp_path / "a", *run_args(5), role="a"))
        d.wait_for(
            lambda: any(r["state"] == "verified" for r in d.journal()), 60, "a verified keepalive"
        )
        reached, before, after = idle_then_hub_pings(lab, timeout)
        kept = (keepalive(lab, "a"), keepalive(lab, "b"))
        assert d.stop() == 0
        if hub is not None:
            assert hub.stop() == 0
    (applied,) = list(d.named("change.applied"))
    assert applied["policy"] == "nat-keepalive-here" and applied["after"] == "15"
    assert kept == (15, 0)
    if hub is not None:
        assert _quiet(hub), hub.named("change.applied")
    assert reached, "the hub's ping after the idle gap was lost"
    assert before == after, "a's endpoint churned at the hub"
    figure(
        "Remediation",
        f"NAT forgetting after {timeout} s, wg-tuner on a{' and the hub' if hub_too else ''} "
        "-> keepalive on a's own entry; hub reaches a after idle",
        f"{kept[0]} s; {reached}",
    )
