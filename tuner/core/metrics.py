"""The metrics policies may name, computed from two consecutive snapshots (pure).

Each metric has a scope: ``peer.*`` and ``probe.*`` need a peer, ``iface.*`` an
interface, everything else is host-wide. A policy may use metrics of its own scope
or a wider one. A metric that cannot be computed (no previous snapshot for a rate, no
probe) is None, and a condition on None is false.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tuner.model.cpumask import spread_cpu, spread_cpus
from tuner.model.nat import LADDER, LIFETIME_CAP, NatPeer, behind_nat, endpoint_host, keepalive_fit
from tuner.model.nat import lookup as nat_lookup
from tuner.model.probe import OVERHEAD_V4, OVERHEAD_V6, ProbeOutcome
from tuner.model.rates import (
    Rates,
    counter_deltas,
    delta,
    peer_deltas,
    rx_errors_grown,
    sent_unanswered,
)
from tuner.model.rates import rates as compute_rates
from tuner.model.snapshot import USER_HZ, Implementation, Interrupt, Peer, Snapshot, WgInterface

NEVER = 1e9
"""Handshake age reported for a peer that never completed a handshake."""


class Point:
    """One evaluation: a snapshot and the one before it, with rates computed on demand
    and peers indexed, so evaluating every peer of a 10,000-peer host stays linear."""

    __slots__ = (
        "_columns",
        "_counters",
        "_deltas",
        "_index",
        "_nat",
        "_prev_index",
        "_rates",
        "cur",
        "prev",
    )

    def __init__(self, prev: Snapshot | None, cur: Snapshot, rates: Rates | None = None) -> None:
        self.prev = prev
        self.cur = cur
        self._rates = rates
        self._index: dict[tuple[str, str], Peer] | None = None
        self._prev_index: dict[tuple[str, str], Peer] | None = None
        self._columns: dict[tuple[str, str], Sequence[float | None]] = {}
        self._deltas: dict[str, list[tuple[int, int] | None]] = {}
        self._counters: Mapping[str, Mapping[str, int]] | None = None
        self._nat: Mapping[tuple[str, str], NatPeer] | None = None

    def nat(self, interface: str, key: str) -> NatPeer | None:
        """What the observer learnt about this peer's NAT (None: it never churned)."""
        if self._nat is None:
            self._nat = nat_lookup(self.cur.nat)
        return self._nat.get((interface, key))

    @property
    def rates(self) -> Rates | None:
        if self._rates is None and self.prev is not None:
            self._rates = compute_rates(self.prev, self.cur)
        return self._rates

    @property
    def interval(self) -> float | None:
        if self.prev is None:
            return None
        interval = self.cur.monotonic - self.prev.monotonic
        return interval if interval > 0 else None

    @property
    def counters(self) -> Mapping[str, Mapping[str, int]] | None:
        """Host counter growth since the previous snapshot (no per-peer work)."""
        if self._rates is not None:
            return self._rates.counters
        if self._counters is None and self.interval is not None:
            assert self.prev is not None  # noqa: S101 - interval implies prev
            self._counters = counter_deltas(self.prev, self.cur)
        return self._counters

    @staticmethod
    def _build(snapshot: Snapshot) -> dict[tuple[str, str], Peer]:
        return {(i.name, p.public_key): p for i in snapshot.interfaces for p in i.peers}

    def peer(self, interface: str, key: str) -> Peer | None:
        if self._index is None:
            self._index = self._build(self.cur)
        return self._index.get((interface, key))

    def prev_peer(self, interface: str, key: str) -> Peer | None:
        if self.prev is None:
            return None
        if self._prev_index is None:
            self._prev_index = self._build(self.prev)
        return self._prev_index.get((interface, key))

    def column(self, metric: str, iface: WgInterface) -> Sequence[float | None]:
        """``metric`` for every peer of ``iface``, in ``iface.peers`` order (cached).

        Equal to calling the metric peer by peer; metrics that have a column function
        compute it in one pass, which is what keeps 10,000 peers cheap to screen.
        """
        cached = self._columns.get((metric, iface.name))
        if cached is None:
            m = CATALOGUE[metric]
            if m.column is not None:
                cached = m.column(self, iface)
            elif m.peer is not None:
                fn = m.peer
                cached = [fn(self, iface, peer) for peer in iface.peers]
            else:
                cached = [value(metric, self, iface, None)] * len(iface.peers)
            self._columns[(metric, iface.name)] = cached
        return cached

    def deltas(self, iface: WgInterface) -> list[tuple[int, int] | None]:
        """(rx, tx) byte growth per peer of ``iface`` since the previous snapshot, in
        ``iface.peers`` order; None for a peer that is new (or when there is no rate)."""
        cached = self._deltas.get(iface.name)
        if cached is None:
            before = (
                self.prev.interface(iface.name)
                if self.prev is not None and self.interval is not None
                else None
            )
            cached = peer_deltas(before, iface)
            self._deltas[iface.name] = cached
        return cached


