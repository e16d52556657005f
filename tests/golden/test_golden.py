"""Same inputs, same plan: each golden folder's history, planned with the shipped policies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.schemas import checked
from tuner.core.guards import PlanContext
from tuner.core.plan import plan
from tuner.exporters.report import render_json
from tuner.model.serde import snapshot_from_data
from tuner.policy.loader import load_or_raise

HERE = Path(__file__).parent


def run_case(folder: Path) -> str:
    history = [snapshot_from_data(d) for d in json.loads((folder / "history.json").read_text())]
    policies = load_or_raise([REPO / "policies"])
    result = plan(history, policies, PlanContext(now=history[-1].taken_at))
    return render_json(result)


def case_names() -> list[str]:
    from tests.golden.cases import cases

    return [c.name for c in cases()]


@pytest.mark.parametrize("name", case_names())
def test_golden(name: str) -> None:
    from tests.golden.cases import cases

    case = next(c for c in cases() if c.name == name)
    folder = HERE / name
    assert (folder / "history.json").exists(), "run: python -m tests.golden.cases"
    got = run_case(folder)
    assert got == (folder / "expected.json").read_text(), f"plan changed for {name}"
    data = checked(got)
    assert sorted({f["policy"] for f in data["findings"]}) == sorted(case.findings)

    def text(v: object) -> str | None:  # cases spell values as the kernel does
        return None if v is None else str(v)

    changes = {
        (c["policy"], c["kind"], text(c["before"]), text(c["after"]), c["verdict"]["decision"])
        for c in data["changes"]
    }
    assert changes == set(case.expect)
    assert data["changed"] == any(e[4] == "admit" for e in case.expect)


def test_history_round_trips_through_json() -> None:
    from tests.golden.cases import cases
    from tuner.model.serde import to_data

    for case in cases():
        for snap in case.history:
            assert snapshot_from_data(json.loads(json.dumps(to_data(snap)))) == snap


def test_a_named_peer_is_named_in_findings_and_changes() -> None:
    """The NAT case with a friendly name on its peer: the plan's finding and keepalive
    change carry it, and the text report shows it beside the key."""
    from dataclasses import replace

    from tuner.exporters.report import render_text
    from tuner.model.snapshot import frozen_map

    folder = HERE / "nat-keepalive-fires"
    history = [snapshot_from_data(d) for d in json.loads((folder / "history.json").read_text())]
    key = history[-1].interfaces[0].peers[0].public_key
    named = [
        replace(
            snap,
            interfaces=tuple(
                replace(i, peer_names=frozen_map({key: "branch-7"})) for i in snap.interfaces
            ),
        )
        for snap in history
    ]
    result = plan(named, load_or_raise([REPO / "policies"]), PlanContext(now=named[-1].taken_at))
    data = checked(render_json(result))
    finding = next(f for f in data["findings"] if f["peer"] == key)
    change = next(c for c in data["changes"] if c["peer"] == key)
    assert (finding["peer_name"], change["peer_name"]) == ("branch-7", "branch-7")
    assert f"{key[:8]}... (branch-7)" in render_text(result)
