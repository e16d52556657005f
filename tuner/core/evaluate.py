"""evaluate(history, policies) -> findings (pure).

A policy's conditions are checked at every point of the history (each snapshot with
the one before it). A condition is met when it held in the newest evaluations for at
least ``hold_cycles`` evaluations and ``hold_seconds`` of time. Findings carry the
evidence: metric, value, comparison, threshold, how long it has held.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from tuner.core.metrics import Point, value
from tuner.model.policy import Condition, Policy, Scope, Selector
from tuner.model.snapshot import Peer, Snapshot, WgInterface


@dataclass(frozen=True, slots=True)
class Evidence:
    metric: str
    value: float | None
    op: str
    threshold: float
    held_for: float
    cycles: int


@dataclass(frozen=True, slots=True)
class Finding:
    policy: str
    scope: Scope
    interface: str | None
    peer: str | None
    evidence: tuple[Evidence, ...]
    peer_name: str | None = None
    """The peer's friendly name, where a config gives one."""

    @property
    def subject(self) -> str:
        if self.peer:
            named = f" ({self.peer_name})" if self.peer_name else ""
            return f"{self.interface} peer {self.peer[:8]}...{named}"
        return self.interface or "host"


def points(history: Sequence[Snapshot]) -> list[Point]:
    """One Point per snapshot; rates and peer indexes are built only if a metric asks."""
    return [Point(history[i - 1] if i else None, cur) for i, cur in enumerate(history)]


def _peer_selected(selector: Selector, peer: Peer) -> bool:
    if selector.peers and peer.public_key not in selector.peers:
        return False
    if not selector.allowed_ips:
        return True
    nets = [ipaddress.ip_network(c, strict=False) for c in selector.allowed_ips]
    for cidr in peer.allowed_ips:
        try:
            mine = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            continue
        if any(mine.version == n.version and mine.subnet_of(n) for n in nets):  # type: ignore[arg-type]
            return True
    return False


def _screen(policy: Policy, point: Point, iface: WgInterface) -> list[int]:
    """Indexes of the selected peers of ``iface`` whose conditions hold at ``point``.

    A condition that does not hold at the newest point cannot be met (it must hold
    *now*), so this one-pass screen over metric columns leaves the history walk to the
    few peers that might match, instead of every peer of a 10,000-peer interface.
    """
    sel = policy.selector
    peers = iface.peers
    idx: list[int] = (
        [k for k, p in enumerate(peers) if _peer_selected(sel, p)]
        if sel.peers or sel.allowed_ips
        else list(range(len(peers)))
    )
    if policy.match_all:
        for c in policy.conditions:
            if not idx:
                break
            col, cmp, t = point.column(c.metric, iface), c.op.compare, c.threshold
            idx = [k for k in idx if (v := col[k]) is not None and cmp(v, t)]
        return idx
    keep: set[int] = set()
    for c in policy.conditions:
        col, cmp, t = point.column(c.metric, iface), c.op.compare, c.threshold
        keep.update(k for k in idx if (v := col[k]) is not None and cmp(v, t))
    return sorted(keep)


def candidates(policy: Policy, point: Point) -> list[tuple[WgInterface | None, Peer | None]]:
    """The subjects worth a history walk: for peer policies, those passing ``_screen``."""
    if policy.scope is not Scope.PEER:
        return subjects(policy, point.cur)
    out: list[tuple[WgInterface | None, Peer | None]] = []
    for iface in point.cur.interfaces:
        if any(fnmatch.fnmatchcase(iface.name, g) for g in policy.selector.interfaces):
            out += [(iface, iface.peers[k]) for k in _screen(policy, point, iface)]
    return out


def subjects(policy: Policy, snapshot: Snapshot) -> list[tuple[WgInterface | None, Peer | None]]:
    if policy.scope is Scope.HOST:
        return [(None, None)]
    out: list[tuple[WgInterface | None, Peer | None]] = []
    for iface in snapshot.interfaces:
        if not any(fnmatch.fnmatchcase(iface.name, g) for g in policy.selector.interfaces):
            continue
        if policy.scope is Scope.INTERFACE:
            out.append((iface, None))
        else:
            out += [(iface, p) for p in iface.peers if _peer_selected(policy.selector, p)]
    return out


def _held(
    condition: Condition, pts: list[Point], iface_name: str | None, peer_key: str | None
) -> Evidence | None:
    """Evidence when the condition holds now and long enough, else None."""
    cycles = 0
    since: float | None = None
    newest: float | None = None
    now = pts[-1].cur.taken_at
    for point in reversed(pts):
        iface = point.cur.interface(iface_name) if iface_name else None
        if iface_name and iface is None:
            break
        peer = None
        if peer_key and iface is not None:
            peer = point.peer(iface.name, peer_key)
            if peer is None:
                break
        got = value(condition.metric, point, iface, peer)
        if cycles == 0:
            newest = got
        if got is None or not condition.op.holds(got, condition.threshold):
            break
        cycles += 1
        since = point.cur.taken_at
        if cycles >= condition.hold_cycles and now - since >= condition.hold_seconds:
            break  # held long enough: older history cannot change the verdict
    if cycles == 0 or since is None:
        return None
    held_for = pts[-1].cur.taken_at - since
    if cycles < condition.hold_cycles or held_for < condition.hold_seconds:
        return None
    return Evidence(
        condition.metric, newest, condition.op.value, condition.threshold, held_for, cycles
    )


def evaluate(history: Sequence[Snapshot], policies: Sequence[Policy]) -> tuple[Finding, ...]:
    if not history:
        return ()
    pts = points(history)
    findings: list[Finding] = []
    for policy in sorted(policies, key=lambda p: p.name):
        for iface, peer in candidates(policy, pts[-1]):
            iface_name = iface.name if iface else None
            peer_key = peer.public_key if peer else None
            evidence = [_held(c, pts, iface_name, peer_key) for c in policy.conditions]
            met = [e for e in evidence if e is not None]
            if (policy.match_all and len(met) == len(evidence)) or (not policy.match_all and met):
                name = iface.peer_names.get(peer_key) if iface and peer_key else None
                findings.append(
                    Finding(policy.name, policy.scope, iface_name, peer_key, tuple(met), name)
                )
    return tuple(findings)
