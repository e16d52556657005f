"""A real Prometheus server scraping wg-tuner's daemon in the lab: the shipped alert rules
fire there, and every query of the shipped Grafana dashboard is valid and answered.

Prometheus runs inside host a's namespace (its own loopback), scraping the daemon every
second, and Debian's node_exporter in the same namespace (the host series the rules and
the dashboard read are node_exporter's), both targets labelled ``instance="lab-a"`` as
the docs advise. The rules are a copy of the shipped file with every ``for:`` shortened
to 2 s, so an alert that would take 5 minutes on a host fires in seconds here. The
faults: a peer with a key nobody has and an endpoint nobody answers, with traffic routed
to it (handshake-never); then a blackhole the daemon fixes (a verified change), a
narrower one whose fix is cut during its window (a rollback, then a held change). Every
dashboard query, annotations included, is asked over the test's time range as Grafana
asks it, and each returns data.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import REPO, require_privileges
from tests.lab.test_lab_daemon import FAST, Daemon, daemon
from tests.privileged.test_node_exporter import node_exporter
from tests.reliability import FigureFn
from tuner.lab.lab import Lab

METRICS_PORT, PROM_PORT, NODE_PORT = 19586, 19590, 19591


def api(lab: Lab, path: str, **params: str) -> Any:
    """GET Prometheus's HTTP API inside namespace a (its loopback is not ours)."""
    url = f"http://127.0.0.1:{PROM_PORT}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    code = (
        "import sys,urllib.request\n"
        "print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())\n"
    )
    out = subprocess.run(
        ["ip", "netns", "exec", lab.topo.a.netns, "python3", "-c", code, url],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    data = json.loads(out)
    assert data["status"] == "success", data
    return data["data"]


def wait(what: str, test: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = test()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1.0)


def dashboard_queries() -> list[str]:
    board = json.loads((REPO / "monitoring/grafana/wg-tuner-dashboard.json").read_text())
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                found.append(node["expr"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(board)
    return found


@contextlib.contextmanager
def never_handshaking_peer(lab: Lab) -> Iterator[str]:
    """A peer on a's interface that never answers, and traffic for it."""
    a = lab.topo.a
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    run = ["ip", "netns", "exec", a.netns]
    subprocess.run(
        [*run, "wg", "set", a.wg, "peer", key, "endpoint", "203.0.113.2:9",
         "allowed-ips", "10.99.0.1/32"],
        check=True,
    )  # fmt: skip
    subprocess.run(["ip", "-n", a.netns, "route", "add", "10.99.0.1/32", "dev", a.wg], check=True)
    sender = (
        "import socket,time\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "while True:\n"
        "    s.sendto(b'x'*64,('10.99.0.1',9)); time.sleep(0.5)\n"
    )
    pinger = subprocess.Popen(
        [*run, sys.executable, "-c", sender], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield key
    finally:
        pinger.kill()
        pinger.wait()
        subprocess.run(["ip", "-n", a.netns, "route", "del", "10.99.0.1/32"], check=False)
        subprocess.run([*run, "wg", "set", a.wg, "peer", key, "remove"], check=False)


def firing(lab: Lab, name: str) -> list[dict[str, Any]]:
    return [
        a
        for a in api(lab, "alerts")["alerts"]
        if a["labels"]["alertname"] == name and a["state"] == "firing"
    ]


def changes_then_a_rollback(lab: Lab, d: Daemon) -> None:
    """A verified MTU fix, then a second one cut during its window: rolled back, and the
    same change held afterwards while the narrower blackhole lasts."""

    def states() -> list[str]:
        return [r["state"] for r in d.journal()]

    lab.fault("mtu-blackhole", True, mtu=1400)
    try:
        user = threading.Thread(target=lab.traffic, args=(10.0,))
        user.start()  # the user's transfer that stalls in the blackhole
        d.wait_for(lambda: "verified" in states(), 90, "a verified change")
        user.join()
    finally:
        lab.fault("mtu-blackhole", False)
    lab.fault("mtu-blackhole", True, mtu=1360)  # a 1300 tunnel MTU
    try:
        user = threading.Thread(target=lab.traffic, args=(10.0,))
        user.start()  # stalls again: 1340 no longer fits
        d.wait_for(lambda: states()[-1] == "applied", 90, "a second change")
        user.join()
        lab.fault("down", True)  # the new MTU "cut the tunnel": its verification fails
        try:
            d.wait_for(lambda: "reverted" in states(), 60, "the rollback")
        finally:
            lab.fault("down", False)
        # The user tries again: the stalled transfer makes a probe due (nothing else
        # does on a quiet tunnel), the probe finds 1300 again, and the plan holds it.
        done = threading.Event()

        def retrying() -> None:
            while not done.is_set():
                lab.traffic(3.0)

        user = threading.Thread(target=retrying)
        user.start()
        try:
            d.wait_for(lambda: bool(d.named("guard.held")), 60, "the failed change to be held")
        finally:
            done.set()
            user.join()
    finally:
        lab.fault("mtu-blackhole", False)


def test_prometheus_fires_the_shipped_alerts_and_answers_the_dashboard(
    lab: Lab, tmp_path: Path, figure: FigureFn
) -> None:
    require_privileges()
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus (Debian package) is required; make test installs it"
    rules = (REPO / "monitoring/prometheus/wg-tuner-alerts.yml").read_text()
    (tmp_path / "rules.yml").write_text(re.sub(r"for: \d+[smh]", "for: 2s", rules))
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [rules.yml]\n"
        "scrape_configs:\n"
        "  - job_name: wg-tuner\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{METRICS_PORT}'], "
        "labels: {instance: lab-a}}]\n"
        "  - job_name: node\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{NODE_PORT}'], "
        "labels: {instance: lab-a}}]\n"
    )
    listen = f"127.0.0.1:{METRICS_PORT}"
    # Cycles longer than WireGuard's 5 s handshake retry (REKEY_TIMEOUT), as the shipped
    # 10 s interval is: each cycle then sees the peer's initiations go out unanswered.
    args = ("--metrics-listen", listen, "--mode", "enforce", *FAST, "--interval", "6")
    netns = ("ip", "netns", "exec", lab.topo.a.netns)
    started = time.time()
    with (
        daemon(lab, tmp_path / "state", *args) as d,
        open(tmp_path / "prometheus.log", "w") as err,
    ):
        node = subprocess.Popen(
            [*netns, node_exporter(), f"--web.listen-address=127.0.0.1:{NODE_PORT}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = subprocess.Popen(
            [
                *netns,
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{PROM_PORT}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            up = wait(
                "both scrape targets to be up",
                lambda: (
                    len([t for t in _targets(lab) if t["health"] == "up"]) == 2 and _targets(lab)
                ),
                90,
            )
            # The healthy lab first: 8 s of 1 s evaluations (each for: is 2 s), nothing.
            time.sleep(8)
            # CpuCoreSaturated is about the machine, and the machine is busy running
            # this suite (or make test-stress's hogs): when it fires, it is right.
            healthy = [
                a
                for a in api(lab, "alerts")["alerts"]
                if a["state"] == "firing" and a["labels"]["alertname"] != "CpuCoreSaturated"
            ]
            with never_handshaking_peer(lab) as key:
                fault_at = time.monotonic()
                never = wait(
                    "WireGuardPeerNeverHandshaked to fire",
                    lambda: firing(lab, "WireGuardPeerNeverHandshaked"),
                    120,
                )
            fired_after = time.monotonic() - fault_at
            changes_then_a_rollback(lab, d)
            rolled_back = wait(
                "WgTunerRolledBack to fire", lambda: firing(lab, "WgTunerRolledBack"), 30
            )
            time.sleep(3)  # two more scrapes of the held change
            answered = {}
            span = {"start": f"{started:.3f}", "end": f"{time.time():.3f}", "step": "1"}
            for expr in dashboard_queries():
                query = expr.replace("$instance", ".*").replace("$interface", ".*")
                result = api(lab, "query_range", query=query, **span)
                answered[expr] = len(result["result"])
            assert d.proc.poll() is None, "the daemon died"
        finally:
            server.terminate()
            node.terminate()
            server.wait(timeout=30)
            node.wait(timeout=30)
    assert healthy == [], healthy
    (alert,) = never
    assert alert["labels"]["public_key"] == key
    assert alert["labels"]["interface"] == lab.topo.a.wg
    assert alert["annotations"]["runbook_url"] == "docs/operations.md#peer-never-handshaked"
    assert rolled_back[0]["labels"]["instance"] == "lab-a"
    assert {t["labels"]["job"] for t in up} == {"wg-tuner", "node"}
    # Every dashboard query, panels and annotations, has data over the test's range.
    empty = [e for e, n in answered.items() if n == 0]
    assert len(answered) >= 25 and not empty, empty
    figure(
        "Daemon",
        "real Prometheus scraping the lab daemon and node_exporter (rules' for: shortened "
        "to 2 s), a peer that never handshakes, a verified change, a rolled-back one -> "
        "WireGuardPeerNeverHandshaked and WgTunerRolledBack firing; dashboard queries",
        f"firing after {fired_after:.0f} s; {len(answered)} queries, all with data",
    )


def _targets(lab: Lab) -> list[dict[str, Any]]:
    try:
        return list(api(lab, "targets")["activeTargets"])
    except (subprocess.CalledProcessError, json.JSONDecodeError):
        return []  # not listening yet