PeerFn = Callable[[Point, WgInterface, Peer], float | None]
ColumnFn = Callable[[Point, WgInterface], Sequence[float | None]]
IfaceFn = Callable[[Point, WgInterface], float | None]
HostFn = Callable[[Point], float | None]


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    scope: str
    unit: str
    doc: str
    peer: PeerFn | None = None
    iface: IfaceFn | None = None
    host: HostFn | None = None
    column: ColumnFn | None = None
    """Optional: the peer metric for all peers of an interface in one pass."""


def _peer_rate(p: Point, i: WgInterface, peer: Peer) -> tuple[int, int] | None:
    if p.rates is None:
        return None
    rate = p.rates.peers.get((i.name, peer.public_key))
    return None if rate is None else (rate.rx_delta, rate.tx_delta)


def handshake_age(p: Point, i: WgInterface, peer: Peer) -> float:
    age = p.cur.handshake_age(peer)
    return NEVER if age is None else age


def never_handshaken(p: Point, i: WgInterface, peer: Peer) -> float:
    return float(peer.latest_handshake <= 0 and peer.endpoint is not None)


def tx_without_rx(p: Point, i: WgInterface, peer: Peer) -> float | None:
    r = _peer_rate(p, i, peer)
    return None if r is None else float(sent_unanswered(*r))


def demand(p: Point, i: WgInterface, peer: Peer) -> float | None:
    r = _peer_rate(p, i, peer)
    return None if r is None else float(r[0] > 0 or r[1] > 0)


def byte_rate(which: int) -> PeerFn:
    def fn(p: Point, i: WgInterface, peer: Peer) -> float | None:
        r = _peer_rate(p, i, peer)
        return None if r is None or p.interval is None else r[which] / p.interval

    return fn


def endpoint_changed(p: Point, i: WgInterface, peer: Peer) -> float | None:
    before = p.prev_peer(i.name, peer.public_key)
    if before is None:
        return None
    return float(before.endpoint != peer.endpoint and before.endpoint is not None)


def churn_with_keepalive(p: Point, i: WgInterface, peer: Peer) -> float | None:
    """1 when the endpoint changed although the same keepalive was on before and after:
    the keepalive does not keep this NAT's mapping open."""
    before = p.prev_peer(i.name, peer.public_key)
    if before is None:
        return None
    keepalive = before.persistent_keepalive
    return float(
        keepalive > 0
        and peer.persistent_keepalive == keepalive
        and before.endpoint is not None
        and before.endpoint != peer.endpoint
    )


def nat_lifetime(p: Point, i: WgInterface, peer: Peer) -> float:
    """The bound, capped: a peer no churn has bounded yet reads as the cap."""
    nat = p.nat(i.name, peer.public_key)
    return LIFETIME_CAP if nat is None or nat.lifetime is None else min(nat.lifetime, LIFETIME_CAP)


def nat_churns(p: Point, i: WgInterface, peer: Peer) -> float:
    nat = p.nat(i.name, peer.public_key)
    return 0.0 if nat is None else float(nat.churns)


