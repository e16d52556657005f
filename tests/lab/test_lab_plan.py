"""`wg-tuner plan` on the real lab: the blackhole is found through the tunnel and the
plan proposes an MTU that fits; a healthy lab gets no proposal; nothing ever changes."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.conftest import cli
from tests.hoststate import capture
from tuner.lab.lab import Lab


def plan(lab: Lab, state: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    proc = cli(
        [
            "plan",
            "--format",
            "json",
            "--sample",
            "0.5",
            "--probe-timeout",
            "0.3",
            "--state-dir",
            str(state),
            "--log-format",
            "json",
            *extra,
        ],
        netns=lab.topo.a.netns,
    )
    assert proc.returncode in (0, 2), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_healthy_lab_plans_nothing(lab: Lab, tmp_path: Path) -> None:
    code, data = plan(lab, tmp_path, "--detailed-exitcode")
    assert (code, data["changed"], data["changes"]) == (0, False, [])
    assert (data["schema"], data["schemaVersion"]) == ("wg-tuner/plan", 2)


def test_blackhole_plan_proposes_a_fitting_mtu_and_changes_nothing(
    lab: Lab, tmp_path: Path
) -> None:
    a = lab.topo.a
    lab.fault("mtu-blackhole", True, mtu=1400)
    try:
        before = capture(a.netns, a.wg)
        code, data = plan(lab, tmp_path, "--detailed-exitcode")
        after = capture(a.netns, a.wg)
    finally:
        lab.fault("mtu-blackhole", False)
    assert after == before  # links, WireGuard settings, nft ruleset, sysctls
    assert code == 2 and data["changed"] is True
    (change,) = [c for c in data["changes"] if c["kind"] == "mtu"]
    assert change["policy"] == "mtu-blackhole"
    assert change["target"] == a.wg and change["before"] == 1420  # typed: a number
    assert 1280 <= int(change["after"]) <= 1340
    assert change["verdict"]["decision"] == "admit"
    (probe,) = change["probes"]
    assert probe["outcome"] == "ok" and probe["tunnel_mtu"] == int(change["after"])
    assert probe["method"] in ("tunnel", "tunnel+underlay")
    assert change["evidence"][0]["metric"] == "iface.mtu_deficit"
    assert data["diff"]["after"] == {f"mtu {a.wg}": change["after"]}
    text = cli(["plan", "--sample", "0", "--state-dir", str(tmp_path)], netns=a.netns)
    assert "dry-run" in text.stdout


def test_a_peer_with_a_wrong_key_is_reported_as_never_handshaken(lab: Lab, tmp_path: Path) -> None:
    # A peer a knows by a key nobody holds, at b's real endpoint: a sends handshake
    # initiations that b cannot answer, as with a mistyped key or a blocked port.
    a, b = lab.topo.a, lab.topo.b
    wrong = secrets.token_bytes(32)
    wrong_b64 = base64.b64encode(wrong).decode()
    lab.uapi.set(
        a.wg,
        [
            ("public_key", wrong.hex()),
            ("endpoint", f"{b.underlay_addr}:{b.listen_port}"),
            ("allowed_ip", "192.0.2.99/32"),
        ],
    )
    stop = threading.Event()

    def user() -> None:  # someone keeps trying to reach it
        while not stop.is_set():
            subprocess.run(
                ["ip", "netns", "exec", a.netns, sys.executable, "-m", "tuner.lab.traffic",
                 "kick", "192.0.2.99"],
                check=False, capture_output=True,
            )  # fmt: skip
            stop.wait(0.5)

    sender = threading.Thread(target=user)
    sender.start()
    try:
        time.sleep(1.0)  # the first initiation is out
        # Initiations are retried every 5 s (REKEY_TIMEOUT): a 6 s sample sees one.
        code, data = plan(lab, tmp_path, "--sample", "6")
    finally:
        stop.set()
        sender.join()
        # wg-tuner's own client refuses to remove peers; the lab's owner uses wg.
        subprocess.run(
            ["ip", "netns", "exec", a.netns, "wg", "set", a.wg, "peer", wrong_b64, "remove"],
            check=True,
        )
    never = [f for f in data["findings"] if f["policy"] == "handshake-never"]
    assert [f["peer"] for f in never] == [wrong_b64], data["findings"]
    assert data["changes"] == [] and code == 0
