"""The Snapshot: one immutable observation of a host.

Everything the decision core may look at is here, typed and frozen. Secrets (private
and preshared keys) have no field: the adapters drop them where they are read, so there
is nothing to leak from a Snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from tuner.model.nat import NatPeer
from tuner.model.probe import MtuProbe, Reachability


def frozen_map(values: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """A read-only view of a copy of ``values`` (so a Snapshot cannot be mutated)."""
    return MappingProxyType(dict(values or {}))


class Implementation(StrEnum):
    USERSPACE = "userspace"
    KERNEL = "kernel"


ACTIVE_HANDSHAKE_MAX = 180.0
"""REJECT_AFTER_TIME: an active peer's handshake is never older than this (seconds)."""


@dataclass(frozen=True, slots=True)
class LinkCounters:
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    tx_packets: int = 0
    rx_errors: int = 0
    tx_errors: int = 0
    rx_dropped: int = 0
    tx_dropped: int = 0
    carrier_changes: int = 0


@dataclass(frozen=True, slots=True)
class Link:
    name: str
    ifindex: int
    kind: str
    mtu: int
    operstate: str
    counters: LinkCounters = LinkCounters()


@dataclass(frozen=True, slots=True)
class Peer:
    public_key: str
    endpoint: str | None
    allowed_ips: tuple[str, ...]
    latest_handshake: float
    """Unix time of the last handshake; 0.0 means never."""
    rx_bytes: int
    tx_bytes: int
    persistent_keepalive: int
    """Seconds; 0 means off."""


@dataclass(frozen=True, slots=True)
class SocketStats:
    """WireGuard's own UDP sockets on its listen port (one per family), summed."""

    sockets: int
    drops: int
    """Datagrams the kernel dropped on these sockets (receive buffer full, mostly)."""
    rx_queue: int
    """Bytes waiting to be read."""
    rcvbuf: int | None = None
    """Receive buffer size in bytes (the largest socket's); None from /proc/net/udp."""
    sndbuf: int | None = None


@dataclass(frozen=True, slots=True)
class ProcessCpu:
    """A userspace WireGuard's process (where its crypto runs): CPU time per thread."""

    pid: int
    threads: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    """Thread id -> user + system time in USER_HZ ticks (/proc/PID/task/TID/stat)."""

    @property
    def total(self) -> int:
        return sum(self.threads.values())


@dataclass(frozen=True, slots=True)
class WgInterface:
    name: str
    implementation: Implementation
    public_key: str | None
    listen_port: int
    fwmark: int
    link: Link
    peers: tuple[Peer, ...]
    underlays: tuple[str, ...] = ()
    """Names of the links that carry this interface's peer endpoints."""
    peer_names: Mapping[str, str] = field(default_factory=frozen_map, hash=False)
    """Friendly names by public key, from the configs of the tools that manage the peers
    (tuner/observe/peer_names.py); peers without one are absent."""
    socket: SocketStats | None = None
    """Its UDP sockets, when visible from this namespace (a kernel interface moved here
    from another namespace keeps its sockets there)."""
    process: ProcessCpu | None = None
    """The userspace implementation's process (the config socket's peer); None for
    kernel WireGuard, whose crypto runs in softirq (``host.cpus``)."""
    sources: tuple[str, ...] = ()
    """Local source addresses of the routes to its peers' endpoints (NAT detection)."""


USER_HZ = 100
"""/proc/stat and /proc/PID/task/TID/stat count in USER_HZ ticks: 100 for userspace on Linux."""


@dataclass(frozen=True, slots=True)
class CpuSoftnet:
    cpu: int
    processed: int
    dropped: int
    time_squeeze: int


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """Cumulative jiffies per state, from /proc/stat."""

    cpu: int
    user: int
    nice: int
    system: int
    idle: int
    iowait: int
    irq: int
    softirq: int
    steal: int

    @property
    def total(self) -> int:
        return (
            self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
        )


@dataclass(frozen=True, slots=True)
class Interrupt:
    irq: int
    name: str
    per_cpu: tuple[int, ...]
    affinity_list: str | None
    """Normalised CPU list (e.g. ``0-3``); None when unreadable."""
    device: str = ""
    """The underlay link it belongs to."""
    queue: int | None = None
    """Its queue's number (``eth0-TxRx-3``, ``virtio0-input.3``: 3); None for a
    device's other IRQs (``virtio0-config``, a single-vector ``eth1``)."""


@dataclass(frozen=True, slots=True)
class Conntrack:
    count: int
    max: int


