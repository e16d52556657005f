"""Prometheus exposition of a Snapshot.

Peer series keep prometheus_wireguard_exporter's names and labels so existing
dashboards work; everything else is prefixed ``wg_tuner_``. No series ever carries a
secret: the Snapshot has none to give.
"""

from __future__ import annotations

import heapq
import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tuner.exporters.exposition import Rows, text
from tuner.exporters.naming import PEER_NAMES, PWE, WE
from tuner.files import Strict, write_atomic
from tuner.model.probe import MtuProbe, Reachability
from tuner.model.snapshot import USER_HZ, Link, Snapshot
from tuner.observe.logs import KINDS as LOG_KINDS

SNMP_COUNTERS: dict[str, tuple[str, ...]] = {
    "Udp": (
        "InDatagrams",
        "OutDatagrams",
        "InErrors",
        "RcvbufErrors",
        "SndbufErrors",
        "NoPorts",
        "InCsumErrors",
    ),
    "Udp6": ("Udp6InErrors", "Udp6RcvbufErrors", "Udp6SndbufErrors", "Udp6InCsumErrors"),
    "Ip": ("FragOKs", "FragFails", "FragCreates", "ReasmReqds", "ReasmFails"),
    "IpExt": ("InCsumErrors",),
    "Ip6": ("Ip6FragOKs", "Ip6FragFails", "Ip6FragCreates", "Ip6ReasmReqds", "Ip6ReasmFails"),
    "Icmp6": (
        "Icmp6InDestUnreachs",
        "Icmp6InPktTooBigs",
        "Icmp6OutPktTooBigs",
        "Icmp6InCsumErrors",
    ),
    "Icmp": ("InDestUnreachs", "OutDestUnreachs", "InCsumErrors"),
    "Tcp": ("RetransSegs", "OutSegs", "InErrs", "InCsumErrors"),
    "TcpExt": ("TCPLostRetransmit", "TCPTimeouts", "ListenDrops", "TCPMTUPFail", "TCPMTUPSuccess"),
}
"""The curated counters exported with ``--host-series`` (the full tables are in
``status --format json``)."""

NODE_EXPORTER_NETSTAT = re.compile(
    r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)"
    r"|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)"
    r"|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)"
    r"|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$"
)
"""node_exporter's default ``--collector.netstat.fields`` (1.5 to 1.8): the counters it
exports as ``node_netstat_<Protocol>_<Counter>``. Without ``--host-series`` wg-tuner
exports only the curated counters this leaves out (fragmentation, ICMP too-big, MTU
probing), so no counter is scraped twice under two names."""


def _netstat_field(proto: str, name: str) -> str:
    """node_exporter's field name: ``Udp6_RcvbufErrors`` for snmp6's ``Udp6RcvbufErrors``."""
    return f"{proto}_{name.removeprefix(proto)}"


def _sorted_ips(ips: Iterable[str]) -> str:
    """wireguard_exporter's order: family, then prefix length, then address."""

    def key(text: str) -> tuple[int, int, int]:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            return (9, 0, 0)
        return (net.version, net.prefixlen, int(net.network_address))

    return ",".join(sorted(ips, key=key))


