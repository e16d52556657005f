"""Observation for real inside a throwaway namespace (no WireGuard in it)."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import cli


def test_status_without_wireguard_says_so_and_exits_0(netns: str) -> None:
    proc = cli(["status", "--sample", "0", "--log-format", "json"], netns=netns)
    assert proc.returncode == 0, proc.stderr
    assert "no WireGuard interfaces" in proc.stdout


def test_status_json_names_this_namespace(netns: str) -> None:
    proc = cli(["status", "--format", "json", "--sample", "0"], netns=netns, check=True)
    data = json.loads(proc.stdout)
    inode = (
        __import__("subprocess")
        .run(
            ["ip", "netns", "exec", netns, "readlink", "/proc/self/ns/net"],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
    )
    assert data["netns"] == inode
    assert data["interfaces"] == []
    # per-namespace sysctls are visible; initial-namespace-only ones report None
    assert data["knobs"]["sysctls"]["net.ipv4.tcp_mtu_probing"] is not None
    assert data["knobs"]["sysctls"]["net.core.netdev_max_backlog"] is None


def test_metrics_without_wireguard_still_emit_host_series(netns: str) -> None:
    proc = cli(["metrics", "--log-format", "json"], netns=netns, check=True)
    names = {f.name for f in text_string_to_metric_families(proc.stdout)}
    assert "wg_tuner_snmp_counter" in names
    assert "wg_tuner_cpu_seconds" not in names  # node_exporter's node_cpu_seconds_total
    proc = cli(["metrics", "--host-series"], netns=netns, check=True)
    names = {f.name for f in text_string_to_metric_families(proc.stdout)}
    assert "wg_tuner_cpu_seconds" in names
    assert "wg_tuner_snapshot_timestamp_seconds" in names


def test_netlink_link_counters_for_real(netns: str) -> None:
    import subprocess

    from pyroute2 import NetNS

    from tuner.adapters.netlink import link_from_message

    with NetNS(netns, flags=0) as ns:
        links = {m.get_attr("IFLA_IFNAME"): link_from_message(m) for m in ns.get_links()}
    assert links["v0"].kind == "veth"
    assert links["v0"].mtu == 1500
    subprocess.run(["ip", "-n", netns, "link", "set", "v0", "down"], check=True)
    subprocess.run(["ip", "-n", netns, "link", "set", "v0", "up"], check=True)
    with NetNS(netns, flags=0) as ns:
        after = {m.get_attr("IFLA_IFNAME"): link_from_message(m) for m in ns.get_links()}
    assert after["v0"].counters.carrier_changes > links["v0"].counters.carrier_changes
