"""`wg-tuner plan` on the real lab: the blackhole is found through the tunnel and the
plan proposes an MTU that fits; a healthy lab gets no proposal; nothing ever changes."""

from __future__ import annotations

import json
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