class SnapshotCollector(Collector):
    def __init__(
        self,
        snapshot: Snapshot,
        *,
        probes: tuple[MtuProbe, ...] | None = None,
        reachability: tuple[Reachability, ...] | None = None,
        peer_names: str = PWE,
        peer_limit: int = 0,
        keep: frozenset[tuple[str, str]] = frozenset(),
        host_series: bool = False,
    ) -> None:
        """``probes``/``reachability``: the newest of each peer (the daemon's memory);
        None: the snapshot's own. ``peer_names``: one of ``PEER_NAMES``. ``peer_limit``:
        per-peer series only for the N peers that moved the most bytes, plus ``keep``
        (interface, public key) such as peers with findings; 0 exports every peer.
        ``host_series``: also the host counters node_exporter exports under its own
        names (CPU, softnet, links, conntrack, interrupts, its netstat fields), for
        hosts without node_exporter."""
        self.host_series = host_series
        self.peer_limit = peer_limit
        self.keep = keep
        if peer_names not in PEER_NAMES:
            raise ValueError(f"peer metric names {peer_names!r}: one of {', '.join(PEER_NAMES)}")
        self.peer_names = peer_names
        self.snapshot = snapshot
        self.probes = snapshot.probes if probes is None else probes
        self.reachability = snapshot.reachability if reachability is None else reachability

    def _shown(self, snap: Snapshot) -> Snapshot:
        """The snapshot with only the peers whose series are exported."""
        total = sum(len(i.peers) for i in snap.interfaces)
        if self.peer_limit <= 0 or total <= self.peer_limit:
            return snap
        ranked = heapq.nlargest(
            self.peer_limit,
            (
                (p.rx_bytes + p.tx_bytes, i.name, p.public_key)
                for i in snap.interfaces
                for p in i.peers
            ),
        )
        chosen = {(name, key) for _, name, key in ranked} | self.keep
        return replace(
            snap,
            interfaces=tuple(
                replace(i, peers=tuple(p for p in i.peers if (i.name, p.public_key) in chosen))
                for i in snap.interfaces
            ),
        )

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        shown = self._shown(snap)
        omitted = GaugeMetricFamily(
            "wg_tuner_peer_series_omitted",
            "Peers whose per-peer series are not exported (--peer-series-limit)",
            labels=["interface"],
        )
        peers = GaugeMetricFamily(
            "wg_tuner_interface_peers", "Peers configured", labels=["interface", "implementation"]
        )
        for full, part in zip(snap.interfaces, shown.interfaces, strict=True):
            peers.add_metric([full.name, full.implementation.value], len(full.peers))
            omitted.add_metric([full.name], len(full.peers) - len(part.peers))
        yield from (peers, omitted)
        yield from self._peers(shown, mindflavor=self.peer_names != WE)
        if self.peer_names != PWE:
            yield from self._wireguard_exporter(shown)
        yield from self._probes()
        yield from self._nat(snap)
        yield from self._links(snap)
        yield from self._host(snap)
        if self.host_series:
            yield from self._node(snap)

    @staticmethod
    def _wireguard_exporter(snap: Snapshot) -> Iterator[Metric]:
        """mdlayher/wireguard_exporter's series, names and labels as it writes them."""
        labels = ["device", "public_key"]
        device = GaugeMetricFamily(
            "wireguard_device_info", "Metadata about a device.", labels=labels
        )
        info = Rows(
            "wireguard_peer_info",
            "Metadata about a peer. The public_key label on peer metrics refers to the "
            "peer's public key; not the device's public key.",
            "gauge",
            [*labels, "allowed_ips", "endpoint", "name"],
        )
        rx = Rows(
            "wireguard_peer_receive_bytes",
            "Number of bytes received from a given peer.",
            "counter",
            labels,
        )
        tx = Rows(
            "wireguard_peer_transmit_bytes",
            "Number of bytes transmitted to a given peer.",
            "counter",
            labels,
        )
        last = Rows(
            "wireguard_peer_last_handshake_seconds",
            "UNIX timestamp for the last handshake with a given peer.",
            "gauge",
            labels,
        )
        for iface in snap.interfaces:
            device.add_metric([iface.name, iface.public_key or ""], 1)
            for peer in iface.peers:
                key = [iface.name, peer.public_key]
                name = iface.peer_names.get(peer.public_key, "")
                info.add([*key, _sorted_ips(peer.allowed_ips), peer.endpoint or "", name], 1)
                rx.add(key, peer.rx_bytes)
                tx.add(key, peer.tx_bytes)
                last.add(key, int(peer.latest_handshake))
        yield from (device, info, rx, tx, last)

    @staticmethod
    def _peers(snap: Snapshot, *, mindflavor: bool = True) -> Iterator[Metric]:
        # prometheus_wireguard_exporter's labels, friendly_name included ("" = none).
        labels = ["interface", "public_key", "allowed_ips", "friendly_name"]
        sent = Rows("wireguard_sent_bytes", "Bytes sent to the peer", "counter", labels)
        received = Rows(
            "wireguard_received_bytes", "Bytes received from the peer", "counter", labels
        )
        handshake = Rows(
            "wireguard_latest_handshake_seconds",
            "Unix time of the latest handshake (0 = never)",
            "gauge",
            labels,
        )
        keepalive = Rows(
            "wg_tuner_peer_persistent_keepalive_seconds",
            "Persistent keepalive interval (0 = off)",
            "gauge",
            ["interface", "public_key"],
        )
        info = Rows(
            "wg_tuner_peer_info",
            "1 per peer: its endpoint and friendly name (joined on interface and public_key, "
            "so a roaming endpoint does not make new series on every counter)",
            "gauge",
            ["interface", "public_key", "friendly_name", "endpoint"],
        )
        mtu = GaugeMetricFamily("wg_tuner_interface_mtu", "Interface MTU", labels=["interface"])
        sock_drops = CounterMetricFamily(
            "wg_tuner_socket_drops",
            "Datagrams dropped on WireGuard's own UDP sockets (its listen port, both families)",
            labels=["interface"],
        )
        sock_rcvbuf = GaugeMetricFamily(
            "wg_tuner_socket_receive_buffer_bytes",
            "Receive buffer of WireGuard's UDP socket (fixed when the socket was opened)",
            labels=["interface"],
        )
        sock_sndbuf = GaugeMetricFamily(
            "wg_tuner_socket_send_buffer_bytes",
            "Send buffer of WireGuard's UDP socket (fixed when the socket was opened)",
            labels=["interface"],
        )
        cpu = CounterMetricFamily(
            "wg_tuner_wireguard_process_cpu_seconds",
            "CPU time of the userspace WireGuard's process (all threads; its crypto)",
            labels=["interface"],
        )
        hot = CounterMetricFamily(
            "wg_tuner_wireguard_process_busiest_thread_cpu_seconds",
            "CPU time of that process's busiest thread so far",
            labels=["interface"],
        )
        for iface in snap.interfaces:
            mtu.add_metric([iface.name], iface.link.mtu)
            if iface.process is not None:
                cpu.add_metric([iface.name], iface.process.total / USER_HZ)
                hot.add_metric([iface.name], max(iface.process.threads.values()) / USER_HZ)
            if iface.socket is not None:
                sock_drops.add_metric([iface.name], iface.socket.drops)
                if iface.socket.rcvbuf is not None:
                    sock_rcvbuf.add_metric([iface.name], iface.socket.rcvbuf)
                if iface.socket.sndbuf is not None:
                    sock_sndbuf.add_metric([iface.name], iface.socket.sndbuf)
            names = iface.peer_names
            for peer in iface.peers:
                name = names.get(peer.public_key, "")
                values = [iface.name, peer.public_key, ",".join(peer.allowed_ips), name]
                info.add([iface.name, peer.public_key, name, peer.endpoint or ""], 1)
                sent.add(values, peer.tx_bytes)
                received.add(values, peer.rx_bytes)
                handshake.add(values, int(peer.latest_handshake))
                keepalive.add([iface.name, peer.public_key], peer.persistent_keepalive)
        if mindflavor:
            yield from (sent, received, handshake)
        yield from (keepalive, info, mtu)
        yield from (sock_drops, sock_rcvbuf, sock_sndbuf, cpu, hot)

    @staticmethod
    def _nat(snap: Snapshot) -> Iterator[Metric]:
        labels = ["interface", "public_key"]
        churns = Rows(
            "wg_tuner_peer_endpoint_changes",
            "Times the peer's endpoint was replaced (NAT churn) since wg-tuner started; "
            "peers that never churned have no series",
            "counter",
            labels,
        )
        lifetime = Rows(
            "wg_tuner_peer_nat_lifetime_seconds",
            "Upper bound on the peer's NAT mapping lifetime, from its endpoint churns",
            "gauge",
            labels,
        )
        for nat in snap.nat:
            churns.add([nat.interface, nat.peer], nat.churns)
            if nat.lifetime is not None:
                lifetime.add([nat.interface, nat.peer], nat.lifetime)
        yield from (churns, lifetime)

    def _probes(self) -> Iterator[Metric]:
        labels = ["interface", "public_key"]
        mtu = Rows(
            "wg_tuner_probe_path_mtu_bytes",
            "Largest tunnel MTU the newest path-MTU probe of the peer passed",
            "gauge",
            labels,
        )
        at = Rows("wg_tuner_probe_timestamp_seconds", "Unix time of that probe", "gauge", labels)
        rtt = Rows(
            "wg_tuner_peer_rtt_seconds",
            "Median round-trip time of small echoes through the tunnel",
            "gauge",
            labels,
        )
        loss = Rows(
            "wg_tuner_peer_echo_loss_ratio",
            "Share of those echoes that got no reply",
            "gauge",
            labels,
        )
        for probe in self.probes:
            at.add([probe.interface, probe.peer], probe.at)
            if probe.tunnel_mtu is not None:
                mtu.add([probe.interface, probe.peer], probe.tunnel_mtu)
        for reach in self.reachability:
            loss.add([reach.interface, reach.peer], reach.loss)
            if reach.rtt_ms is not None:
                rtt.add([reach.interface, reach.peer], reach.rtt_ms / 1000)
        yield from (mtu, at, rtt, loss)

    def _links(self, snap: Snapshot) -> Iterator[Metric]:
        """``wg_tuner_link_info`` names each link's role, to join node_exporter's
        ``node_network_*{device}`` on; the counters themselves only with host series."""
        info = GaugeMetricFamily(
            "wg_tuner_link_info",
            "1 per link wg-tuner watches: a WireGuard interface or an underlay it uses "
            "(join node_exporter's node_network_* series on instance and device)",
            labels=["device", "role"],
        )
        labels = ["link", "role"]
        families = {
            name: CounterMetricFamily(f"wg_tuner_link_{name}", f"Link {name}", labels=labels)
            for name in (
                "rx_bytes",
                "tx_bytes",
                "rx_packets",
                "tx_packets",
                "rx_errors",
                "tx_errors",
                "rx_dropped",
                "tx_dropped",
                "carrier_changes",
            )
        }
        up = GaugeMetricFamily("wg_tuner_link_up", "Operational state is UP", labels=labels)

        def add(link: Link, role: str) -> None:
            info.add_metric([link.name, role], 1)
            for name, family in families.items():
                family.add_metric([link.name, role], getattr(link.counters, name))
            up.add_metric([link.name, role], 1 if link.operstate in ("UP", "UNKNOWN") else 0)

        for iface in snap.interfaces:
            add(iface.link, "wireguard")
        for link in snap.underlays:
            add(link, "underlay")
        yield info
        if self.host_series:
            yield from families.values()
            yield up

    def _host(self, snap: Snapshot) -> Iterator[Metric]:
        host = snap.host
        if host.log_available:
            events = CounterMetricFamily(
                "wg_tuner_log_events",
                "Kernel log lines of each kind wg-tuner classifies, since it started",
                labels=["kind"],
            )
            for kind in LOG_KINDS:
                events.add_metric([kind], host.log_counts.get(kind, 0))
            yield events
        counters = CounterMetricFamily(
            "wg_tuner_snmp_counter",
            "Selected /proc/net/snmp and netstat counters (without --host-series: those "
            "node_exporter's netstat collector leaves out by default)",
            labels=["protocol", "counter"],
        )
        for table in (host.snmp, host.netstat):
            for proto, names in SNMP_COUNTERS.items():
                values = table.get(proto)
                if not values:
                    continue
                for name in names:
                    duplicate = NODE_EXPORTER_NETSTAT.match(_netstat_field(proto, name))
                    if name in values and (self.host_series or not duplicate):
                        counters.add_metric([proto, name], values[name])
        yield counters
        sysctl = GaugeMetricFamily(
            "wg_tuner_sysctl_value", "Numeric value of a watched sysctl", labels=["key"]
        )
        for key, value in snap.knobs.sysctls.items():
            if value is not None and value.isdigit():
                sysctl.add_metric([key], int(value))
        yield sysctl
        offload = GaugeMetricFamily(
            "wg_tuner_offload_enabled",
            "1 when a changeable NIC offload feature of an underlay is on",
            labels=["device", "feature"],
        )
        turned_on = GaugeMetricFamily(
            "wg_tuner_offload_turned_on_timestamp_seconds",
            "When wg-tuner saw the feature turn on (features seen turning on only)",
            labels=["device", "feature"],
        )
        for key, state in sorted(snap.knobs.offloads.items()):
            dev, _, feature = key.partition("/")
            offload.add_metric([dev, feature], int(state == "on"))
            since = snap.knobs.offloads_on_since.get(key)
            if since is not None:
                turned_on.add_metric([dev, feature], since)
        yield offload
        yield turned_on
        yield GaugeMetricFamily(
            "wg_tuner_observe_errors",
            "Interfaces that could not be read in the last observation",
            value=len(snap.errors),
        )
        yield GaugeMetricFamily(
            "wg_tuner_snapshot_timestamp_seconds",
            "When the snapshot was taken",
            value=snap.taken_at,
        )

    @staticmethod
    def _node(snap: Snapshot) -> Iterator[Metric]:
        """What node_exporter exports as node_softnet_*, node_cpu_seconds_total,
        node_interrupts_total and node_nf_conntrack_*: for hosts without it."""
        host = snap.host
        dropped = CounterMetricFamily(
            "wg_tuner_softnet_dropped", "softnet backlog drops", labels=["cpu"]
        )
        squeezed = CounterMetricFamily(
            "wg_tuner_softnet_time_squeeze", "softnet budget exhaustion", labels=["cpu"]
        )
        for row in host.softnet:
            dropped.add_metric([str(row.cpu)], row.dropped)
            squeezed.add_metric([str(row.cpu)], row.time_squeeze)
        yield from (dropped, squeezed)
        cpu = CounterMetricFamily(
            "wg_tuner_cpu_seconds", "Per-core CPU time by mode", labels=["cpu", "mode"]
        )
        for times in host.cpus:
            for mode in ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"):
                cpu.add_metric([str(times.cpu), mode], getattr(times, mode) / USER_HZ)
        yield cpu
        irqs = CounterMetricFamily(
            "wg_tuner_interrupts", "Underlay NIC interrupts", labels=["irq", "name", "cpu"]
        )
        for irq in host.interrupts:
            for index, count in enumerate(irq.per_cpu):
                irqs.add_metric([str(irq.irq), irq.name, str(index)], count)
        yield irqs
        if host.conntrack is not None:
            yield GaugeMetricFamily(
                "wg_tuner_conntrack_entries", "Conntrack entries", value=host.conntrack.count
            )
            yield GaugeMetricFamily(
                "wg_tuner_conntrack_max", "Conntrack table size", value=host.conntrack.max
            )


