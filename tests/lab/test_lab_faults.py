"""The lab's faults do what they say, on a real tunnel, and switch off cleanly."""

from __future__ import annotations

import subprocess
import time

from tuner.lab.lab import Lab


def nft_tables(netns: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "list", "tables"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def set_mtu(lab: Lab, mtu: int) -> None:
    subprocess.run(
        ["ip", "-n", lab.topo.a.netns, "link", "set", lab.topo.a.wg, "mtu", str(mtu)], check=True
    )


def test_healthy_tunnel_carries_bulk_traffic(lab: Lab) -> None:
    result = lab.traffic(1.5)
    assert result["ok"], result
    assert result["bytes"] > 1_000_000


def test_mtu_blackhole_stalls_bulk_until_the_mtu_fits(lab: Lab) -> None:
    lab.fault("mtu-blackhole", True, mtu=1400)
    try:
        assert "lab_mtu" in nft_tables(lab.topo.router)
        stalled = lab.traffic(1.5)
        assert stalled["bytes"] < 100_000, stalled
        set_mtu(lab, 1340)  # 1400 - 60 bytes of IPv4 + UDP + WireGuard overhead
        try:
            fits = lab.traffic(1.5)
        finally:
            set_mtu(lab, 1420)
        assert fits["ok"] and fits["bytes"] > 1_000_000, fits
    finally:
        lab.fault("mtu-blackhole", False)
    assert "lab_mtu" not in nft_tables(lab.topo.router)
    assert lab.traffic(1.0)["ok"]


def cached_path_mtu(lab: Lab) -> str:
    """a's route to b's endpoint as the kernel would use it, with any learned path MTU."""
    return subprocess.run(
        ["ip", "-n", lab.topo.a.netns, "-4", "route", "get", lab.topo.b.underlay_addr],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_a_path_mtu_learned_earlier_does_not_defeat_the_next_blackhole(lab: Lab) -> None:
    # What a frag-needed that slips through leaves behind: a learns the 1400 path for ten
    # minutes and fragments WireGuard's packets to fit, so a blackhole would pass them.
    lab.fault("mtu-blackhole", True, mtu=1400)
    try:
        subprocess.run(
            ["ip", "netns", "exec", lab.topo.router, "nft", "delete", "table", "ip", "lab_mtu"],
            check=True,
        )
        lab.traffic(1.0)
        assert "mtu 1400" in cached_path_mtu(lab)
    finally:
        lab.fault("mtu-blackhole", False)
    assert "mtu 1400" not in cached_path_mtu(lab)
    lab.fault("mtu-blackhole", True, mtu=1400)
    try:
        stalled = lab.traffic(1.5)
    finally:
        lab.fault("mtu-blackhole", False)
    assert stalled["bytes"] < 100_000, stalled


def test_down_drops_the_tunnel_both_ways(lab: Lab) -> None:
    lab.fault("down", True)
    try:
        assert not lab.traffic(1.0)["ok"]
    finally:
        lab.fault("down", False)
    lab.kick("a")
    assert lab.traffic(1.0)["ok"]


def test_loss_still_passes_traffic(lab: Lab) -> None:
    applied = lab.fault("loss", True, percent=5.0)
    try:
        assert applied["method"] in ("netem", "nft-numgen")
        assert lab.traffic(1.5)["ok"]
    finally:
        lab.fault("loss", False)
    assert "lab_loss" not in nft_tables(lab.topo.router)


def test_nat_timeout_puts_a_behind_the_router(lab: Lab) -> None:
    def sysctl(key: str) -> str:
        return subprocess.run(
            ["ip", "netns", "exec", lab.topo.router, "sysctl", "-n", key],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    before = sysctl("net.netfilter.nf_conntrack_udp_timeout")
    lab.fault("nat-timeout", True, timeout=5)
    try:
        assert sysctl("net.netfilter.nf_conntrack_udp_timeout") == "5"
        lab.kick("a")
        deadline = time.monotonic() + 10
        endpoint = None
        while time.monotonic() < deadline:
            device = lab.uapi.get(lab.topo.b.wg)
            endpoint = device.peers[0].endpoint
            if endpoint and endpoint.startswith(lab.topo.b.gateway + ":"):
                break
            lab.kick("a")
            time.sleep(0.3)
        # B now sees A only through the router's outside address
        assert endpoint is not None and endpoint.startswith(lab.topo.b.gateway + ":"), endpoint
    finally:
        lab.fault("nat-timeout", False)
    assert sysctl("net.netfilter.nf_conntrack_udp_timeout") == before
