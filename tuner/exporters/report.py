"""The Plan as a report: JSON (a published schema), plain text or a table, and Markdown.

JSON: ``schema`` ``wg-tuner/plan``, ``schemaVersion`` 2 (docs/schemas/plan.schema.json).
Top level ``changed`` (whether a real run would change anything), ``findings[]``,
``changes[]``, ``recovery[]`` (what apply's recovery would revert first), ``drift[]``;
each change has ``id``, ``policy``, ``kind``, ``target``, typed ``before``/``after`` (an
MTU is a number, a mask a CPU list, a sysctl its kernel text), ``reason``,
``evidence[]`` and ``verdict`` (``decision`` admit|hold|noop, ``guard``, ``reason``,
``until``). ``diff`` holds ``before``/``after`` maps of what would change, for Ansible's
--diff.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

from tuner.core.evaluate import Evidence, Finding
from tuner.core.guards import Decision
from tuner.core.plan import Plan, ProposedChange
from tuner.journal.view import RECOVERED, Preview
from tuner.model.kinds import KINDS, Typed, typed
from tuner.model.target import Target

SCHEMA = "wg-tuner/plan"
SCHEMA_VERSION = 2
NO_PREVIEW = Preview()


def evidence_data(e: Evidence) -> dict[str, Any]:
    return {
        "metric": e.metric,
        "value": e.value,
        "op": e.op,
        "threshold": e.threshold,
        "held_for": round(e.held_for, 3),
        "cycles": e.cycles,
    }


def finding_data(f: Finding) -> dict[str, Any]:
    return {
        "policy": f.policy,
        "scope": f.scope.value,
        "interface": f.interface,
        "peer": f.peer,
        "peer_name": f.peer_name,
        "evidence": [evidence_data(e) for e in f.evidence],
    }


def target_text(c: ProposedChange) -> str:
    t = c.target
    return f"{t.name} peer {t.peer}" if t.peer else t.name


def change_data(
    c: ProposedChange, names: Mapping[tuple[str, str], str] | None = None
) -> dict[str, Any]:
    """``names``: friendly names by (interface, peer), as the plan's findings carry them."""
    return {
        "id": c.id,
        "policy": c.policy,
        "kind": c.kind,
        "target": target_text(c),
        "interface": c.target.name if KINDS[c.kind].interface else None,
        "peer": c.target.peer or None,
        "peer_name": (names or {}).get((c.target.name, c.target.peer)) if c.target.peer else None,
        "before": typed(c.kind, c.before),
        "after": typed(c.kind, c.after),
        "reason": c.reason,
        "priority": c.priority,
        "persist": c.persist,
        "evidence": [evidence_data(e) for e in c.evidence],
        "probes": [
            {
                "peer": p.peer,
                "target": p.target,
                "method": p.method.value,
                "outcome": p.outcome.value,
                "tunnel_mtu": p.tunnel_mtu,
                "interface_mtu": p.interface_mtu,
                "probes": p.probes,
                "exact": p.exact,
                "at": p.at,
            }
            for p in c.probes
        ],
        "verdict": {
            "decision": c.verdict.decision.value,
            "guard": c.verdict.guard or None,
            "reason": c.verdict.reason or None,
            "until": c.verdict.until,
        },
    }


def _target_key(t: Target) -> str:
    return f"{t.kind} " + (f"{t.name} peer {t.peer}" if t.peer else t.name)


def diff_data(plan: Plan, preview: Preview = NO_PREVIEW) -> dict[str, dict[str, Typed]]:
    before: dict[str, Typed] = {}
    after: dict[str, Typed] = {}
    for r in preview.recover:
        key, kind = _target_key(r.target), r.target.kind
        before[key], after[key] = typed(kind, r.desired), typed(kind, r.prior)
    for c in plan.admitted:
        key = _target_key(c.target)
        before.setdefault(key, typed(c.kind, c.before))
        after[key] = typed(c.kind, c.after)
    return {"before": before, "after": after}


def recovery_data(preview: Preview) -> list[dict[str, Any]]:
    return [
        {
            "id": r.change,
            "policy": r.policy,
            "kind": r.target.kind,
            "target": f"{r.target.name} peer {r.target.peer}" if r.target.peer else r.target.name,
            "before": typed(r.target.kind, r.desired),
            "after": typed(r.target.kind, r.prior),
            "reason": RECOVERED,
        }
        for r in preview.recover
    ]


