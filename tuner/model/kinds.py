"""Each kind of change, declared once (pure).

A ``Kind`` holds everything the rest of wg-tuner needs to know about one kind of change:
its value type (parse a policy's ``set:``, normalise, compare, render as typed JSON), its
bounds, what a target names (an interface, a peer, a host knob), how targets and their
current values come out of a Snapshot, what the loader accepts in an action, the health
checks the kind declares, and whether a verified value can be persisted. The planner,
loader, guards, report, executor and health read from here instead of switching on kind
names. Adding a kind: a declaration here, its actuator (one file and a registry line)
and its tests; docs/architecture.md has the recipe.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from tuner.model.checks import HealthCheck
from tuner.model.cpumask import format_cpu_list, parse_cpu_list, spread_cpu, spread_cpus
from tuner.model.knobs import OFFLOAD_FEATURES, SYSCTL_ALLOWLIST
from tuner.model.mss import settings_from_canonical
from tuner.model.policy import Action
from tuner.model.snapshot import Implementation, Peer, Snapshot, WgInterface
from tuner.model.target import Target

Value = str | None
Typed = int | str | None
Current = list[tuple[Target, Value]]

ALERT = "alert"
"""The action that changes nothing: the finding is reported (and alerted on) only."""


class TargetScope(StrEnum):
    """What a target of the kind names."""

    INTERFACE = "interface"
    PEER = "peer"
    HOST = "host"


class BadValue(ValueError):
    """A policy value the kind refuses; ``hint`` says what it accepts."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def normalise_sysctl(text: str) -> str:
    """Sysctl text compared by value: ``4096\\t131072`` equals ``4096 131072``."""
    return " ".join(text.split())


@dataclass(frozen=True, slots=True)
class ValueType:
    """How a kind's values are spelled: canonical strings inside, typed JSON outside."""

    name: str
    parse: Callable[[object, tuple[int, int] | None], str]
    """A policy's ``set:`` (a YAML scalar) -> canonical text; raises BadValue."""
    normalise: Callable[[str], str]
    render: Callable[[str], Typed]
    schema: Mapping[str, object]
    """JSON Schema of a rendered (non-null) value, for the published output schemas."""

    def same(self, a: Value, b: Value) -> bool:
        if a is None or b is None:
            return a is b
        return self.normalise(a) == self.normalise(b)

    def typed(self, value: Value) -> Typed:
        return None if value is None else self.render(value)


def _integer(raw: object, bounds: tuple[int, int] | None) -> str:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise BadValue("must be an integer")
    if bounds is not None and not bounds[0] <= raw <= bounds[1]:
        raise BadValue(f"{raw} is outside {bounds[0]}..{bounds[1]}")
    return str(raw)


def _as_int(text: str) -> Typed:
    return int(text) if text.lstrip("-").isdigit() else text


_CPU_LIST = re.compile(r"[0-9]{1,4}(?:-[0-9]{1,4})?(?:,[0-9]{1,4}(?:-[0-9]{1,4})?){0,63}")


def _cpu_list(raw: object, bounds: tuple[int, int] | None) -> str:
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < 8192:
        return str(raw)
    if raw in (ALL_CPUS, SPREAD) or (isinstance(raw, str) and _CPU_LIST.fullmatch(raw)):
        return str(raw)
    raise BadValue(f"invalid CPU list {str(raw)[:40]!r}", "'all', 'spread' or like 0-3,6")


def _normalise_cpus(text: str) -> str:
    try:
        return format_cpu_list(parse_cpu_list(text))
    except ValueError:
        return text


def _mss(raw: object, bounds: tuple[int, int] | None) -> str:
    if raw == "pmtu":
        return "pmtu"
    return _integer(raw, bounds)


def _schema(**kw: object) -> Mapping[str, object]:
    return MappingProxyType(kw)


INTEGER = ValueType("integer", _integer, lambda t: t.strip(), _as_int, _schema(type="integer"))
SYSCTL_TEXT = ValueType(
    "sysctl text",
    _integer,
    normalise_sysctl,
    normalise_sysctl,
    _schema(type="string", pattern="^-?[0-9]+( -?[0-9]+)*$"),
)
"""Rendered as the kernel's own text: one number, or several separated by spaces."""
CPU_LIST = ValueType(
    "cpu list",
    _cpu_list,
    _normalise_cpus,
    _normalise_cpus,
    _schema(type="string", pattern="^([0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*)?$"),
)
"""The kernel's list form (``0-3,6``) whatever the file's spelling (a hex mask too)."""
MSS = ValueType(
    "mss",
    _mss,
    lambda t: t.strip(),
    _as_int,
    _schema(oneOf=[{"type": "integer"}, {"const": "pmtu"}]),
)
ALL_CPUS = "all"
"""Every CPU, for the underlay's RPS masks."""
SPREAD = "spread"
"""The underlay's queue IRQs instead of its RPS masks, queue N's on the Nth CPU."""
LATEST = "latest"
"""The offload feature of the underlay last seen turning on (``offloads_on_since``)."""


