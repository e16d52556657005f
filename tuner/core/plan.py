"""plan(history, policies, context) -> Plan (pure). Same inputs, same Plan.

Findings become proposed changes: a target, its current value read from the snapshot,
the desired value (absolute, a step to a cap, or derived from evidence such as a probed
path MTU), the policy and its evidence. Two policies that want one target are resolved
by priority (then by name, never by file order); then every change is judged by the
guards, in a stable order, so a plan is reproducible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from tuner.core.evaluate import Evidence, Finding, evaluate, points
from tuner.core.guards import Candidate, Decision, PlanContext, Verdict, judge
from tuner.core.metrics import Point, value
from tuner.model.kinds import ALERT, KINDS
from tuner.model.policy import Action, Policy
from tuner.model.probe import MtuProbe
from tuner.model.snapshot import Snapshot
from tuner.model.target import Target


@dataclass(frozen=True, slots=True)
class ProposedChange:
    id: str
    policy: str
    kind: str
    target: Target
    before: str | None
    after: str | None
    reason: str
    evidence: tuple[Evidence, ...]
    priority: int
    verdict: Verdict
    persist: bool = False
    probes: tuple[MtuProbe, ...] = ()
    """The path-MTU probes behind an MTU or MSS change (their method and result)."""


@dataclass(frozen=True, slots=True)
class Plan:
    taken_at: float
    netns: str
    findings: tuple[Finding, ...]
    changes: tuple[ProposedChange, ...]

    @property
    def admitted(self) -> tuple[ProposedChange, ...]:
        return tuple(c for c in self.changes if c.verdict.decision is Decision.ADMIT)

    @property
    def changed(self) -> bool:
        return bool(self.admitted)


def _order(value: str | None) -> tuple[int, float, str]:
    """Numbers in numeric order (lowest first), then text, then nothing."""
    if value is None:
        return (2, 0.0, "")
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def change_id(policy: str, target: Target, after: str | None) -> str:
    digest = hashlib.sha256(f"{policy}|{target}|{after}".encode()).hexdigest()
    return "c-" + digest[:10]


def _stepped(action: Action, current: str | None) -> str | None:
    if current is None or not current.isdigit() or action.step is None:
        return None
    base = int(current)
    new = base * action.step if action.factor else base + action.step
    new = int(new)
    if action.maximum is not None:
        new = min(new, action.maximum)
    if action.minimum is not None:
        new = max(new, action.minimum)
    return str(new)


def _desired(
    action: Action, current: str | None, point: Point, finding: Finding, snapshot: Snapshot
) -> str | None:
    if action.derive is not None:
        iface = snapshot.interface(finding.interface) if finding.interface else None
        peer = (
            next((p for p in iface.peers if p.public_key == finding.peer), None)
            if iface and finding.peer
            else None
        )
        got = value(action.derive, point, iface, peer)
        return None if got is None else str(int(got) + action.offset)
    if action.step is not None:
        return _stepped(action, current)
    return None if action.value is None else str(action.value)


def _targets(
    policy: Policy, finding: Finding, snapshot: Snapshot
) -> list[tuple[Target, str | None]]:
    """(target, current value) pairs a finding's action touches."""
    iface = snapshot.interface(finding.interface) if finding.interface else None
    peer = (
        next((p for p in iface.peers if p.public_key == finding.peer), None)
        if iface is not None and finding.peer
        else None
    )
    return KINDS[policy.action.kind].targets(policy.action, snapshot, iface, peer)


