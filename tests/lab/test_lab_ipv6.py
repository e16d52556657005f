"""An IPv6 underlay: WireGuard's 80 bytes of outer overhead, fragmentation counted in
/proc/net/snmp6, and mtu-underlay fixing it without a probe.

The shared lab gets IPv6 addresses (RFC 3849 documentation prefix) beside its IPv4 ones
and both WireGuard peers switch their endpoints to them; everything is put back after.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import cli
from tests.lab.test_lab_apply import FAST
from tests.reliability import FigureFn
from tuner.lab.lab import Lab

A6, RA6, RB6, B6 = "2001:db8:a::2", "2001:db8:a::1", "2001:db8:b::1", "2001:db8:b::2"


def ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


def ns_sysctl(netns: str, key: str, value: str | None = None) -> str:
    argv = ["ip", "netns", "exec", netns, "sysctl", "-n", key]
    if value is not None:
        argv = ["ip", "netns", "exec", netns, "sysctl", "-q", "-w", f"{key}={value}"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def peer_of(netns: str, wg: str) -> str:
    out = subprocess.run(
        ["ip", "netns", "exec", netns, "wg", "show", wg, "peers"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    (key,) = out
    return key


def set_endpoint(netns: str, wg: str, endpoint: str) -> None:
    key = peer_of(netns, wg)
    ip("netns", "exec", netns, "wg", "set", wg, "peer", key, "endpoint", endpoint)


@contextlib.contextmanager
def ipv6_underlay(lab: Lab) -> Iterator[None]:
    topo = lab.topo
    a, b, r = topo.a, topo.b, topo.router
    forwarding = ns_sysctl(r, "net.ipv6.conf.all.forwarding")
    added = [(a.netns, a.veth, A6), (r, topo.router_a, RA6), (r, topo.router_b, RB6)]
    added.append((b.netns, b.veth, B6))
    try:
        for netns in (a.netns, r, b.netns):
            ns_sysctl(netns, "net.ipv6.conf.all.disable_ipv6", "0")
        ns_sysctl(r, "net.ipv6.conf.all.forwarding", "1")
        for netns, dev, addr in added:
            ip("-n", netns, "addr", "add", f"{addr}/64", "dev", dev, "nodad")
        ip("-n", a.netns, "-6", "route", "add", "default", "via", RA6)
        ip("-n", b.netns, "-6", "route", "add", "default", "via", RB6)
        set_endpoint(a.netns, a.wg, f"[{B6}]:{b.listen_port}")
        set_endpoint(b.netns, b.wg, f"[{A6}]:{a.listen_port}")
        yield
    finally:
        set_endpoint(a.netns, a.wg, f"{b.underlay_addr}:{b.listen_port}")
        set_endpoint(b.netns, b.wg, f"{a.underlay_addr}:{a.listen_port}")
        ip("-n", a.netns, "-6", "route", "del", "default", "via", RA6, check=False)
        ip("-n", b.netns, "-6", "route", "del", "default", "via", RB6, check=False)
        for netns, dev, addr in added:
            ip("-n", netns, "addr", "del", f"{addr}/64", "dev", dev, check=False)
        ns_sysctl(r, "net.ipv6.conf.all.forwarding", forwarding)


def ip6_frag_creates(lab: Lab) -> int:
    text = subprocess.run(
        ["ip", "netns", "exec", lab.topo.a.netns, "cat", "/proc/net/snmp6"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return next(
        int(v) for k, v in (line.split() for line in text.splitlines()) if k == "Ip6FragCreates"
    )


def bulk(lab: Lab, seconds: float = 1.5) -> tuple[int, dict[str, Any]]:
    before = ip6_frag_creates(lab)
    moved = lab.traffic(seconds)
    return ip6_frag_creates(lab) - before, moved


def test_an_ipv6_underlay_smaller_than_the_tunnel_is_fixed_and_fragmentation_stops(
    lab: Lab, tmp_path: Path, figure: FigureFn
) -> None:
    a = lab.topo.a
    with ipv6_underlay(lab):
        ip("-n", a.netns, "link", "set", a.veth, "mtu", "1400")
        try:
            assert lab.wait_handshake(30) >= 0
            status = json.loads(
                cli(["status", "--format", "json", "--sample", "0"], netns=a.netns).stdout
            )
            (iface,) = [i for i in status["interfaces"] if i["name"] == a.wg]
            assert iface["peers"][0]["endpoint"] == f"[{B6}]:{lab.topo.b.listen_port}"
            assert iface["underlays"] == [a.veth]
            fragmented, moved = bulk(lab)
            # 1420 + 80 > 1400: every full-size packet leaves a in two IPv6 fragments.
            assert moved["ok"] and fragmented > 1000, (fragmented, moved)
            proc = cli(
                [
                    "apply",
                    "--format",
                    "json",
                    "--state-dir",
                    str(tmp_path),
                    *FAST,
                    "--probe-max",
                    "0",
                ],
                netns=a.netns,
                timeout=120,
            )
            assert proc.returncode == 0, proc.stderr
            (change,) = [c for c in json.loads(proc.stdout)["changes"] if c["kind"] == "mtu"]
            # The IPv6 overhead, not IPv4's: 1400 - 80.
            assert (change["policy"], change["status"], change["after"]) == (
                "mtu-underlay",
                "verified",
                1320,
            )
            time.sleep(0.5)
            after, moved = bulk(lab)
        finally:
            ip("-n", a.netns, "link", "set", a.veth, "mtu", "1500")
            ip("-n", a.netns, "link", "set", a.wg, "mtu", "1420")
    assert moved["ok"] and moved["bytes"] > 1_000_000, moved
    assert after == 0, after  # Ip6FragCreates, the symptom's own counter, stopped
    assert lab.wait_handshake(30) >= 0  # back on the IPv4 underlay
    figure(
        "Remediation",
        "IPv6 underlay, link MTU 1400 under a 1420 tunnel -> Ip6FragCreates during 1.5 s "
        "of bulk TCP before and after mtu-underlay's fix (1400 - 80 = 1320, no probe)",
        f"{fragmented} -> {after}",
    )
