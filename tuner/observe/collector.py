"""Assemble one Snapshot from every source. The only entry point the engine calls."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from tuner.adapters.ethtool import EthtoolFeatures, FeaturePort
from tuner.adapters.journald import Journald
from tuner.adapters.kmsg import Kmsg
from tuner.adapters.netlink import Netlink
from tuner.adapters.nft import Nft
from tuner.adapters.uapi import UapiClient
from tuner.model.nat import endpoint_host
from tuner.model.snapshot import (
    HostCounters,
    Implementation,
    Link,
    ProcessCpu,
    Snapshot,
    WgInterface,
    frozen_map,
)
from tuner.observe import peer_names, procfs
from tuner.observe.knobs import read_knobs
from tuner.observe.logs import RECENT, LogWatch
from tuner.observe.nat import NatTracker
from tuner.observe.offload_history import OffloadHistory
from tuner.observe.paths import HostPaths
from tuner.observe.sockets import UdpSockets
from tuner.observe.wireguard import WireGuardReader

ENDPOINT_MEMO = 200_000
"""Endpoint strings remembered with their host part (endpoints rarely change)."""


class Observer:
    def __init__(
        self,
        *,
        paths: HostPaths | None = None,
        netlink: Netlink | None = None,
        uapi: UapiClient | None = None,
        nft: Nft | None = None,
        wireguard: WireGuardReader | None = None,
        sockets: UdpSockets | None = None,
        logs: LogWatch | None = None,
        features: FeaturePort | None = None,
        offload_history: OffloadHistory | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.paths = paths or HostPaths()
        self.netlink = netlink or Netlink()
        self.uapi = uapi or UapiClient(self.paths.wg_socket_dir, proc=self.paths.proc())
        self.nft = nft
        self.wireguard = wireguard or WireGuardReader(self.uapi, link_exists=self._link_exists)
        self.sockets = sockets or UdpSockets(self.paths)
        # NIC features are the live host's: a test's fake tree has none unless given.
        live = self.paths.root == Path("/")
        self.features = features if features is not None else (EthtoolFeatures() if live else None)
        self.offload_history = offload_history or OffloadHistory()
        # The kernel log and the journal are the live host's: a test's fake tree has none.
        self.logs = logs or LogWatch(
            Kmsg(str(self.paths.root / "dev/kmsg"), lookback=RECENT, monotonic=monotonic),
            *((Journald(lookback=RECENT),) if live else ()),
        )
        self.clock = clock
        self.monotonic = monotonic
        self._endpoint_hosts: dict[str, str] = {}
        self.nat = NatTracker()
        self.names = peer_names.NameReader(
            peer_names.Source(
                wg_quick=self.paths.etc("wireguard"), networkd=self.paths.etc("systemd/network")
            )
        )

    def _link_exists(self, name: str) -> bool:
        return any(link.name == name for link in self.netlink.links())

    def _process(self, iface: WgInterface) -> ProcessCpu | None:
        if iface.implementation is not Implementation.USERSPACE:
            return None
        pid = self.uapi.pid(iface.name)
        return procfs.read_process_cpu(self.paths, pid) if pid else None

    def netns_id(self) -> str:
        try:
            return os.readlink(self.paths.proc("self", "ns", "net"))
        except OSError:
            return "unknown"

    def observe(self, interfaces: tuple[str, ...] = ()) -> Snapshot:
        links = self.netlink.links()
        wg = self.wireguard.read(links, interfaces)
        # Handshake ages are measured against the moment WireGuard was read.
        taken_at, monotonic = self.clock(), self.monotonic()
        by_index = {link.ifindex: link for link in links}
        memo = self._endpoint_hosts
        if len(memo) > ENDPOINT_MEMO:
            memo.clear()
        iface_hosts: list[set[str]] = []
        for iface in wg.interfaces:
            found: set[str] = set()
            for peer in iface.peers:
                if peer.endpoint:
                    h = memo.get(peer.endpoint)
                    if h is None:
                        h = memo[peer.endpoint] = endpoint_host(peer.endpoint) or ""
                    if h:
                        found.add(h)
            iface_hosts.append(found)
        oifs = self.netlink.route_oifs(tuple(sorted(set().union(*iface_hosts))))
        wg_ifaces: list[WgInterface] = []
        underlay_names: set[str] = set()
        friendly = self.names.read(iface.name for iface in wg.interfaces)
        sockets = self.sockets.by_port(iface.listen_port for iface in wg.interfaces)
        for iface, found in zip(wg.interfaces, iface_hosts, strict=True):
            # One endpoint per (link, family) stands for the rest: hosts that leave by
            # the same link share its source address (a per-prefix `src` on one link is
            # the exception this gives up, for one route lookup per link, not per peer).
            sample: dict[tuple[int, bool], str] = {}
            for h in found:
                oif = oifs.get(h)
                if oif is not None:
                    sample.setdefault((oif, ":" in h), h)
            names = sorted({by_index[o].name for o, _ in sample if o in by_index})
            srcs = tuple(sorted(self.netlink.route_sources(tuple(sample.values()))))
            underlay_names.update(names)
            wg_ifaces.append(
                replace(
                    iface,
                    underlays=tuple(names),
                    peer_names=frozen_map(friendly.get(iface.name, {})),
                    socket=sockets.get(iface.listen_port),
                    process=self._process(iface),
                    sources=srcs,
                )
            )
        underlays: tuple[Link, ...] = tuple(link for link in links if link.name in underlay_names)
        devices = sorted(underlay_names)
        knobs, knob_notes = read_knobs(self.paths, devices, self.nft, self.features)
        on_since = self.offload_history.update(knobs.offloads, taken_at)
        knobs = replace(knobs, offloads_on_since=frozen_map(on_since))
        events, counts = self.logs.poll(monotonic)
        host = HostCounters(
            snmp=procfs.read_snmp(self.paths),
            netstat=procfs.read_netstat(self.paths),
            softnet=procfs.read_softnet(self.paths),
            cpus=procfs.read_cpus(self.paths),
            interrupts=procfs.read_interrupts(self.paths, devices),
            irq_cpus=procfs.read_irq_cpus(self.paths),
            conntrack=procfs.read_conntrack(self.paths),
            log_events=events,
            log_counts=frozen_map(counts),
            log_available=self.logs.available,
        )
        snapshot = Snapshot(
            taken_at=taken_at,
            monotonic=monotonic,
            netns=self.netns_id(),
            interfaces=tuple(wg_ifaces),
            underlays=underlays,
            host=host,
            knobs=knobs,
            notes=wg.notes + knob_notes,
            errors=wg.errors,
        )
        if interfaces:
            return snapshot  # a partial view would read as peers vanishing and returning
        return replace(snapshot, nat=self.nat.update(snapshot))