def _on_off(raw: object, bounds: tuple[int, int] | None) -> str:
    # YAML 1.1 reads a bare on/off as a boolean: both spellings mean the same.
    if raw is True or raw in ("on", "true"):
        return "on"
    if raw is False or raw in ("off", "false"):
        return "off"
    raise BadValue(f"invalid feature state {str(raw)[:20]!r}", "on or off")


ON_OFF = ValueType("on/off", _on_off, lambda t: t.strip(), lambda t: t, _schema(enum=["on", "off"]))


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    summary: str
    scope: TargetScope
    value: ValueType
    bounds: tuple[int, int] | None
    """Hard limits of a desired value, whatever a policy says."""
    targets: Callable[[Action, Snapshot, WgInterface | None, Peer | None], Current]
    """The targets a finding's action touches, with their current values."""
    value_check: str
    """The health check that reads the value back after a change."""
    checks: tuple[str, ...]
    """Further health checks the kind always runs (names from ``checks.POLICY_CHECKS``)."""
    persists: bool = False
    """Whether ``persist: true`` can write a verified value to the host's config."""
    needs_key: bool = False
    """The action names its knob (``key:``), from ``keys``."""
    keys: tuple[str, ...] = ()
    policy_scope: str | None = None
    """The policy scope an action of this kind needs (None: any)."""
    probe_evidence: bool = False
    """Changes show the path-MTU probes of their interface as evidence."""
    absent: str = ""
    """When a target's current value is None, the change is held as not revertible with
    this reason ("" : None is a value like any other, e.g. no MSS rule yet)."""
    resolve: Callable[[str, Snapshot, Target], str | None] | None = None
    """Turns a symbolic desired value (``all`` CPUs) into the target's concrete one
    (None: none can be derived)."""

    @property
    def interface(self) -> bool:
        """Whether a target's name is a WireGuard interface."""
        return self.scope is not TargetScope.HOST

    def health_checks(
        self, target: Target, desired: Value, extra: tuple[str, ...] = ()
    ) -> tuple[HealthCheck, ...]:
        """The value read back, the kind's own checks, then a policy's ``extra`` ones."""
        where: dict[str, object] = {"interface": target.name} if self.interface else {}
        if target.peer:
            where["peer"] = target.peer
        own = HealthCheck(self.value_check, {**where, "target": target.name, "value": desired})
        names = dict.fromkeys((*self.checks, *extra))
        return (own, *(HealthCheck(n, where) for n in names))

    def describe(self, target: Target) -> str:
        return f"{target.name} peer {target.peer}" if target.peer else target.name


def _mtu_targets(a: Action, s: Snapshot, i: WgInterface | None, p: Peer | None) -> Current:
    return [] if i is None else [(Target("mtu", i.name), str(i.link.mtu))]


def _keepalive_targets(a: Action, s: Snapshot, i: WgInterface | None, p: Peer | None) -> Current:
    if i is None or p is None:
        return []
    return [(Target("keepalive", i.name, p.public_key), str(p.persistent_keepalive))]


def _sysctl_targets(a: Action, s: Snapshot, i: WgInterface | None, p: Peer | None) -> Current:
    return [] if not a.key else [(Target("sysctl", a.key), s.knobs.sysctls.get(a.key))]


def _mss_targets(a: Action, s: Snapshot, i: WgInterface | None, p: Peer | None) -> Current:
    if i is None:
        return []
    return [(Target("mss_clamp", i.name), settings_from_canonical(s.knobs.nft_table).get(i.name))]


def _queue_targets(a: Action, s: Snapshot, i: WgInterface | None, p: Peer | None) -> Current:
    """The underlay's RPS masks; with ``set: spread``, its queue IRQs instead."""
    devices = set(i.underlays) if i else {u.name for u in s.underlays}
    if a.value == SPREAD:
        return [
            (Target("irq_affinity", f"irq/{irq.irq}"), irq.affinity_list)
            for irq in s.host.interrupts
            if irq.device in devices and irq.queue is not None
        ]
    return [
        (Target("irq_affinity", queue), mask)
        for queue, mask in sorted(s.knobs.rps_cpus.items())
        if queue.split("/", 1)[0] in devices
    ]


def _offload_targets(a: Action, s: Snapshot, i: WgInterface | None, p: Peer | None) -> Current:
    """The action's feature on each underlay of the interface (every underlay for a host
    policy); a device whose driver fixes the feature has no entry and no target. With
    ``key: latest``, the one feature of those underlays last seen turning on."""
    if not a.key:
        return []
    devices = sorted(i.underlays) if i else sorted(u.name for u in s.underlays)
    if a.key == LATEST:
        latest = s.knobs.latest_turned_on(devices)
        key = latest[1] if latest else ""
        return [(Target("offload", key), s.knobs.offloads[key])] if key in s.knobs.offloads else []
    return [
        (Target("offload", f"{dev}/{a.key}"), s.knobs.offloads.get(f"{dev}/{a.key}"))
        for dev in devices
        if f"{dev}/{a.key}" in s.knobs.offloads
    ]


