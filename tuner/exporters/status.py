"""``wg-tuner status`` as text: interfaces, peers with handshake age and rates, flags.

Flags are the obvious ones an operator would look for first; the decision core's
findings (policies) are richer and live in ``plan``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from tuner.model.probe import MtuProbe, ProbeOutcome
from tuner.model.rates import PeerRate, Rates
from tuner.model.snapshot import ACTIVE_HANDSHAKE_MAX, Peer, Snapshot, WgInterface

"""REJECT_AFTER_TIME: an active peer's handshake is never older than this."""


def human_bytes(rate: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(rate) < 1000:
            return f"{rate:.0f} {unit}/s" if unit == "B" else f"{rate:.1f} {unit}/s"
        rate /= 1000
    return f"{rate:.1f} TB/s"


def human_age(age: float | None) -> str:
    if age is None:
        return "never"
    if age < 120:
        return f"{age:.0f}s ago"
    if age < 7200:
        return f"{age / 60:.0f}m ago"
    return f"{age / 3600:.0f}h ago"


def describe_probe(probe: MtuProbe) -> str:
    what = (
        f"path MTU {probe.tunnel_mtu}" + ("" if probe.exact else " (budget ran out)")
        if probe.outcome is ProbeOutcome.OK
        else probe.outcome.value.upper()
    )
    warn = (
        "  << below interface MTU"
        if probe.tunnel_mtu is not None and probe.tunnel_mtu < probe.interface_mtu
        else ""
    )
    return (
        f"probe {probe.peer[:8]}... -> {probe.target}: {what} via {probe.method.value} "
        f"({probe.sizes} sizes, {probe.probes} packets, {probe.duration:.1f}s){warn}"
    )


def peer_flags(snapshot: Snapshot, peer: Peer, rate: PeerRate | None) -> list[str]:
    flags: list[str] = []
    age = snapshot.handshake_age(peer)
    demand = rate is not None and rate.tx_without_rx
    if demand and (age is None or age > ACTIVE_HANDSHAKE_MAX):
        flags.append("STALE-WITH-DEMAND")
    elif demand:
        flags.append("tx-without-rx")
    if peer.endpoint is None:
        flags.append("no-endpoint")
    return flags


def interface_flags(iface: WgInterface) -> list[str]:
    flags: list[str] = []
    if iface.link.operstate not in ("UP", "UNKNOWN"):
        flags.append(f"link {iface.link.operstate}")
    if not iface.peers:
        flags.append("no peers")
    return flags


def host_flags(rates: Rates | None) -> list[str]:
    if rates is None:
        return []
    udp = rates.counters.get("Udp", {})
    flags = [
        f"Udp {name} +{udp[name]}"
        for name in ("RcvbufErrors", "SndbufErrors", "InErrors")
        if udp.get(name)
    ]
    frag = rates.counters.get("Ip", {}).get("FragFails")
    if frag:
        flags.append(f"Ip FragFails +{frag}")
    return flags


def _lines(snapshot: Snapshot, rates: Rates | None) -> Iterator[str]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(snapshot.taken_at))
    yield f"namespace {snapshot.netns}  observed {stamp}"
    for error in snapshot.errors:
        yield f"error: {error}"
    for note in snapshot.notes:
        yield f"note: {note}"
    if not snapshot.interfaces:
        yield "no WireGuard interfaces in this network namespace"
    for iface in snapshot.interfaces:
        flags = interface_flags(iface)
        yield ""
        yield (
            f"interface {iface.name} ({iface.implementation.value})  mtu {iface.link.mtu}  "
            f"state {iface.link.operstate}  port {iface.listen_port}"
            + (f"  fwmark {iface.fwmark:#x}" if iface.fwmark else "")
            + (f"  underlay {','.join(iface.underlays)}" if iface.underlays else "")
            + (f"  [{'; '.join(flags)}]" if flags else "")
        )
        if iface.public_key:
            yield f"  public key {iface.public_key}"
        if iface.socket is not None:
            sock = iface.socket
            sizes = f"  rcvbuf {sock.rcvbuf}  sndbuf {sock.sndbuf}" if sock.rcvbuf else ""
            yield f"  socket drops {sock.drops}  queued {sock.rx_queue} B{sizes}"
        if iface.process is not None:
            proc = iface.process
            yield (
                f"  process {proc.pid}  {len(proc.threads)} threads  cpu {proc.total / 100:.1f} s"
            )
        header = ("peer", "endpoint", "allowed ips", "handshake", "rx", "tx", "keepalive", "flags")
        rows = [header]
        for peer in iface.peers:
            rate = rates.peers.get((iface.name, peer.public_key)) if rates else None
            name = iface.peer_names.get(peer.public_key)
            rows.append(
                (
                    f"{peer.public_key} ({name})" if name else peer.public_key,
                    peer.endpoint or "-",
                    ",".join(peer.allowed_ips) or "-",
                    human_age(snapshot.handshake_age(peer)),
                    human_bytes(rate.rx_bps) if rate else "-",
                    human_bytes(rate.tx_bps) if rate else "-",
                    f"{peer.persistent_keepalive}s" if peer.persistent_keepalive else "off",
                    " ".join(peer_flags(snapshot, peer, rate)),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        probes = [p for p in snapshot.probes if p.interface == iface.name]
        for row in rows:
            yield (
                "  "
                + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            )
        for probe in probes:
            yield "  " + describe_probe(probe)
        for nat in snapshot.nat:
            if nat.interface == iface.name:
                bound = f"{nat.lifetime:.0f} s or less" if nat.lifetime is not None else "unknown"
                yield (
                    f"  nat {nat.peer}: endpoint replaced {nat.churns} times, "
                    f"mapping lifetime {bound}"
                )
    host = snapshot.host
    yield ""
    parts = []
    if host.conntrack:
        parts.append(f"conntrack {host.conntrack.count}/{host.conntrack.max}")
    drops = sum(row.dropped for row in host.softnet)
    parts.append(f"softnet drops {drops}")
    udp = host.snmp.get("Udp", {})
    parts.append(f"udp rcvbuf errors {udp.get('RcvbufErrors', 0)}")
    yield "host: " + ", ".join(parts)
    for flag in host_flags(rates):
        yield f"  flag: {flag}"


def render_text(snapshot: Snapshot, rates: Rates | None) -> str:
    return "\n".join(_lines(snapshot, rates)) + "\n"
