"""The alert rules and the Grafana dashboard: promtool accepts and unit-tests the rules,
and every metric they query is one wg-tuner exports (a renamed series breaks this)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import replace
from pathlib import Path

import yaml
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.golden.cases import Sample, snapshot
from tuner.exporters.controller_metrics import ControllerCollector, ControllerState
from tuner.exporters.metrics import registry_for
from tuner.model.kinds import KINDS
from tuner.model.nat import NatPeer

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "monitoring" / "prometheus" / "wg-tuner-alerts.yml"
RULE_TESTS = REPO / "monitoring" / "prometheus" / "tests" / "wg-tuner-alerts.test.yml"
DASHBOARD = REPO / "monitoring" / "grafana" / "wg-tuner-dashboard.json"
OURS = re.compile(r"\b(?:wireguard|wg_tuner)_[a-z0-9_]+\b")


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: scripts/install-deps.sh installs Debian's prometheus"
    return path


def exported() -> set[str]:
    """Every sample name wg-tuner serves, from a snapshot and a busy controller."""
    state = ControllerState(
        findings=Counter({"mtu-blackhole": 1}),
        changes=Counter({("mtu", "applied"): 1}),
        held=Counter({"cooldown": 1}),
        peer_findings=(("handshake-never", "wg0", "key", "alice-phone"),),
    )
    churned = (NatPeer("wg0", "key", 2, 20.0, 0.0),)  # a peer whose NAT forgot it twice
    snap = replace(snapshot(Sample(t=0.0)), nat=churned)
    registry = registry_for(snap, [ControllerCollector(state)])
    text = generate_latest(registry).decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def rule_exprs() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    exprs += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    exprs += [a["expr"] for a in board.get("annotations", {}).get("list", [])]
    return exprs


def test_promtool_checks_the_rules() -> None:
    out = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    rules = sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])
    assert f"SUCCESS: {rules} rules found" in out.stdout


def test_promtool_unit_tests_every_alert() -> None:
    out = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        check=False,
        cwd=RULE_TESTS.parent,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    names = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    tested = {
        t["alertname"]
        for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for t in case["alert_rule_test"]
    }
    assert names == tested, names ^ tested


def test_every_metric_the_rules_query_is_exported() -> None:
    used = {m for expr in rule_exprs() for m in OURS.findall(expr)}
    assert len(used) >= 10
    assert used <= exported(), used - exported()


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    used = {m for expr in dashboard_exprs() for m in OURS.findall(expr)}
    assert len(used) >= 15
    assert used <= exported(), used - exported()


def test_the_dashboard_has_the_on_call_panels() -> None:
    board = json.loads(DASHBOARD.read_text())
    titles = {p["title"] for p in board["panels"]}
    for needed in (
        "Handshake age per peer",
        "Throughput per interface",
        "Drops and errors",
        "Busy per core",
        "wg-tuner changes",
        "Rollbacks (15 min)",
        "Top 10 peers by handshake age",
        "Top 10 peers by throughput",
        "Conntrack fill",
        "Kernel log events (5 min)",
    ):
        assert needed in titles
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"instance", "interface"} <= variables
    names = {a["name"] for a in board["annotations"]["list"]}
    assert names == {"wg-tuner changes", "wg-tuner rollbacks"}


def test_a_misspelled_metric_would_be_caught() -> None:
    assert "wg_tuner_rollback_total" not in exported()
    assert "wg_tuner_rollbacks_total" in exported()


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_alert_has_a_severity_a_description_and_a_runbook_that_exists() -> None:
    doc = (REPO / "docs" / "operations.md").read_text()
    anchors = {slug(h) for h in re.findall(r"^#+ (.+)$", doc, re.M)}
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) >= 11
    for rule in rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], name
        path, _, anchor = notes["runbook_url"].partition("#")
        assert path == "docs/operations.md" and anchor in anchors, (name, anchor)


def test_change_counters_start_at_zero_so_the_first_change_is_annotated() -> None:
    """A series born at 1 shows no change to changes()/increase(): the dashboard's
    annotation of the first verified change would never be drawn."""
    fresh = generate_latest(
        registry_for(
            snapshot(Sample(t=0.0)),
            [ControllerCollector(ControllerState(changes=Counter({("mtu", "verified"): 2})))],
        )
    ).decode()
    samples = {
        (s.labels["kind"], s.labels["result"]): s.value
        for family in text_string_to_metric_families(fresh)
        if family.name == "wg_tuner_changes"
        for s in family.samples
    }
    assert samples[("mtu", "verified")] == 2
    assert samples[("keepalive", "verified")] == 0 and samples[("offload", "reverted")] == 0
    assert len(samples) == len(KINDS) * 4