def propose(
    findings: Sequence[Finding],
    history: Sequence[Snapshot],
    policies: Sequence[Policy],
    assume: Mapping[Target, str | None] = MappingProxyType({}),
) -> list[tuple[Policy, Finding, Target, str | None, str | None]]:
    """(policy, finding, target, current, desired); ``assume`` overrides current values
    a real run restores before it plans (recovery)."""
    by_name = {p.name: p for p in policies}
    snapshot = history[-1]
    point = points(history[-2:])[-1]
    out = []
    for finding in findings:
        policy = by_name[finding.policy]
        if policy.action.kind == ALERT:
            continue
        kind = KINDS[policy.action.kind]
        for target, seen in _targets(policy, finding, snapshot):
            current = assume.get(target, seen)
            desired = _desired(policy.action, current, point, finding, snapshot)
            if desired is not None and kind.resolve is not None:
                desired = kind.resolve(desired, snapshot, target)
            out.append((policy, finding, target, current, desired))
    return out


FLAPPING = 2
"""Underlay state changes (iface.underlay_flaps) from which no change goes near the path."""


def flapping_paths(history: Sequence[Snapshot]) -> dict[str, str]:
    """Interfaces and underlay links whose underlay is flapping, with why. Tuning cannot
    fix a flapping link, and a verification window over one judges noise."""
    snapshot = history[-1]
    point = Point(history[-2] if len(history) > 1 else None, snapshot)
    out: dict[str, str] = {}
    for iface in snapshot.interfaces:
        flaps = value("iface.underlay_flaps", point, iface, None) or 0.0
        if flaps >= FLAPPING:
            links = ",".join(iface.underlays)
            why = f"underlay {links} of {iface.name} flapping ({flaps:.0f} changes)"
            for name in (iface.name, *iface.underlays):
                out[name] = why
    return out


def plan(history: Sequence[Snapshot], policies: Sequence[Policy], ctx: PlanContext) -> Plan:
    snapshot = history[-1]
    flapping = flapping_paths(history)
    findings = evaluate(history, policies)
    proposals = propose(findings, history, policies, ctx.assume)
    # One change per target: highest priority first, then policy name; merge the same
    # policy's proposals for one target (e.g. two peers of one interface) to the lowest.
    proposals.sort(key=lambda p: (p[2], -p[0].priority, p[0].name, _order(p[4])))
    changes: list[ProposedChange] = []
    winners: dict[Target, ProposedChange] = {}
    admitted = 0
    by_policy: dict[str, int] = {}
    for policy, finding, target, before, after in proposals:
        winner = winners.get(target)
        if winner is not None and winner.policy == policy.name:
            continue  # same policy, same target: the first (lowest desired) stands
        evidence = finding.evidence
        if winner is not None:
            verdict = Verdict(
                Decision.HOLD,
                "priority",
                f"superseded by {winner.policy} (priority {winner.priority})",
            )
        elif after is None:
            verdict = Verdict(Decision.HOLD, "evidence", "no value could be derived")
        elif target.name.split("/", 1)[0] in flapping:
            verdict = Verdict(Decision.HOLD, "flapping", flapping[target.name.split("/", 1)[0]])
        else:
            verdict = judge(
                Candidate(policy, target, before, after, admitted, by_policy.get(policy.name, 0)),
                ctx,
            )
        change = ProposedChange(
            id=change_id(policy.name, target, after),
            policy=policy.name,
            kind=target.kind,
            target=target,
            before=before,
            after=after,
            reason=policy.action.why or policy.why,
            evidence=evidence,
            priority=policy.priority,
            verdict=verdict,
            persist=policy.action.persist,
            probes=tuple(p for p in snapshot.probes if p.interface == target.name)
            if KINDS[target.kind].probe_evidence
            else (),
        )
        if winner is None:
            winners[target] = change
        if verdict.decision is Decision.ADMIT:
            admitted += 1
            by_policy[policy.name] = by_policy.get(policy.name, 0) + 1
        changes.append(change)
    return Plan(snapshot.taken_at, snapshot.netns, findings, tuple(changes))


def with_blocked(ctx: PlanContext, blocked: dict[Target, str]) -> PlanContext:
    """The context with actuator ``check`` results folded in (the engine gathers them)."""
    return replace(ctx, blocked={**ctx.blocked, **blocked})
