"""Golden cases for the shipped policies: snapshot histories and what must come out.

Each case is a folder ``tests/golden/<name>/`` with ``history.json`` (the snapshots)
and ``expected.json`` (the plan). ``python -m tests.golden.cases`` rewrites both from
the builders below; the test also checks each case's ``expect`` list, so a rewrite
cannot silently bless a wrong plan.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from tuner.model.probe import MtuProbe, ProbeMethod, ProbeOutcome
from tuner.model.serde import to_data
from tuner.model.snapshot import (
    Conntrack,
    CpuSoftnet,
    CpuTimes,
    HostCounters,
    Implementation,
    Interrupt,
    Knobs,
    Link,
    LinkCounters,
    LogEvent,
    Peer,
    ProcessCpu,
    Snapshot,
    SocketStats,
    WgInterface,
    frozen_map,
)
from tuner.observe.nat import NatTracker

HERE = Path(__file__).parent
T0 = 1_790_000_000.0
KEY = "CZZ9R+7zfotIs5Bje0Xl7cqdsJb9IDO6OgKiGoXCTD8="
SYSCTLS = {
    "net.core.rmem_max": "212992",
    "net.core.wmem_max": "212992",
    "net.core.netdev_max_backlog": "1000",
    "net.netfilter.nf_conntrack_max": "1000",
    "net.ipv4.tcp_mtu_probing": "0",
    "net.ipv4.ip_forward": "0",
}


@dataclass(frozen=True)
class Sample:
    """One moment of the host, in the few numbers the cases vary."""

    t: float
    rx: int = 0
    tx: int = 0
    handshake_age: float | None = 30.0
    probe_mtu: int | None = None
    probe_outcome: ProbeOutcome = ProbeOutcome.OK
    rcvbuf_errors: int = 0
    softnet_drops: int = 0
    cpu0: tuple[int, int, int] = (0, 0, 0)
    """cumulative (busy, softirq, idle) jiffies of cpu0; cpu1 mirrors it idle."""
    cpu1: tuple[int, int, int] = (0, 0, 0)
    conntrack: int = 10
    implementation: Implementation = Implementation.USERSPACE
    ip_forward: str = "0"
    endpoint_port: int = 51820
    underlay_mtu: int = 1500
    frag_creates: int = 0
    frag_creates6: int = 0
    socket_drops: int = 0
    socket_rcvbuf: int = 212992
    carrier_changes: int = 0
    """of the underlay eth0."""
    log: tuple[tuple[str, str, float], ...] = ()
    """kernel log events (kind, device, seconds before the snapshot)."""
    offloads: tuple[tuple[str, str], ...] = ()
    """eth0's changeable NIC features, e.g. (("rx-gro", "off"),)."""
    threads: tuple[int, int] = (0, 0)
    """cumulative CPU ticks of wireguard-go's two busiest threads (pid 4242)."""
    keepalive: int = 0
    sources: tuple[str, ...] = ()
    """local source addresses of the route to the peer's endpoint (NAT detection)."""
    queue_irqs: tuple[str, ...] = ()
    """eth0's queue IRQs (eth0-TxRx-N, IRQ 40+N): the CPU list of each one's affinity."""
    irq_cpus: str | None = None
    """/proc/irq/default_smp_affinity as a list (None: unreadable)."""
    csum_errors: int = 0
    """IpExt InCsumErrors (bad IP header checksums: a broken GRO aggregate)."""
    turned_on: tuple[tuple[str, float], ...] = ()
    """eth0's features the observer saw turning on, and how many seconds before."""


