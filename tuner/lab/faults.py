"""The faults a lab can switch on and off, each in its own nft table in the router.

Each fault is a pair of functions over a Topology that record what they changed, so
``off`` restores exactly that. netem is used for loss and delay where the kernel has it;
otherwise loss falls back to an nft ``numgen random`` drop (delay then unsupported).
"""

from __future__ import annotations

from typing import Any

from tuner.errors import LabError
from tuner.lab.commands import in_netns, nft_apply, run, sysctl_read, sysctl_write
from tuner.lab.topology import UNDERLAY_MTU, Topology

FAULTS = ("mtu-blackhole", "nat-timeout", "loss", "down", "bad-gro")


def _table(name: str) -> dict[str, Any]:
    return {"table": {"family": "ip", "name": name}}


def _chain(table: str, name: str, kind: str, hook: str, prio: int) -> dict[str, Any]:
    return {
        "chain": {
            "family": "ip",
            "table": table,
            "name": name,
            "type": kind,
            "hook": hook,
            "prio": prio,
            "policy": "accept",
        }
    }


def _rule(table: str, chain: str, expr: list[dict[str, Any]]) -> dict[str, Any]:
    return {"rule": {"family": "ip", "table": table, "chain": chain, "expr": expr}}


def _match(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _drop_table(topo: Topology, name: str, netns: str | None = None) -> None:
    run(in_netns(netns or topo.router, ["nft", "delete", "table", "ip", name]), check=False)


FRAGMENT = _match({"&": [{"payload": {"protocol": "ip", "field": "frag-off"}}, 0x3FFF]}, 0, op="!=")
"""An IPv4 fragment: more-fragments set or a non-zero offset."""
BEFORE_DEFRAG = -450  # the kernel reassembles at -400; fragments are seen before that


def _forget_path_mtus(topo: Topology) -> None:
    """Drop every learned path MTU (route exceptions) in the lab's namespaces.

    A frag-needed that reached a host while the blackhole was being switched makes its
    kernel remember the small path for ten minutes and fragment WireGuard's packets to fit
    it, and a later blackhole then passes everything. Each switch starts from a clean slate.
    """
    for netns in (topo.a.netns, topo.b.netns, topo.router):
        run(["ip", "-n", netns, "-4", "route", "flush", "cache"])


def mtu_blackhole_on(topo: Topology, mtu: int = 1400) -> dict[str, Any]:
    if not 576 <= mtu <= UNDERLAY_MTU:
        raise LabError(f"blackhole MTU must be 576..{UNDERLAY_MTU}")
    _forget_path_mtus(topo)
    run(["ip", "-n", topo.router, "link", "set", topo.router_b, "mtu", str(mtu)])
    run(["ip", "-n", topo.b.netns, "link", "set", topo.b.veth, "mtu", str(mtu)])
    # The router still has to drop the packet; it is the ICMP "fragmentation needed"
    # it would send back that we swallow, which is what makes it a blackhole.
    nft_apply(
        topo.router,
        [
            {"add": _table("lab_mtu")},
            {"add": _chain("lab_mtu", "out", "filter", "output", 0)},
            {
                "add": _rule(
                    "lab_mtu",
                    "out",
                    [
                        _match(
                            {"payload": {"protocol": "icmp", "field": "type"}},
                            "destination-unreachable",
                        ),
                        _match({"payload": {"protocol": "icmp", "field": "code"}}, "frag-needed"),
                        {"drop": None},
                    ],
                )
            },
        ],
    )
    # Kernel WireGuard sends without DF, so the router fragments instead of dropping;
    # a path that also loses fragments (a common middlebox) is what blackholes it.
    for host in (topo.a, topo.b):
        nft_apply(
            host.netns,
            [
                {"add": _table("lab_frag")},
                {"add": _chain("lab_frag", "pre", "filter", "prerouting", BEFORE_DEFRAG)},
                {"add": _rule("lab_frag", "pre", [FRAGMENT, {"drop": None}])},
            ],
        )
    return {"mtu": mtu}


def mtu_blackhole_off(topo: Topology, params: dict[str, Any]) -> None:
    # The MTUs go back first: with the ICMP filter gone and the small MTU still in place,
    # the router would tell the hosts about a path MTU that no longer exists.
    run(["ip", "-n", topo.router, "link", "set", topo.router_b, "mtu", str(UNDERLAY_MTU)])
    run(["ip", "-n", topo.b.netns, "link", "set", topo.b.veth, "mtu", str(UNDERLAY_MTU)])
    _drop_table(topo, "lab_mtu")
    for host in (topo.a, topo.b):
        _drop_table(topo, "lab_frag", host.netns)
    _forget_path_mtus(topo)


NAT_SYSCTLS = (
    "net.netfilter.nf_conntrack_udp_timeout",
    "net.netfilter.nf_conntrack_udp_timeout_stream",
)


NAT_INSIDE = ("100.64.0.2", "100.64.0.1", 24)
"""a's address, the NAT's inside address and their prefix while a is behind the NAT:
RFC 6598 shared space, as a carrier-grade NAT hands out (so a's wg-tuner sees that it
is behind a NAT, as on a real host)."""


def _nat_addressing(topo: Topology, on: bool) -> None:
    inside, gateway, plen = NAT_INSIDE
    verb = "add" if on else "del"
    check = on  # taking it away again must not stop at a half-made lab
    run(
        ["ip", "-n", topo.router, "addr", verb, f"{gateway}/{plen}", "dev", topo.router_a],
        check=check,
    )
    run(
        ["ip", "-n", topo.a.netns, "addr", verb, f"{inside}/{plen}", "dev", topo.a.veth],
        check=check,
    )
    via = ["via", gateway, "src", inside] if on else ["via", topo.a.gateway]
    run(["ip", "-n", topo.a.netns, "route", "replace", "default", *via])


def nat_timeout_on(topo: Topology, timeout: int = 30) -> dict[str, Any]:
    if not 1 <= timeout <= 3600:
        raise LabError("NAT UDP timeout must be 1..3600 seconds")
    saved = {key: sysctl_read(topo.router, key) for key in NAT_SYSCTLS}
    _nat_addressing(topo, True)
    nft_apply(
        topo.router,
        [
            {"add": _table("lab_nat")},
            {"add": _chain("lab_nat", "post", "nat", "postrouting", 100)},
            {"add": _chain("lab_nat", "fwd", "filter", "forward", 0)},
            {
                "add": _rule(
                    "lab_nat",
                    "post",
                    # Random source ports, as carrier-grade NATs do: a mapping that
                    # expired comes back on a new port (endpoint churn on b's side).
                    [_match(_meta("oifname"), topo.router_b), {"masquerade": {"flags": "random"}}],
                )
            },
            # A NAT admits nothing unsolicited from outside: B can only answer A.
            {
                "add": _rule(
                    "lab_nat",
                    "fwd",
                    [
                        _match(_meta("iifname"), topo.router_b),
                        _match({"ct": {"key": "state"}}, "new", op="in"),
                        {"drop": None},
                    ],
                )
            },
        ],
    )
    for key in NAT_SYSCTLS:
        sysctl_write(topo.router, key, str(timeout))
    return {"timeout": timeout, "saved": saved}


def nat_timeout_off(topo: Topology, params: dict[str, Any]) -> None:
    _drop_table(topo, "lab_nat")
    _nat_addressing(topo, False)
    for key, value in params.get("saved", {}).items():
        sysctl_write(topo.router, key, value)


def _has_netem(topo: Topology) -> bool:
    """Whether this kernel has sch_netem (some minimal kernels do not)."""
    try:
        run(
            [
                "tc",
                "-n",
                topo.router,
                "qdisc",
                "add",
                "dev",
                topo.router_b,
                "root",
                "netem",
                "delay",
                "0ms",
            ]
        )
    except LabError:
        return False
    run(["tc", "-n", topo.router, "qdisc", "del", "dev", topo.router_b, "root"], check=False)
    return True


def loss_on(topo: Topology, percent: float = 5.0, delay_ms: int = 0) -> dict[str, Any]:
    if not 0 < percent <= 100:
        raise LabError("loss percent must be in (0, 100]")
    if _has_netem(topo):
        for dev in (topo.router_a, topo.router_b):
            argv = [
                "tc",
                "-n",
                topo.router,
                "qdisc",
                "add",
                "dev",
                dev,
                "root",
                "netem",
                "loss",
                f"{percent}%",
            ]
            if delay_ms:
                argv += ["delay", f"{delay_ms}ms"]
            run(argv)
        return {"percent": percent, "delay_ms": delay_ms, "method": "netem"}
    if delay_ms:
        raise LabError("this kernel has no netem: delay is unavailable (loss alone works)")
    # numgen random mod 1000 < N drops N per mille of forwarded packets, both ways.
    per_mille = round(percent * 10)
    # numgen yields 0-999, so nft refuses "< 1000": 100 % is an unconditional drop.
    sample = (
        [_match({"numgen": {"mode": "random", "mod": 1000, "offset": 0}}, per_mille, op="<")]
        if per_mille < 1000
        else []
    )
    nft_apply(
        topo.router,
        [
            {"add": _table("lab_loss")},
            {"add": _chain("lab_loss", "fwd", "filter", "forward", -10)},
            {"add": _rule("lab_loss", "fwd", [*sample, {"drop": None}])},
        ],
    )
    return {"percent": percent, "delay_ms": 0, "method": "nft-numgen"}


def loss_off(topo: Topology, params: dict[str, Any]) -> None:
    if params.get("method") == "netem":
        for dev in (topo.router_a, topo.router_b):
            run(["tc", "-n", topo.router, "qdisc", "del", "dev", dev, "root"], check=False)
    else:
        _drop_table(topo, "lab_loss")


def down_on(topo: Topology) -> dict[str, Any]:
    nft_apply(
        topo.router,
        [
            {"add": _table("lab_down")},
            {"add": _chain("lab_down", "fwd", "filter", "forward", -20)},
            {"add": _rule("lab_down", "fwd", [_match(_meta("l4proto"), "udp"), {"drop": None}])},
        ],
    )
    return {}


def down_off(topo: Topology, params: dict[str, Any]) -> None:
    _drop_table(topo, "lab_down")


def _tso(netns: str, dev: str) -> str:
    out = run(in_netns(netns, ["ethtool", "-k", dev]))
    for line in out.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "tcp-segmentation-offload" and value.split():
            return value.split()[0]
    return "on"


def bad_gro_on(topo: Topology) -> dict[str, Any]:
    """A NIC driver that corrupts every GRO aggregate, on host a's underlay: any packet
    longer than the MTU arriving there (only a's GRO makes one) gets its IPv4 header
    checksum zeroed, so IP drops it with InCsumErrors, as it would a driver's broken
    aggregate. Harmless while a's GRO is off.

    The router's link into a sends plain MTU-sized packets, as a wire does: with TSO on,
    veth hands its peer whole TSO packets and never lets the peer's GRO see them."""
    a, link = topo.a, topo.router_a
    saved = _tso(topo.router, link)
    run(in_netns(topo.router, ["ethtool", "-K", link, "tso", "off"]))
    checksum = {"payload": {"protocol": "ip", "field": "checksum"}}
    table = {"family": "netdev", "name": "lab_bad_gro"}
    where = {"family": "netdev", "table": "lab_bad_gro"}
    nft_apply(
        a.netns,
        [
            {"add": {"table": table}},
            {
                "add": {
                    "chain": {
                        **where,
                        "name": "ingress",
                        "type": "filter",
                        "hook": "ingress",
                        "dev": a.veth,
                        "prio": 0,
                        "policy": "accept",
                    }
                }
            },
            {
                "add": {
                    "rule": {
                        **where,
                        "chain": "ingress",
                        "expr": [
                            _match(_meta("protocol"), "ip"),
                            _match(_meta("length"), UNDERLAY_MTU, op=">"),
                            {"counter": None},
                            # nft writes the new checksum over the one it fixes up.
                            {"mangle": {"key": checksum, "value": 0}},
                        ],
                    }
                }
            },
        ],
    )
    return {"router_tso": saved}


def bad_gro_off(topo: Topology, params: dict[str, Any]) -> None:
    run(in_netns(topo.a.netns, ["nft", "delete", "table", "netdev", "lab_bad_gro"]), check=False)
    tso = params.get("router_tso")
    if tso in ("on", "off"):
        run(in_netns(topo.router, ["ethtool", "-K", topo.router_a, "tso", tso]), check=False)
