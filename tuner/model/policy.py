"""Policies as typed values (pure). The YAML loader builds these; the core reads them."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class Scope(StrEnum):
    PEER = "peer"
    INTERFACE = "interface"
    HOST = "host"


class Op(StrEnum):
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    EQ = "=="
    NE = "!="

    @property
    def compare(self) -> Callable[[float, float], bool]:
        """The comparison itself (evaluation applies it to whole metric columns)."""
        return _COMPARE[self]

    def holds(self, left: float, right: float) -> bool:
        return _COMPARE[self](left, right)


_COMPARE: dict[Op, Callable[[float, float], bool]] = {
    Op.GT: operator.gt,
    Op.GE: operator.ge,
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.EQ: operator.eq,
    Op.NE: operator.ne,
}


@dataclass(frozen=True, slots=True)
class Condition:
    metric: str
    op: Op
    threshold: float
    hold_seconds: float = 0.0
    """The condition must have held continuously this long."""
    hold_cycles: int = 1
    """...and in at least this many consecutive evaluations."""


@dataclass(frozen=True, slots=True)
class Selector:
    interfaces: tuple[str, ...] = ("*",)
    """Globs over interface names."""
    peers: tuple[str, ...] = ()
    """Base64 public keys; empty means every peer."""
    allowed_ips: tuple[str, ...] = ()
    """CIDRs; a peer matches when one of its allowed IPs lies inside one of these."""


@dataclass(frozen=True, slots=True)
class Action:
    kind: str
    """A kind declared in ``tuner.model.kinds`` or ``alert`` (no change, a finding only)."""
    value: int | str | None = None
    """An absolute value (``set``)."""
    step: float | None = None
    """A relative change: ``+N`` / ``-N`` absolute, or a factor when ``factor`` is True."""
    factor: bool = False
    derive: str | None = None
    """A metric whose value (plus ``offset``) becomes the desired value."""
    offset: int = 0
    key: str | None = None
    """The sysctl key for sysctl actions."""
    minimum: int | None = None
    maximum: int | None = None
    persist: bool = False
    sticky: bool = False
    """While the verified change stands, no other policy sets the target back to the
    value it replaced (offload-errors: gro-forwarding-host would turn GRO on again)."""
    why: str = ""


class OnDrift(StrEnum):
    HOLD = "hold"
    """Hands off: the other writer's value stands; wg-tuner does not touch the target
    again while it keeps that value."""
    REASSERT = "reassert"
    """Set wg-tuner's value again, through every guard (rate, cooldown, contested)."""


@dataclass(frozen=True, slots=True)
class Guards:
    max_step: int | None = None
    cooldown: float = 600.0
    rate_per_hour: int = 4
    max_unverified: int = 1
    windows: tuple[tuple[int, int], ...] = ()
    """Maintenance windows as (start, end) minutes of the UTC day; empty = always."""
    on_drift: OnDrift = field(default_factory=lambda: OnDrift.HOLD)
    """What to do when someone else changes a value this policy set."""


@dataclass(frozen=True, slots=True)
class Verify:
    settle: float = 5.0
    window: float = 30.0
    health: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    summary: str
    why: str
    scope: Scope
    selector: Selector
    conditions: tuple[Condition, ...]
    match_all: bool
    action: Action
    priority: int = 50
    guards: Guards = field(default_factory=Guards)
    verify: Verify = field(default_factory=Verify)
    source: str = ""
    """file:line where the policy was defined, for reports."""