def nat_keepalive_fit(p: Point, i: WgInterface, peer: Peer) -> float:
    churning = churn_with_keepalive(p, i, peer) == 1.0
    return float(keepalive_fit(nat_lifetime(p, i, peer), peer.persistent_keepalive, churning))


def nat_here(p: Point, i: WgInterface, peer: Peer) -> float | None:
    if not peer.endpoint:
        return None
    host = endpoint_host(peer.endpoint)
    return None if host is None else float(behind_nat(host, i.sources))


def handshake_age_column(p: Point, i: WgInterface) -> list[float | None]:
    now = p.cur.taken_at
    return [
        max(0.0, now - peer.latest_handshake) if peer.latest_handshake > 0 else NEVER
        for peer in i.peers
    ]


def never_handshaken_column(p: Point, i: WgInterface) -> list[float | None]:
    return [float(peer.latest_handshake <= 0 and peer.endpoint is not None) for peer in i.peers]


def tx_without_rx_column(p: Point, i: WgInterface) -> list[float | None]:
    return [None if d is None else float(sent_unanswered(*d)) for d in p.deltas(i)]


def demand_column(p: Point, i: WgInterface) -> list[float | None]:
    return [None if d is None else float(d[0] > 0 or d[1] > 0) for d in p.deltas(i)]


def endpoint_changed_column(p: Point, i: WgInterface) -> list[float | None]:
    before = p.prev.interface(i.name) if p.prev is not None else None
    if before is None:
        return [None] * len(i.peers)
    old = {peer.public_key: peer.endpoint for peer in before.peers}
    missing = object()
    return [
        None
        if (e := old.get(peer.public_key, missing)) is missing
        else float(e != peer.endpoint and e is not None)
        for peer in i.peers
    ]


def keepalive_column(p: Point, i: WgInterface) -> list[float | None]:
    return [float(peer.persistent_keepalive) for peer in i.peers]


def probe_unreachable_column(p: Point, i: WgInterface) -> list[float | None]:
    if not p.cur.probes:
        return [None] * len(i.peers)
    return [probe_unreachable(p, i, peer) for peer in i.peers]


def probe_mtu(p: Point, i: WgInterface, peer: Peer) -> float | None:
    probe = p.cur.probe_for(i.name, peer.public_key)
    if probe is None or probe.outcome is not ProbeOutcome.OK or probe.tunnel_mtu is None:
        return None
    return float(probe.tunnel_mtu)


def probe_deficit(p: Point, i: WgInterface, peer: Peer) -> float | None:
    mtu = probe_mtu(p, i, peer)
    return None if mtu is None else max(0.0, i.link.mtu - mtu)


def probe_unreachable(p: Point, i: WgInterface, peer: Peer) -> float | None:
    probe = p.cur.probe_for(i.name, peer.public_key)
    return None if probe is None else float(probe.outcome is ProbeOutcome.UNREACHABLE)


def iface_min_probe(p: Point, i: WgInterface) -> float | None:
    """The smallest probed tunnel MTU, never above what the underlay link carries
    unfragmented: a probe whose packets were fragmented on the way passes sizes the link
    cannot carry whole (veth even accepts 4 bytes over its MTU, room for a VLAN tag)."""
    if not p.cur.probes:
        return None
    values = [v for peer in i.peers if (v := probe_mtu(p, i, peer)) is not None]
    if not values:
        return None
    fit = underlay_fit_mtu(p, i)
    return min(values) if fit is None else min(*values, fit)


def iface_deficit(p: Point, i: WgInterface) -> float | None:
    low = iface_min_probe(p, i)
    return None if low is None else max(0.0, i.link.mtu - low)


def underlay_fit_mtu(p: Point, i: WgInterface) -> float | None:
    """The largest tunnel MTU whose outer packets fit every link under the interface's
    endpoints without fragmenting (80 bytes of overhead once any endpoint is IPv6)."""
    mtus = [link.mtu for link in p.cur.underlays if link.name in i.underlays]
    if not mtus:
        return None
    v6 = any(peer.endpoint and peer.endpoint.startswith("[") for peer in i.peers)
    return float(min(mtus) - (OVERHEAD_V6 if v6 else OVERHEAD_V4))