def snapshot(s: Sample) -> Snapshot:
    taken = T0 + s.t
    peer = Peer(
        KEY,
        f"203.0.113.2:{s.endpoint_port}",
        ("192.0.2.2/32",),
        0.0 if s.handshake_age is None else taken - s.handshake_age,
        s.rx,
        s.tx,
        s.keepalive,
    )
    link = Link("wg0", 5, "tun", 1420, "UNKNOWN")
    iface = WgInterface(
        "wg0",
        s.implementation,
        None,
        51820,
        0,
        link,
        (peer,),
        ("eth0",),
        socket=SocketStats(2, s.socket_drops, 0, s.socket_rcvbuf, 212992),
        process=(
            ProcessCpu(4242, frozen_map({4242: s.threads[0], 4243: s.threads[1]}))
            if s.implementation is Implementation.USERSPACE
            else None
        ),
        sources=s.sources,
    )
    probes = ()
    if s.probe_mtu is not None or s.probe_outcome is not ProbeOutcome.OK:
        probes = (
            MtuProbe(
                "wg0",
                KEY,
                "192.0.2.2",
                ProbeMethod.TUNNEL,
                s.probe_outcome,
                s.probe_mtu,
                1420,
                8,
                True,
                taken,
                0.5,
            ),
        )

    def cpu(n: int, busy: int, soft: int, idle: int) -> CpuTimes:
        return CpuTimes(n, busy - soft, 0, 0, idle, 0, 0, soft, 0)

    host = HostCounters(
        snmp=frozen_map(
            {
                "Udp": frozen_map({"RcvbufErrors": s.rcvbuf_errors, "InErrors": 0}),
                "Tcp": frozen_map({"RetransSegs": 0}),
                "Ip": frozen_map({"FragCreates": s.frag_creates}),
                "Ip6": frozen_map({"Ip6FragCreates": s.frag_creates6}),
            }
        ),
        netstat=frozen_map({"IpExt": frozen_map({"InCsumErrors": s.csum_errors})}),
        softnet=(CpuSoftnet(0, 1000, s.softnet_drops, 0), CpuSoftnet(1, 1000, 0, 0)),
        cpus=(cpu(0, *s.cpu0), cpu(1, *s.cpu1)),
        interrupts=tuple(
            Interrupt(40 + n, f"eth0-TxRx-{n}", (0, 0), aff, "eth0", n)
            for n, aff in enumerate(s.queue_irqs)
        ),
        irq_cpus=s.irq_cpus,
        conntrack=Conntrack(s.conntrack, 1000),
        log_events=tuple(LogEvent(kind, dev, s.t - ago) for kind, dev, ago in s.log),
        log_available=True,
    )
    knobs = Knobs(
        sysctls=frozen_map({**SYSCTLS, "net.ipv4.ip_forward": s.ip_forward}),
        rps_cpus=frozen_map({"eth0/rx-0": ""}),
        offloads=frozen_map({f"eth0/{k}": v for k, v in s.offloads}),
        offloads_on_since=frozen_map({f"eth0/{k}": taken - ago for k, ago in s.turned_on}),
    )
    return Snapshot(
        taken,
        s.t,
        "net:[golden]",
        (iface,),
        (
            Link(
                "eth0",
                2,
                "veth",
                s.underlay_mtu,
                "UP",
                LinkCounters(carrier_changes=s.carrier_changes),
            ),
        ),
        host,
        knobs,
        probes=probes,
    )


def series(n: int, dt: float, step: Callable[[int, Sample], Sample]) -> list[Snapshot]:
    """``n`` snapshots ``dt`` apart, each folded through the real NAT tracker in order,
    as the observer does."""
    out, sample, nat = [], Sample(0.0), NatTracker()
    for i in range(n):
        sample = step(i, replace(sample, t=i * dt))
        snap = snapshot(sample)
        out.append(replace(snap, nat=nat.update(snap)))
    return out


Expect = tuple[str, str, str | None, str | None, str]
"""(policy, kind, before, after, decision)"""


@dataclass(frozen=True)
class Case:
    name: str
    doc: str
    history: list[Snapshot]
    expect: tuple[Expect, ...]
    findings: tuple[str, ...]


def hot_cpu0(i: int, s: Sample) -> Sample:
    """A minute of cpu0 95 % busy, 70 % in softirq, while cpu1 idles (5 % busy)."""
    return replace(
        s,
        cpu0=(s.cpu0[0] + 5700, s.cpu0[1] + 4200, s.cpu0[2] + 300),
        cpu1=(s.cpu1[0] + 300, s.cpu1[1] + 60, s.cpu1[2] + 5700),
    )


def traffic(i: int, s: Sample) -> Sample:
    return replace(s, rx=s.rx + 50_000, tx=s.tx + 50_000)