def peer_names(plan: Plan) -> dict[tuple[str, str], str]:
    return {
        (f.interface, f.peer): f.peer_name
        for f in plan.findings
        if f.interface and f.peer and f.peer_name
    }


def plan_data(
    plan: Plan, notes: tuple[str, ...] = (), preview: Preview = NO_PREVIEW
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "schemaVersion": SCHEMA_VERSION,
        "changed": plan.changed or bool(preview.recover),
        "netns": plan.netns,
        "observed_at": plan.taken_at,
        "findings": [finding_data(f) for f in plan.findings],
        "changes": [change_data(c, peer_names(plan)) for c in plan.changes],
        "recovery": recovery_data(preview),
        "drift": [
            {"id": d.state.change, "target": str(d.state.target), "reason": d.reason}
            for d in preview.drift
        ],
        "diff": diff_data(plan, preview),
        "notes": list(notes),
    }


def render_json(plan: Plan, notes: tuple[str, ...] = (), preview: Preview = NO_PREVIEW) -> str:
    return json.dumps(plan_data(plan, notes, preview), indent=2, sort_keys=True) + "\n"


def _evidence_text(evidence: tuple[Evidence, ...]) -> str:
    parts = []
    for e in evidence:
        shown = (
            "never"
            if e.value is not None and e.value >= 1e9
            else f"{e.value:g}"
            if e.value is not None
            else "-"
        )
        held = f" for {e.held_for:.0f}s" if e.held_for >= 1 else ""
        parts.append(f"{e.metric}={shown} {e.op} {e.threshold:g}{held}")
    return "; ".join(parts)


def _verdict_text(c: ProposedChange) -> str:
    v = c.verdict
    if v.decision is Decision.ADMIT:
        return "would apply"
    if v.decision is Decision.NOOP:
        return f"no change ({v.reason})"
    until = ""
    if v.until is not None and "until" not in v.reason:
        until = time.strftime(" (until %Y-%m-%d %H:%M UTC)", time.gmtime(v.until))
    return f"held by {v.guard}: {v.reason}{until}"


def _lines(plan: Plan, notes: tuple[str, ...]) -> Iterator[str]:
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(plan.taken_at))
    yield f"wg-tuner plan for namespace {plan.netns} at {stamp} (dry-run: nothing changed)"
    for note in notes:
        yield f"note: {note}"
    yield ""
    if not plan.findings:
        yield "no findings: every policy's conditions are clear"
    else:
        yield "findings:"
        for f in plan.findings:
            yield f"  {f.policy:<20} {f.subject}: {_evidence_text(f.evidence)}"
    yield ""
    if not plan.changes:
        yield "no changes proposed"
        return
    yield "changes:"
    for c in plan.changes:
        yield (
            f"  [{c.id}] {c.policy}: {c.kind} {target_text(c)} {c.before} -> {c.after}: "
            f"{_verdict_text(c)}"
        )
        yield f"      why: {c.reason}"
        yield f"      evidence: {_evidence_text(c.evidence)}"
        for p in c.probes:
            yield (
                f"      probe: {p.target} {p.outcome.value} path MTU {p.tunnel_mtu} via "
                f"{p.method.value} ({p.probes} probes)"
            )
    yield ""
    held = len(plan.changes) - len(plan.admitted)
    yield f"{len(plan.admitted)} change(s) would be applied, {held} held or no-op"


def render_text(plan: Plan, notes: tuple[str, ...] = (), preview: Preview = NO_PREVIEW) -> str:
    return "\n".join(_lines(plan, notes)) + "\n"


def render_markdown(plan: Plan, notes: tuple[str, ...] = (), preview: Preview = NO_PREVIEW) -> str:
    out = [
        f"### wg-tuner plan — `{plan.netns}`",
        "",
        f"{len(plan.findings)} finding(s), {len(plan.admitted)} change(s) would be applied.",
        "",
    ]
    out += [f"> {n}" for n in notes]
    if plan.findings:
        out += ["| policy | subject | evidence |", "|---|---|---|"]
        out += [
            f"| {f.policy} | {f.subject} | {_evidence_text(f.evidence)} |" for f in plan.findings
        ]
        out.append("")
    if plan.changes:
        out += ["| id | policy | change | verdict |", "|---|---|---|---|"]
        out += [
            f"| `{c.id}` | {c.policy} | {c.kind} `{target_text(c)}`: {c.before} → {c.after} | "
            f"{_verdict_text(c)} |"
            for c in plan.changes
        ]
    return "\n".join(out) + "\n"