def mtu_over_underlay(p: Point, i: WgInterface) -> float | None:
    fit = underlay_fit_mtu(p, i)
    return None if fit is None else max(0.0, i.link.mtu - fit)


def socket_drops_rate(p: Point, i: WgInterface) -> float | None:
    """Drops on WireGuard's own sockets per second (a reopened socket starts again at 0)."""
    before = p.prev.interface(i.name) if p.prev is not None else None
    if before is None or before.socket is None or i.socket is None or p.interval is None:
        return None
    if before.listen_port != i.listen_port:
        return None
    return delta(before.socket.drops, i.socket.drops) / p.interval


def socket_rcvbuf_at_cap(p: Point, i: WgInterface) -> float | None:
    """1 when the socket holds exactly what net.core.rmem_max allows (the kernel doubles
    the capped request: 2 x rmem_max), so it asked for more; 0 below (it took
    rmem_default) and above (forced past the cap: a privileged wireguard-go's
    SO_RCVBUFFORCE, or udp-socket-grow)."""
    cap = p.cur.knobs.sysctls.get("net.core.rmem_max")
    if i.socket is None or i.socket.rcvbuf is None or cap is None or not cap.isdigit():
        return None
    return float(i.socket.rcvbuf == 2 * int(cap))


def log_count(kind: str, seconds: float) -> HostFn:
    """Kernel log events of ``kind`` in the last ``seconds`` (None without /dev/kmsg)."""

    def fn(p: Point) -> float | None:
        if not p.cur.host.log_available:
            return None
        since = p.cur.monotonic - seconds
        return float(sum(1 for e in p.cur.host.log_events if e.kind == kind and e.at >= since))

    return fn


FLAP_WINDOW = 600.0


def underlay_flaps(p: Point, i: WgInterface) -> float | None:
    """Link state changes of the interface's underlays: carrier changes since the last
    snapshot plus link up/down lines in the kernel log of the last 10 minutes."""
    devices = set(i.underlays)
    since = p.cur.monotonic - FLAP_WINDOW
    logged = sum(
        1
        for e in p.cur.host.log_events
        if e.kind in ("link_down", "link_up") and e.device in devices and e.at >= since
    )
    carrier = 0
    if p.prev is not None:
        old = {link.name: link.counters.carrier_changes for link in p.prev.underlays}
        carrier = sum(
            delta(old[link.name], link.counters.carrier_changes)
            for link in p.cur.underlays
            if link.name in devices and link.name in old
        )
    return float(max(logged, carrier))


def underlay_feature_off(feature: str, needs: str | None = None) -> IfaceFn:
    """1 when an underlay of the interface has ``feature`` off and its driver lets it
    change (and ``needs`` on, for a feature that depends on another); else 0."""

    def fn(p: Point, i: WgInterface) -> float | None:
        offloads = p.cur.knobs.offloads
        return float(
            any(
                offloads.get(f"{dev}/{feature}") == "off"
                and (needs is None or offloads.get(f"{dev}/{needs}") == "on")
                for dev in i.underlays
            )
        )

    return fn


def rx_errors_rate(p: Point, i: WgInterface) -> float | None:
    """Checksum errors (host-wide) plus its underlays' rx errors, per second."""
    if p.prev is None or p.interval is None:
        return None
    return rx_errors_grown(p.prev, p.cur, i.underlays) / p.interval


def offload_on_age(p: Point, i: WgInterface) -> float | None:
    """Seconds since a feature of its underlays was last seen turning on (None: none
    was seen turning on)."""
    latest = p.cur.knobs.latest_turned_on(i.underlays)
    return None if latest is None else max(0.0, p.cur.taken_at - latest[0])


def _thread_cores(p: Point, i: WgInterface) -> list[float] | None:
    """Cores each thread of the WireGuard process used between the two snapshots."""
    before = p.prev.interface(i.name) if p.prev is not None else None
    if before is None or before.process is None or i.process is None or p.interval is None:
        return None
    if before.process.pid != i.process.pid:
        return None  # restarted: nothing to compare with
    old = before.process.threads
    return [
        delta(old[tid], ticks) / USER_HZ / p.interval
        for tid, ticks in i.process.threads.items()
        if tid in old
    ]