@dataclass(frozen=True, slots=True)
class Knobs:
    """Current value of every knob wg-tuner may change."""

    sysctls: Mapping[str, str | None] = field(default_factory=frozen_map)
    """Normalised sysctl values; None when the key does not exist in this namespace."""
    rps_cpus: Mapping[str, str] = field(default_factory=frozen_map)
    """``DEV/rx-N`` -> normalised CPU list."""
    xps_cpus: Mapping[str, str] = field(default_factory=frozen_map)
    """``DEV/tx-N`` -> normalised CPU list."""
    nft_table: str | None = None
    """wg-tuner's own nftables table as canonical JSON, or None when absent."""
    offloads: Mapping[str, str] = field(default_factory=frozen_map)
    """``DEV/feature`` -> ``on``/``off`` for the allowlisted NIC features an underlay's
    driver lets change (fixed ones are absent)."""
    offloads_on_since: Mapping[str, float] = field(default_factory=frozen_map)
    """``DEV/feature`` -> wall-clock time the observer first saw it on after seeing it
    off, for the features now on (tuner/observe/offload_history.py)."""

    def latest_turned_on(self, devices: Iterable[str]) -> tuple[float, str] | None:
        """(when, ``DEV/feature``) of the feature of ``devices`` last seen turning on."""
        names = set(devices)
        found = [(t, k) for k, t in self.offloads_on_since.items() if k.split("/")[0] in names]
        return max(found) if found else None


@dataclass(frozen=True, slots=True)
class LogEvent:
    """A kernel log line of a kind wg-tuner counts (tuner/observe/logs.py)."""

    kind: str
    device: str
    """The link the line names, or ""."""
    at: float
    """CLOCK_MONOTONIC seconds (the Snapshot's ``monotonic`` clock)."""


@dataclass(frozen=True, slots=True)
class HostCounters:
    snmp: Mapping[str, Mapping[str, int]] = field(default_factory=frozen_map)
    """/proc/net/snmp: protocol (Ip, Icmp, Udp, ...) -> counter -> value."""
    netstat: Mapping[str, Mapping[str, int]] = field(default_factory=frozen_map)
    """/proc/net/netstat: TcpExt, IpExt, ... -> counter -> value."""
    softnet: tuple[CpuSoftnet, ...] = ()
    cpus: tuple[CpuTimes, ...] = ()
    interrupts: tuple[Interrupt, ...] = ()
    irq_cpus: str | None = None
    """CPUs new IRQs may go to (/proc/irq/default_smp_affinity, as a list): cores kept
    free of IRQs (``irqaffinity=``, tuned's cpu-partitioning) are not in it; None when
    unreadable."""
    conntrack: Conntrack | None = None
    log_events: tuple[LogEvent, ...] = ()
    """Classified kernel log events of the last 10 minutes (empty without /dev/kmsg)."""
    log_counts: Mapping[str, int] = field(default_factory=frozen_map)
    """Events per kind since this observer started (the exported counters)."""
    log_available: bool = False
    """Whether the kernel log could be read (no /dev/kmsg in most containers)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken_at: float
    """Wall-clock Unix time."""
    monotonic: float
    """Monotonic clock, for rates that survive wall-clock jumps."""
    netns: str
    """Identity of the network namespace observed (``net:[inode]``)."""
    interfaces: tuple[WgInterface, ...]
    underlays: tuple[Link, ...]
    host: HostCounters
    knobs: Knobs
    notes: tuple[str, ...] = field(default=())
    """Things observation skipped (a vanished interface, a missing tool)."""
    errors: tuple[str, ...] = field(default=())
    """Interfaces that could not be read, each message naming the interface."""
    probes: tuple[MtuProbe, ...] = field(default=())
    """Active path-MTU probes made for this snapshot (empty unless asked for)."""
    reachability: tuple[Reachability, ...] = field(default=())
    nat: tuple[NatPeer, ...] = field(default=())
    """What the observer has learnt about peers' NATs (only peers whose endpoint churned)."""

    def interface(self, name: str) -> WgInterface | None:
        for iface in self.interfaces:
            if iface.name == name:
                return iface
        return None

    def probe_for(self, interface: str, peer: str) -> MtuProbe | None:
        for probe in self.probes:
            if probe.interface == interface and probe.peer == peer:
                return probe
        return None

    def handshake_age(self, peer: Peer) -> float | None:
        """Seconds since the peer's last handshake, or None when it never had one."""
        if peer.latest_handshake <= 0:
            return None
        return max(0.0, self.taken_at - peer.latest_handshake)
