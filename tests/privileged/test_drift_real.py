"""Drift made out of band on real knobs is found in one detection pass (one cycle)."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.reliability import FigureFn
from tuner.adapters.uapi import UapiClient

SOCKETS = Path("/var/run/wireguard")


def helper(netns: str, *args: str) -> object:
    out = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "tests.helpers.drift", *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=60,
    ).stdout
    return json.loads(out)


def in_ns(netns: str, *argv: str, stdin: str | None = None) -> None:
    subprocess.run(["ip", "netns", "exec", netns, *argv], input=stdin, text=True, check=True)


def test_drift_of_every_kind_is_detected_in_one_pass(
    wg_netns: tuple[str, str], tmp_path: Path, figure: FigureFn
) -> None:
    netns, ifname = wg_netns
    key = secrets.token_bytes(32)
    peer = base64.b64encode(key).decode()
    UapiClient(SOCKETS).set(ifname, [("public_key", key.hex()), ("allowed_ip", "10.9.9.9/32")])
    state = str(tmp_path / "state")
    owned = {
        "mtu": helper(netns, "own", state, "mtu", ifname, "1340"),
        "keepalive": helper(netns, "own", state, "keepalive", ifname, "25", "--peer", peer),
        "sysctl": helper(netns, "own", state, "sysctl", "net.ipv4.tcp_mtu_probing", "1"),
        "mss_clamp": helper(netns, "own", state, "mss_clamp", ifname, "pmtu"),
        "irq_affinity": helper(netns, "own", state, "irq_affinity", "v0/rx-0", "0"),
    }
    assert all(o["value"] is not None for o in owned.values()), owned  # type: ignore[index]
    assert helper(netns, "detect", state) == []  # nothing drifted yet

    # someone else changes each knob
    in_ns(netns, "ip", "link", "set", ifname, "mtu", "1300")
    in_ns(netns, "wg", "set", ifname, "peer", peer, "persistent-keepalive", "0")
    in_ns(netns, "sysctl", "-qw", "net.ipv4.tcp_mtu_probing=2")
    in_ns(netns, "nft", "delete", "table", "inet", "wg_tuner")
    in_ns(netns, "sh", "-c", "echo 2 > /sys/class/net/v0/queues/rx-0/rps_cpus")

    drifted = helper(netns, "detect", state)
    assert isinstance(drifted, list)
    found = {d["kind"]: d for d in drifted}
    assert set(found) == set(owned), found
    assert "now 1300" in found["mtu"]["reason"]
    assert "now 0" in found["keepalive"]["reason"]
    assert "now 2" in found["sysctl"]["reason"]
    assert "now None" in found["mss_clamp"]["reason"]  # the table is gone
    assert helper(netns, "detect", state) == []  # journaled once, then the other writer's
    journal = (tmp_path / "state" / "journal.jsonl").read_text()
    assert journal.count('"state":"drifted"') == 5
    figure(
        "Drift and contention",
        "MTU, keepalive, sysctl, wg-tuner's nft table and an RPS mask changed out of band "
        "-> found by one detection pass (one daemon cycle)",
        f"{len(found)} of {len(owned)}",
    )