def _socket_targets(a: Action, s: Snapshot, i: WgInterface | None, p: Peer | None) -> Current:
    """A userspace WireGuard's own sockets (kernel WireGuard has none to resize)."""
    if i is None or i.implementation is not Implementation.USERSPACE or i.socket is None:
        return []
    size = i.socket.rcvbuf
    return [(Target("socket_buffer", i.name), None if size is None else str(size))]


def _cpus_for(value: str, s: Snapshot, target: Target) -> str | None:
    """``all``: every CPU; ``spread``: queue N's IRQ on the Nth CPU (modulo their count),
    so a NIC's queues, and the flows hashed onto them, land on different cores."""
    cpus = sorted(c.cpu for c in s.host.cpus) or [0]
    if value == ALL_CPUS:
        return f"{cpus[0]}-{cpus[-1]}" if len(cpus) > 1 else str(cpus[0])
    if value == SPREAD:
        irq = next((q for q in s.host.interrupts if f"irq/{q.irq}" == target.name), None)
        if irq is None or irq.queue is None:
            return None
        return str(spread_cpu(irq.queue, spread_cpus(cpus, s.host.irq_cpus)))
    return value


MTU = Kind(
    "mtu",
    "the WireGuard interface's MTU, through netlink",
    TargetScope.INTERFACE,
    INTEGER,
    (1280, 65535),
    _mtu_targets,
    "link_mtu_is",
    ("tunnel_probe_passes", "handshakes_fresh"),
    persists=True,
    probe_evidence=True,
)
KEEPALIVE = Kind(
    "keepalive",
    "a peer's persistent keepalive (seconds, 0 = off), over the config socket or genetlink",
    TargetScope.PEER,
    INTEGER,
    (0, 65535),
    _keepalive_targets,
    "peer_keepalive_is",
    ("peer_handshake_fresh",),
    persists=True,
    policy_scope="peer",
)
SYSCTL = Kind(
    "sysctl",
    "an allowlisted sysctl under /proc/sys",
    TargetScope.HOST,
    SYSCTL_TEXT,
    (0, 2**40),
    _sysctl_targets,
    "sysctl_is",
    ("udp_errors_not_worse", "handshakes_fresh"),
    persists=True,
    needs_key=True,
    keys=SYSCTL_ALLOWLIST,
    absent="does not exist in this network namespace",
)
IRQ_AFFINITY = Kind(
    "irq_affinity",
    "IRQ affinity and RPS/XPS CPU masks of the underlay's queues",
    TargetScope.HOST,
    CPU_LIST,
    None,
    _queue_targets,
    "affinity_is",
    ("softnet_drops_not_worse", "handshakes_fresh"),
    resolve=_cpus_for,
)
MSS_CLAMP = Kind(
    "mss_clamp",
    "TCP MSS clamping for the interface, in wg-tuner's own nftables table",
    TargetScope.INTERFACE,
    MSS,
    (536, 65495),
    _mss_targets,
    "mss_clamp_is",
    ("tunnel_reachable",),
    probe_evidence=True,
)
OFFLOAD = Kind(
    "offload",
    "a NIC offload feature (GRO, UDP GRO forwarding, GSO, TSO, ...) of an underlay link",
    TargetScope.HOST,
    ON_OFF,
    None,
    _offload_targets,
    "offload_is",
    ("link_errors_not_worse", "rx_errors_not_worse", "handshakes_fresh"),
    needs_key=True,
    keys=(*OFFLOAD_FEATURES, LATEST),
    absent="fixed or not offered by this device's driver",
)

SOCKET_BUFFER = Kind(
    "socket_buffer",
    "the receive buffer of a userspace WireGuard's own UDP sockets, resized in place",
    TargetScope.INTERFACE,
    INTEGER,
    (4608, 1 << 30),
    _socket_targets,
    "socket_buffer_is",
    ("handshakes_fresh",),
    absent="unknown without sock_diag (the socket's buffer size cannot be read)",
)

KINDS: Mapping[str, Kind] = MappingProxyType(
    {k.name: k for k in (MTU, KEEPALIVE, SYSCTL, IRQ_AFFINITY, MSS_CLAMP, OFFLOAD, SOCKET_BUFFER)}
)
"""Every kind of change, by name."""

VALUE_CHECKS: frozenset[str] = frozenset(k.value_check for k in KINDS.values())
"""Checks that read a changed value back: they always gate verification."""


def typed(kind_name: str, value: Value) -> Typed:
    """A value as typed JSON for its kind (an MTU is a number, a mask a CPU list)."""
    declared = KINDS.get(kind_name)
    return value if declared is None else declared.value.typed(value)


def kind(name: str) -> Kind:
    """The declaration of ``name``; KeyError for anything else (alert changes nothing)."""
    return KINDS[name]