def process_cores(p: Point, i: WgInterface) -> float | None:
    cores = _thread_cores(p, i)
    return sum(cores) if cores is not None else None


def process_hot_thread(p: Point, i: WgInterface) -> float | None:
    cores = _thread_cores(p, i)
    return max(cores, default=0.0) if cores is not None else None


def process_cpu_share(p: Point, i: WgInterface) -> float | None:
    """The process's CPU over all cores (1.0: every core busy with it)."""
    used, ncpu = process_cores(p, i), len(p.cur.host.cpus)
    return used / ncpu if used is not None and ncpu else None


def link_rate(field: str) -> IfaceFn:
    def fn(p: Point, i: WgInterface) -> float | None:
        before = p.prev.interface(i.name) if p.prev is not None else None
        if before is None or p.interval is None:
            return None
        return delta(getattr(before.link.counters, field), getattr(i.link.counters, field)) / (
            p.interval
        )

    return fn


def avg_packet_size(p: Point, i: WgInterface) -> float | None:
    """Bytes per packet through the interface, both directions (small: pps-bound)."""
    before = p.prev.interface(i.name) if p.prev is not None else None
    if before is None:
        return None
    old, new = before.link.counters, i.link.counters
    packets = delta(old.rx_packets, new.rx_packets) + delta(old.tx_packets, new.tx_packets)
    size = delta(old.rx_bytes, new.rx_bytes) + delta(old.tx_bytes, new.tx_bytes)
    return size / packets if packets else None


def counter_rate(proto: str, name: str) -> HostFn:
    def fn(p: Point) -> float | None:
        counters, interval = p.counters, p.interval
        if counters is None or interval is None:
            return None
        return counters.get(proto, {}).get(name, 0) / interval

    return fn


def softnet_drops(p: Point) -> float | None:
    if p.prev is None or p.interval is None:
        return None
    old = {row.cpu: row for row in p.prev.host.softnet}
    total = sum(
        delta(old[row.cpu].dropped, row.dropped) for row in p.cur.host.softnet if row.cpu in old
    )
    return total / p.interval


def _core_shares(p: Point) -> list[tuple[float, float]]:
    """(busy share, softirq share) per core between the two snapshots."""
    if p.prev is None:
        return []
    old = {c.cpu: c for c in p.prev.host.cpus}
    out = []
    for c in p.cur.host.cpus:
        before = old.get(c.cpu)
        if before is None:
            continue
        total = c.total - before.total
        if total <= 0:
            continue
        idle = (c.idle + c.iowait) - (before.idle + before.iowait)
        out.append((1 - idle / total, (c.softirq - before.softirq) / total))
    return out


def cpu_max_busy(p: Point) -> float | None:
    shares = _core_shares(p)
    return max(s[0] for s in shares) if shares else None


def cpu_min_busy(p: Point) -> float | None:
    shares = _core_shares(p)
    return min(s[0] for s in shares) if shares else None


def cpu_hot_softirq(p: Point) -> float | None:
    """Softirq share of the busiest core."""
    shares = _core_shares(p)
    return max(shares)[1] if shares else None


def _queue_irqs(p: Point) -> list[Interrupt]:
    devices = {u.name for u in p.cur.underlays}
    return [q for q in p.cur.host.interrupts if q.device in devices and q.queue is not None]


def irq_queues(p: Point) -> float:
    return float(len(_queue_irqs(p)))


def irq_unspread(p: Point) -> float:
    """Queue IRQs not yet on the CPU ``set: spread`` would give them."""
    cpus = spread_cpus([c.cpu for c in p.cur.host.cpus], p.cur.host.irq_cpus)
    return float(
        sum(q.affinity_list != str(spread_cpu(q.queue or 0, cpus)) for q in _queue_irqs(p))
    )