def checksum_errors(*turned_on: tuple[str, float]) -> Callable[[int, Sample], Sample]:
    """A forwarding host with GRO and UDP GRO forwarding on, 20 checksum errors/s, and
    the features seen turning on that long before the first snapshot."""

    def step(i: int, s: Sample) -> Sample:
        return replace(
            traffic(i, s),
            ip_forward="1",
            offloads=(("rx-gro", "on"), ("rx-udp-gro-forwarding", "on")),
            turned_on=tuple((name, ago + 30 * i) for name, ago in turned_on),
            csum_errors=600 * i,
        )

    return step


def cases() -> list[Case]:
    return [
        Case(
            "healthy-peer",
            "traffic both ways, fresh handshake: nothing to do",
            series(3, 10, traffic),
            (),
            (),
        ),
        Case(
            "idle-peer",
            "no traffic, handshake an hour old: idle is not broken",
            series(3, 10, lambda i, s: replace(s, handshake_age=3600 + i * 10)),
            (),
            (),
        ),
        Case(
            "nat-keepalive-fires",
            "tx grows without rx, handshake 3 minutes old",
            series(3, 10, lambda i, s: replace(s, tx=s.tx + 1000, handshake_age=180 + i * 10)),
            (("nat-keepalive", "keepalive", "0", "25", "admit"),),
            ("nat-keepalive",),
        ),
        Case(
            "nat-endpoint-churn",
            "the peer's NAT gave it a new port: keep the mapping open",
            series(
                2, 10, lambda i, s: replace(s, rx=s.rx + 10, tx=s.tx + 10, endpoint_port=40000 + i)
            ),
            (("nat-keepalive-churn", "keepalive", "0", "25", "admit"),),
            ("nat-keepalive-churn",),
        ),
        Case(
            "nat-churn-bounds-the-keepalive",
            "rx, 10 s of the hub sending alone, then the peer on a new port: the mapping "
            "lived under 15 s, so the keepalive is 10",
            series(
                4,
                5,
                lambda i, s: replace(
                    s,
                    rx=s.rx + (10 if i in (1, 3) else 0),
                    tx=s.tx + 10,
                    endpoint_port=40000 + (i == 3),
                ),
            ),
            (("nat-keepalive-churn", "keepalive", "0", "10", "admit"),),
            ("nat-keepalive-churn",),
        ),
        Case(
            "nat-churn-with-keepalive-steps-down",
            "a new port although a 25 s keepalive was on: one rung down",
            series(
                3,
                10,
                lambda i, s: replace(
                    s, rx=s.rx + 10, tx=s.tx + 10, keepalive=25, endpoint_port=40000 + (i == 2)
                ),
            ),
            (("nat-keepalive-step-down", "keepalive", "25", "15", "admit"),),
            ("nat-keepalive-step-down",),
        ),
        Case(
            "nat-churn-at-the-floor",
            "a new port although a 10 s keepalive was on: nothing lower, a report",
            series(
                3,
                10,
                lambda i, s: replace(
                    s, rx=s.rx + 10, tx=s.tx + 10, keepalive=10, endpoint_port=40000 + (i == 2)
                ),
            ),
            (),
            ("nat-keepalive-floor",),
        ),
        Case(
            "nat-here-keeps-its-own-mapping",
            "this host reaches the hub's public address from 100.64.0.2 (carrier-grade "
            "NAT): a 15 s keepalive on its own entry",
            series(2, 10, lambda i, s: replace(s, rx=s.rx + 10, sources=("100.64.0.2",))),
            (("nat-keepalive-here", "keepalive", "0", "15", "admit"),),
            ("nat-keepalive-here",),
        ),
        Case(
            "hard-down-peer",
            "tx grows without rx for two hours: alert, no tuning",
            series(
                3,
                20,
                lambda i, s: replace(
                    s,
                    tx=s.tx + 1000,
                    handshake_age=7200 + i * 20,
                    probe_outcome=ProbeOutcome.UNREACHABLE,
                ),
            ),
            (),
            ("handshake-stale", "peer-unreachable"),
        ),
        Case(
            "never-handshaken-peer",
            "an endpoint, tx growing, no handshake ever: a wrong key or a blocked port",
            series(3, 10, lambda i, s: replace(s, tx=s.tx + 148, handshake_age=None)),
            (),
            ("handshake-never",),
        ),
        Case(
            "mtu-underlay-fragments",
            "the underlay link's MTU is 1400, the tunnel's 1420: outer packets fragment",
            series(
                2,
                5,
                lambda i, s: replace(s, underlay_mtu=1400, frag_creates=s.frag_creates + 500),
            ),
            (("mtu-underlay", "mtu", "1420", "1340", "admit"),),
            ("mtu-underlay",),
        ),
        Case(
            "mtu-underlay-and-a-smaller-path",
            "the link carries 1340, a probe found 1300: the probe's smaller value wins",
            series(2, 5, lambda i, s: replace(s, underlay_mtu=1400, probe_mtu=1300)),
            (
                ("mtu-blackhole", "mtu", "1420", "1300", "admit"),
                ("mtu-underlay", "mtu", "1420", "1340", "hold"),
            ),
            ("mtu-blackhole", "mtu-underlay"),
        ),
        Case(
            "mtu-probe-above-the-link",
            "a probe passed 1344 (fragmented on the way) over a 1400 link: capped at 1340",
            series(2, 5, lambda i, s: replace(s, underlay_mtu=1400, probe_mtu=1344)),
            (
                ("mtu-blackhole", "mtu", "1420", "1340", "admit"),
                ("mtu-underlay", "mtu", "1420", "1340", "hold"),
            ),
            ("mtu-blackhole", "mtu-underlay"),
        ),
        Case(
            "mtu-blackhole-fires",
            "a probe through the tunnel passes 1340, not 1420",
            series(2, 5, lambda i, s: replace(s, probe_mtu=1340)),
            (("mtu-blackhole", "mtu", "1420", "1340", "admit"),),
            ("mtu-blackhole",),
        ),
        Case(
            "mtu-clean",
            "the probe passes the interface MTU",
            series(2, 5, lambda i, s: replace(s, probe_mtu=1420)),
            (),
            (),
        ),
        Case(
            "mtu-below-1280",
            "a 1300-byte path needs 1240: below IPv6's minimum, held",
            series(2, 5, lambda i, s: replace(s, probe_mtu=1240)),
            (("mtu-blackhole", "mtu", "1420", "1240", "hold"),),
            ("mtu-blackhole",),
        ),
        Case(
            "tcp-mss-router",
            "a forwarding host with MTU trouble also clamps MSS",
            series(2, 5, lambda i, s: replace(s, probe_mtu=1340, ip_forward="1")),
            (
                ("tcp-mss", "mss_clamp", None, "pmtu", "admit"),
                ("mtu-blackhole", "mtu", "1420", "1340", "admit"),
            ),
            ("mtu-blackhole", "tcp-mss"),
        ),
        Case(
            "udp-socket-default-fires",
            "wireguard-go's own socket drops for 90 s at rmem_default: resized in place to "
            "7 MiB, and the lasting fix (rmem_default, then reopen) reported",
            series(
                4,
                30,
                lambda i, s: replace(
                    s, rcvbuf_errors=s.rcvbuf_errors + 40, socket_drops=s.socket_drops + 40
                ),
            ),
            (("udp-socket-grow", "socket_buffer", "212992", "7340032", "admit"),),
            ("udp-socket-default", "udp-socket-grow"),
        ),
        Case(
            "udp-socket-capped-fires",
            "wireguard-go's socket drops at 2 x rmem_max: resized in place, and the lasting "
            "fix (raise the cap, then reopen) reported",
            series(
                4,
                30,
                lambda i, s: replace(s, socket_drops=s.socket_drops + 40, socket_rcvbuf=2 * 212992),
            ),
            (("udp-socket-grow", "socket_buffer", "425984", "7340032", "admit"),),
            ("udp-socket-capped", "udp-socket-grow"),
        ),
        Case(
            "udp-socket-at-7-mib-still-drops",
            "the socket already holds 7 MiB (forced past the cap) and still drops: neither "
            "grown further nor shrunk, and no buffer advice (a buffer is not what is missing)",
            series(
                4,
                30,
                lambda i, s: replace(s, socket_drops=s.socket_drops + 40, socket_rcvbuf=7340032),
            ),
            (),
            (),
        ),
        Case(
            "udp-errors-of-another-socket",
            "RcvbufErrors rise host-wide but WireGuard's own socket drops nothing",
            series(4, 30, lambda i, s: replace(s, rcvbuf_errors=s.rcvbuf_errors + 40)),
            (),
            (),
        ),
        Case(
            "udp-kernel-backlog",
            "kernel WireGuard: buffers do nothing, backlog does",
            series(
                4,
                30,
                lambda i, s: replace(
                    s,
                    rcvbuf_errors=s.rcvbuf_errors + 40,
                    softnet_drops=s.softnet_drops + 7,
                    implementation=Implementation.KERNEL,
                ),
            ),
            (("udp-backlog", "sysctl", "1000", "2000", "admit"),),
            ("udp-backlog",),
        ),
        Case(
            "softirq-hotspot-fires",
            "cpu0 95 % busy, mostly softirq, for 6 min; cpu1 idle",
            series(
                7,
                60,
                hot_cpu0,
            ),
            (("softirq-hotspot", "irq_affinity", "", "0-1", "admit"),),
            ("softirq-hotspot",),
        ),
        Case(
            "softirq-spread-fires-on-a-multiqueue-nic",
            "the same hotspot, eth0's four queue IRQs all on cpu0: queues 1 and 3 move to "
            "cpu1 (0 and 2 are on theirs); RPS is not the remedy for a multi-queue NIC",
            series(
                7,
                60,
                lambda i, s: replace(hot_cpu0(i, s), queue_irqs=("0", "0", "0", "0")),
            ),
            (
                ("softirq-irq-spread", "irq_affinity", "0", "1", "admit"),
                ("softirq-irq-spread", "irq_affinity", "0", "0", "noop"),
            ),
            ("softirq-irq-spread",),
        ),
        Case(
            "softirq-spread-keeps-off-cores-kept-free-of-irqs",
            "the same hotspot and stacked queue IRQs, but IRQs may go to cpu0 only "
            "(default_smp_affinity 1, cpu1 kept free): nothing to spread onto",
            series(
                7,
                60,
                lambda i, s: replace(hot_cpu0(i, s), queue_irqs=("0", "0"), irq_cpus="0"),
            ),
            (),
            (),
        ),
        Case(
            "softirq-hotspot-with-spread-queues",
            "the same hotspot, eth0's two queue IRQs already on their own cores (one "
            "heavy flow): neither spreading nor RPS can help, nothing changes",
            series(
                7,
                60,
                lambda i, s: replace(hot_cpu0(i, s), queue_irqs=("0", "1")),
            ),
            (),
            (),
        ),
        Case(
            "crypto-bound-userspace-fires",
            "wireguard-go's two threads 90 % of a core each on two cores, for 6 min",
            series(
                7,
                60,
                lambda i, s: replace(
                    s, threads=(s.threads[0] + 5400, s.threads[1] + 5400), rx=s.rx + 50_000
                ),
            ),
            (),
            ("crypto-bound-userspace",),
        ),
        Case(
            "crypto-bound-userspace-not-for-long",
            "the same load for 3 minutes only",
            series(
                4,
                60,
                lambda i, s: replace(s, threads=(s.threads[0] + 5400, s.threads[1] + 5400)),
            ),
            (),
            (),
        ),
        Case(
            "crypto-bound-kernel-fires",
            "kernel WireGuard: both cores 90 % busy, mostly softirq, for 6 min",
            series(
                7,
                60,
                lambda i, s: replace(
                    s,
                    cpu0=(s.cpu0[0] + 5400, s.cpu0[1] + 3000, s.cpu0[2] + 600),
                    cpu1=(s.cpu1[0] + 5400, s.cpu1[1] + 3000, s.cpu1[2] + 600),
                    implementation=Implementation.KERNEL,
                ),
            ),
            (),
            ("crypto-bound-kernel",),
        ),
        Case(
            "conntrack-full-in-the-kernel-log",
            "the sampled count looks fine, but the kernel said 'table full' 2 minutes ago",
            series(3, 60, lambda i, s: replace(s, log=(("conntrack_full", "", 120.0),))),
            (("conntrack-pressure", "sysctl", "1000", "2000", "admit"),),
            ("conntrack-pressure",),
        ),
        Case(
            "conntrack-full-long-ago",
            "a 'table full' line 20 minutes old: not counted",
            series(3, 60, lambda i, s: replace(s, log=(("conntrack_full", "", 1200.0),))),
            (),
            (),
        ),
        Case(
            "underlay-flapping-holds-the-mtu-fix",
            "a blackhole while eth0 went down and up twice: report, and the fix is held",
            series(
                3,
                30,
                lambda i, s: replace(
                    traffic(i, s),
                    probe_mtu=1340,
                    log=(("link_down", "eth0", 200.0), ("link_up", "eth0", 190.0)),
                ),
            ),
            (("mtu-blackhole", "mtu", "1420", "1340", "hold"),),
            ("mtu-blackhole", "underlay-flapping"),
        ),
        Case(
            "underlay-carrier-changes-between-samples",
            "no kernel log line, but eth0's carrier changed twice between two snapshots",
            series(2, 30, lambda i, s: replace(s, carrier_changes=2 * i)),
            (),
            ("underlay-flapping",),
        ),
        Case(
            "offload-gro-on-a-forwarding-host",
            "a forwarding host whose underlay has GRO off: GRO first",
            series(
                2,
                30,
                lambda i, s: replace(
                    traffic(i, s),
                    ip_forward="1",
                    offloads=(("rx-gro", "off"), ("rx-udp-gro-forwarding", "off")),
                ),
            ),
            (("gro-forwarding-host", "offload", "off", "on", "admit"),),
            ("gro-forwarding-host",),
        ),
        Case(
            "offload-udp-gro-forwarding",
            "GRO on, rx-udp-gro-forwarding at its default off, on a forwarding host",
            series(
                2,
                30,
                lambda i, s: replace(
                    traffic(i, s),
                    ip_forward="1",
                    offloads=(("rx-gro", "on"), ("rx-udp-gro-forwarding", "off")),
                ),
            ),
            (("udp-gro-forwarding", "offload", "off", "on", "admit"),),
            ("udp-gro-forwarding",),
        ),
        Case(
            "offload-not-a-forwarding-host",
            "GRO off on a host that does not forward: left alone",
            series(
                2,
                30,
                lambda i, s: replace(
                    traffic(i, s), offloads=(("rx-gro", "off"), ("rx-udp-gro-forwarding", "off"))
                ),
            ),
            (),
            (),
        ),
        Case(
            "offload-errors-after-gro-turned-on",
            "checksum errors at 20/s for a minute, GRO and UDP GRO forwarding turned on "
            "10 and 5 minutes ago: the later one goes off",
            series(3, 30, checksum_errors(("rx-gro", 600), ("rx-udp-gro-forwarding", 300))),
            (("offload-errors", "offload", "on", "off", "admit"),),
            ("offload-errors",),
        ),
        Case(
            "offload-errors-without-a-feature-turned-on",
            "the same errors, GRO on since before wg-tuner looked: no feature to blame",
            series(3, 30, checksum_errors()),
            (),
            (),
        ),
        Case(
            "offload-errors-long-after-the-feature",
            "the same errors, GRO turned on two hours ago: not the feature's doing",
            series(3, 30, checksum_errors(("rx-gro", 7200))),
            (),
            (),
        ),
        Case(
            "conntrack-pressure-fires",
            "conntrack 95 % full for two minutes",
            series(3, 60, lambda i, s: replace(s, conntrack=950)),
            (("conntrack-pressure", "sysctl", "1000", "2000", "admit"),),
            ("conntrack-pressure",),
        ),
        Case(
            "conntrack-short-spike",
            "95 % full for only 30 s: not yet",
            series(2, 30, lambda i, s: replace(s, conntrack=950 if i else 10)),
            (),
            (),
        ),
    ]


def write_all() -> None:
    from tests.golden.test_golden import run_case

    for case in cases():
        folder = HERE / case.name
        folder.mkdir(exist_ok=True)
        (folder / "history.json").write_text(
            json.dumps([to_data(s) for s in case.history], indent=1, sort_keys=True) + "\n"
        )
        (folder / "expected.json").write_text(run_case(folder) + "")


if __name__ == "__main__":
    write_all()