def registry_for(
    snapshot: Snapshot,
    extra: Iterable[Collector] = (),
    peer_names: str = PWE,
    *,
    host_series: bool = False,
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot, peer_names=peer_names, host_series=host_series))
    for collector in extra:
        registry.register(collector)
    return registry


def render(snapshot: Snapshot, peer_names: str = PWE, *, host_series: bool = False) -> str:
    registry = registry_for(snapshot, peer_names=peer_names, host_series=host_series)
    return text(registry.collect())


def write_exposition(path: Path, text: str) -> None:
    """Atomic (temp file, fsync, rename in the same directory) and world-readable (0644)
    whatever the umask: node_exporter runs unprivileged, and the unit's UMask=0077 would
    otherwise make every series silently invisible to it. The temporary name does not
    end in ``.prom``, so the collector never reads a half-written file."""
    write_atomic(path, text, mode=0o644, dir_mode=0o755, strict=Strict.WARN)


def write_registry_textfile(registry: CollectorRegistry, path: Path) -> None:
    write_exposition(path, text(registry.collect()))


def write_textfile(
    snapshot: Snapshot, path: Path, peer_names: str = PWE, *, host_series: bool = False
) -> None:
    registry = registry_for(snapshot, peer_names=peer_names, host_series=host_series)
    write_registry_textfile(registry, path)