def conntrack_fill(p: Point) -> float | None:
    ct = p.cur.host.conntrack
    return ct.count / ct.max if ct and ct.max > 0 else None


def sysctl_value(key: str) -> HostFn:
    def fn(p: Point) -> float | None:
        value = p.cur.knobs.sysctls.get(key)
        return float(value) if value is not None and value.isdigit() else None

    return fn


def implementation(kind: Implementation) -> HostFn:
    def fn(p: Point) -> float | None:
        return float(any(i.implementation is kind for i in p.cur.interfaces))

    return fn


CATALOGUE: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "peer.handshake_age",
            "peer",
            "s",
            "seconds since the last handshake (1e9: never)",
            peer=handshake_age,
            column=handshake_age_column,
        ),
        Metric(
            "peer.never_handshaken",
            "peer",
            "bool",
            "1 when the peer has an endpoint but no handshake ever completed",
            peer=never_handshaken,
            column=never_handshaken_column,
        ),
        Metric(
            "peer.tx_without_rx",
            "peer",
            "bool",
            "1 when tx grew and rx did not",
            peer=tx_without_rx,
            column=tx_without_rx_column,
        ),
        Metric(
            "peer.demand",
            "peer",
            "bool",
            "1 when tx or rx grew",
            peer=demand,
            column=demand_column,
        ),
        Metric("peer.rx_rate", "peer", "B/s", "bytes received per second", peer=byte_rate(0)),
        Metric("peer.tx_rate", "peer", "B/s", "bytes sent per second", peer=byte_rate(1)),
        Metric(
            "peer.endpoint_changed",
            "peer",
            "bool",
            "1 when the endpoint changed",
            peer=endpoint_changed,
            column=endpoint_changed_column,
        ),
        Metric(
            "peer.keepalive",
            "peer",
            "s",
            "persistent keepalive (0: off)",
            peer=lambda p, i, peer: float(peer.persistent_keepalive),
            column=keepalive_column,
        ),
        Metric(
            "peer.churn_with_keepalive",
            "peer",
            "bool",
            "1 when the endpoint changed while the same persistent keepalive was on",
            peer=churn_with_keepalive,
        ),
        Metric(
            "peer.nat_churns",
            "peer",
            "count",
            "endpoint replacements seen since wg-tuner started",
            peer=nat_churns,
        ),
        Metric(
            "peer.nat_lifetime",
            "peer",
            "s",
            "upper bound on the peer's NAT mapping lifetime, from its endpoint churns, "
            "capped at 600 (also the value before a churn has bounded it)",
            peer=nat_lifetime,
        ),
        Metric(
            "peer.keepalive_fit",
            "peer",
            "s",
            f"the highest of {'/'.join(map(str, LADDER))} s below peer.nat_lifetime and, "
            "when the endpoint churns with a keepalive on, below that keepalive",
            peer=nat_keepalive_fit,
        ),
        Metric(
            "peer.nat_here",
            "peer",
            "bool",
            "1 when this host reaches the peer's public endpoint from translated "
            "addresses only (RFC 1918, RFC 6598 shared, link-local): it is behind a NAT",
            peer=nat_here,
        ),
        Metric(
            "probe.tunnel_mtu",
            "peer",
            "B",
            "largest tunnel MTU that passed a probe",
            peer=probe_mtu,
        ),
        Metric(
            "probe.mtu_deficit",
            "peer",
            "B",
            "interface MTU minus probed tunnel MTU",
            peer=probe_deficit,
        ),
        Metric(
            "probe.unreachable",
            "peer",
            "bool",
            "1 when the probe found the peer down",
            peer=probe_unreachable,
            column=probe_unreachable_column,
        ),
        Metric(
            "iface.mtu", "interface", "B", "interface MTU", iface=lambda p, i: float(i.link.mtu)
        ),
        Metric(
            "iface.min_tunnel_mtu",
            "interface",
            "B",
            "smallest probed tunnel MTU of its peers, capped at iface.underlay_fit_mtu",
            iface=iface_min_probe,
        ),
        Metric(
            "iface.mtu_deficit",
            "interface",
            "B",
            "interface MTU minus the smallest probe",
            iface=iface_deficit,
        ),
        Metric(
            "iface.underlay_fit_mtu",
            "interface",
            "B",
            "smallest underlay link MTU minus the outer overhead (60 IPv4, 80 IPv6)",
            iface=underlay_fit_mtu,
        ),
        Metric(
            "iface.mtu_over_underlay",
            "interface",
            "B",
            "interface MTU above what the underlay carries unfragmented",
            iface=mtu_over_underlay,
        ),
        Metric(
            "iface.userspace",
            "interface",
            "bool",
            "1 for a userspace WireGuard (wireguard-go, boringtun), 0 for the kernel's",
            iface=lambda p, i: float(i.implementation is Implementation.USERSPACE),
        ),
        Metric(
            "iface.socket_drops_rate",
            "interface",
            "1/s",
            "datagrams dropped per second on WireGuard's own UDP sockets (sock_diag)",
            iface=socket_drops_rate,
        ),
        Metric(
            "iface.socket_rcvbuf",
            "interface",
            "B",
            "receive buffer of WireGuard's UDP socket, fixed when it was opened",
            iface=lambda p, i: (
                float(i.socket.rcvbuf) if i.socket and i.socket.rcvbuf is not None else None
            ),
        ),
        Metric(
            "iface.socket_rcvbuf_at_cap",
            "interface",
            "bool",
            "1 when the socket's buffer is all net.core.rmem_max allows (2 x rmem_max)",
            iface=socket_rcvbuf_at_cap,
        ),
        Metric(
            "iface.underlay_flaps",
            "interface",
            "count",
            "link up/down changes of its underlays: carrier changes since the last snapshot, "
            "or link lines in the kernel log of the last 10 minutes, whichever is more",
            iface=underlay_flaps,
        ),
        Metric(
            "iface.underlay_gro_off",
            "interface",
            "bool",
            "1 when an underlay link has GRO (rx-gro) off and its driver can turn it on",
            iface=underlay_feature_off("rx-gro"),
        ),
        Metric(
            "iface.underlay_udp_gro_forwarding_off",
            "interface",
            "bool",
            "1 when an underlay link has GRO on but rx-udp-gro-forwarding off (its default)",
            iface=underlay_feature_off("rx-udp-gro-forwarding", needs="rx-gro"),
        ),
        Metric(
            "iface.offload_on_age",
            "interface",
            "s",
            "seconds since an offload feature of its underlays was seen turning on (by "
            "wg-tuner or anyone; none when no feature was seen turning on)",
            iface=offload_on_age,
        ),
        Metric(
            "iface.rx_errors_rate",
            "interface",
            "1/s",
            "checksum errors (IpExt, Tcp, Udp, Icmp and IPv6's; host-wide) plus the rx "
            "errors of its underlays, per second: what a broken receive offload shows",
            iface=rx_errors_rate,
        ),
        Metric(
            "iface.process_cores",
            "interface",
            "cores",
            "CPU of the userspace WireGuard's process, in cores (its crypto runs there)",
            iface=process_cores,
        ),
        Metric(
            "iface.process_hot_thread",
            "interface",
            "share",
            "busy share of one core of the process's busiest thread",
            iface=process_hot_thread,
        ),
        Metric(
            "iface.process_cpu_share",
            "interface",
            "share",
            "the process's CPU over all cores (1: every core busy with it)",
            iface=process_cpu_share,
        ),
        Metric(
            "iface.rx_pps",
            "interface",
            "1/s",
            "packets received per second on the interface",
            iface=link_rate("rx_packets"),
        ),
        Metric(
            "iface.tx_pps",
            "interface",
            "1/s",
            "packets sent per second on the interface",
            iface=link_rate("tx_packets"),
        ),
        Metric(
            "iface.avg_packet_size",
            "interface",
            "B",
            "average packet size through the interface, both directions",
            iface=avg_packet_size,
        ),
        Metric(
            "udp.rcvbuf_errors_rate",
            "host",
            "1/s",
            "Udp RcvbufErrors per second",
            host=counter_rate("Udp", "RcvbufErrors"),
        ),
        Metric(
            "udp.sndbuf_errors_rate",
            "host",
            "1/s",
            "Udp SndbufErrors per second",
            host=counter_rate("Udp", "SndbufErrors"),
        ),
        Metric(
            "udp.in_errors_rate",
            "host",
            "1/s",
            "Udp InErrors per second",
            host=counter_rate("Udp", "InErrors"),
        ),
        Metric(
            "tcp.retrans_rate",
            "host",
            "1/s",
            "Tcp RetransSegs per second",
            host=counter_rate("Tcp", "RetransSegs"),
        ),
        Metric(
            "ip.frag_creates_rate",
            "host",
            "1/s",
            "Ip FragCreates per second (outgoing packets fragmented here)",
            host=counter_rate("Ip", "FragCreates"),
        ),
        Metric(
            "ip6.frag_creates_rate",
            "host",
            "1/s",
            "Ip6FragCreates per second (outgoing IPv6 packets fragmented here)",
            host=counter_rate("Ip6", "Ip6FragCreates"),
        ),
        Metric(
            "udp6.rcvbuf_errors_rate",
            "host",
            "1/s",
            "Udp6RcvbufErrors per second",
            host=counter_rate("Udp6", "Udp6RcvbufErrors"),
        ),
        Metric(
            "ip.frag_fails_rate",
            "host",
            "1/s",
            "Ip FragFails per second",
            host=counter_rate("Ip", "FragFails"),
        ),
        Metric(
            "softnet.drops_rate",
            "host",
            "1/s",
            "softnet backlog drops per second",
            host=softnet_drops,
        ),
        Metric(
            "cpu.max_busy", "host", "share", "busy share of the busiest core", host=cpu_max_busy
        ),
        Metric("cpu.min_busy", "host", "share", "busy share of the idlest core", host=cpu_min_busy),
        Metric(
            "cpu.hot_softirq",
            "host",
            "share",
            "softirq share of the busiest core",
            host=cpu_hot_softirq,
        ),
        Metric(
            "irq.queues",
            "host",
            "count",
            "queue IRQs of the underlay links found in /proc/interrupts (named after the "
            "link or its virtio device, ending in the queue's number)",
            host=irq_queues,
        ),
        Metric(
            "irq.unspread",
            "host",
            "count",
            "underlay queue IRQs not on their own CPU (queue N's on the Nth CPU)",
            host=irq_unspread,
        ),
        Metric("conntrack.fill", "host", "share", "conntrack entries / max", host=conntrack_fill),
        Metric(
            "log.conntrack_full_5m",
            "host",
            "count",
            "'nf_conntrack: table full, dropping packet' lines in the last 5 minutes",
            host=log_count("conntrack_full", 300.0),
        ),
        Metric(
            "log.netfilter_log_5m",
            "host",
            "count",
            "netfilter log-rule lines (IN= OUT= SRC= DST=) in the last 5 minutes",
            host=log_count("netfilter_log", 300.0),
        ),
        Metric(
            "host.ip_forward",
            "host",
            "bool",
            "net.ipv4.ip_forward",
            host=sysctl_value("net.ipv4.ip_forward"),
        ),
        Metric(
            "wg.userspace",
            "host",
            "bool",
            "1 when a userspace WireGuard runs here",
            host=implementation(Implementation.USERSPACE),
        ),
        Metric(
            "wg.kernel",
            "host",
            "bool",
            "1 when kernel WireGuard runs here",
            host=implementation(Implementation.KERNEL),
        ),
    )
}

SCOPE_RANK = {"host": 0, "interface": 1, "peer": 2}


def value(name: str, point: Point, iface: WgInterface | None, peer: Peer | None) -> float | None:
    metric = CATALOGUE[name]
    if metric.peer is not None:
        return None if iface is None or peer is None else metric.peer(point, iface, peer)
    if metric.iface is not None:
        return None if iface is None else metric.iface(point, iface)
    assert metric.host is not None  # noqa: S101 - every catalogue entry has one function
    return metric.host(point)
