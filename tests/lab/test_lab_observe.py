"""Observation against a real tunnel (wireguard-go in namespaces)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from tests.conftest import WG_TUNER, cli
from tests.helpers.labkeys import lab_secrets
from tests.reliability import FigureFn
from tuner.lab.lab import Lab


def wg_dump(netns: str, ifname: str) -> list[list[str]]:
    out = subprocess.run(
        ["ip", "netns", "exec", netns, "wg", "show", ifname, "dump"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split("\t") for line in out.splitlines()]


def status_json(lab: Lab, role: str = "a") -> dict[str, Any]:
    proc = cli(
        ["status", "--format", "json", "--sample", "0.2", "--log-format", "json"],
        netns=lab.topo.host(role).netns,
        check=True,
    )
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def test_status_matches_wg_show_dump_field_by_field(lab: Lab) -> None:
    lab.kick("a")
    host = lab.topo.a
    data = status_json(lab)
    dump = wg_dump(host.netns, host.wg)
    (iface,) = data["interfaces"]
    _private, public, port, fwmark = dump[0]
    assert iface["name"] == host.wg
    assert iface["implementation"] == "userspace"
    assert iface["public_key"] == public
    assert str(iface["listen_port"]) == port
    assert fwmark == "off" and iface["fwmark"] == 0
    assert iface["link"]["mtu"] == 1420
    assert iface["underlays"] == [host.veth]
    peers = {p["public_key"]: p for p in iface["peers"]}
    assert len(peers) == len(dump) - 1
    for row in dump[1:]:
        key, _psk, endpoint, allowed, handshake, rx, tx, keepalive = row
        peer = peers[key]
        assert peer["endpoint"] == endpoint
        assert ",".join(peer["allowed_ips"]) == allowed
        assert int(peer["latest_handshake"]) == int(handshake)
        assert peer["handshake_age"] is not None and peer["handshake_age"] < 180
        # counters only grow between the two reads
        assert peer["rx_bytes"] <= int(rx) and peer["tx_bytes"] <= int(tx)
        assert (str(peer["persistent_keepalive"]) if peer["persistent_keepalive"] else "off") == (
            keepalive
        )
        assert peer["rx_bps"] is not None


def test_underlay_counters_and_queue_masks(lab: Lab) -> None:
    data = status_json(lab)
    (underlay,) = data["underlays"]
    assert underlay["name"] == lab.topo.a.veth
    assert underlay["counters"]["tx_bytes"] > 0
    assert f"{lab.topo.a.veth}/rx-0" in data["knobs"]["rps_cpus"]
    assert data["host"]["snmp"]["Udp"]["OutDatagrams"] > 0


def test_interfaces_of_other_namespaces_are_never_listed(lab: Lab) -> None:
    a = status_json(lab, "a")
    b = status_json(lab, "b")
    assert [i["name"] for i in a["interfaces"]] == [lab.topo.a.wg]
    assert [i["name"] for i in b["interfaces"]] == [lab.topo.b.wg]
    router = cli(["status", "--sample", "0"], netns=lab.topo.router, check=True)
    assert "no WireGuard interfaces" in router.stdout
    assert lab.topo.a.wg not in router.stdout and lab.topo.b.wg not in router.stdout


def test_no_secret_in_any_output(lab: Lab, tmp_path: Any, figure: FigureFn) -> None:
    keys = lab_secrets(lab)
    netns = lab.topo.a.netns
    outputs = []
    state = ["--state-dir", str(tmp_path / "state")]
    lab.fault("mtu-blackhole", True, mtu=1400)  # so plan, apply and the journal have content
    try:
        for args in (
            ["plan", "--format", "json", "--sample", "0.3", "--probe-timeout", "0.3", *state],
            ["plan", "--sample", "0.3", "--probe-timeout", "0.3", *state],
            ["apply", "--format", "json", "--verify-window", "3", "--settle", "1", *state],
            ["history", "--format", "json", *state],
            ["rollback", "--all", "--format", "json", *state],
        ):
            proc = cli([*args, "--log-format", "json"], netns=netns)
            outputs += [proc.stdout, proc.stderr]
        daemon = subprocess.run(  # a few enforce cycles, then SIGTERM
            [
                *("ip", "netns", "exec", netns, "timeout", "-s", "TERM", "12", WG_TUNER, "run"),
                *("--interval", "1", "--mode", "enforce", "--metrics-listen", ""),
                *("--settle", "1", "--verify-window", "3", "--probe-timeout", "0.3"),
                *("--textfile", str(tmp_path / "run.prom"), *state, "--log-format", "json"),
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        outputs += [daemon.stdout, daemon.stderr, (tmp_path / "run.prom").read_text()]
    finally:
        lab.fault("mtu-blackhole", False)
        subprocess.run(["ip", "-n", netns, "link", "set", lab.topo.a.wg, "mtu", "1420"], check=True)
    outputs.append((tmp_path / "state" / "journal.jsonl").read_text())
    for args in (
        ["status", "--sample", "0.2"],
        ["status", "--format", "json", "--sample", "0.2"],
        ["metrics"],
        ["metrics", "--textfile", str(tmp_path / "wg.prom")],
        [
            "lab",
            "status",
            "--prefix",
            lab.topo.prefix,
            "--state-dir",
            str(lab.state_dir),
            "--format",
            "json",
        ],
    ):
        proc = cli([*args, "--log-format", "json"], netns=netns, check=True)
        outputs += [proc.stdout, proc.stderr]
    outputs.append((tmp_path / "wg.prom").read_text())
    outputs.append(lab.record_path.read_text())
    blob = "\n".join(outputs)
    assert lab.topo.a.wg in blob  # the outputs are about this interface...
    assert '"state": "verified"' in blob and "cycle.done" in blob  # ...apply and run ran...
    leaked = [k for k in keys if k in blob]
    figure(
        "Security",
        f"{len(keys)} private and preshared keys (hex and base64) searched in status, "
        f"metrics, plan, apply, history, rollback, daemon logs, textfiles, journal "
        f"({len(blob) // 1024} KiB) -> matches",
        len(leaked),
    )
    assert leaked == []  # ...and carry none of its keys


def test_metrics_peer_series_for_the_tunnel(lab: Lab) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    proc = cli(["metrics"], netns=lab.topo.a.netns, check=True)
    families = {f.name: f for f in text_string_to_metric_families(proc.stdout)}
    (sample,) = families["wireguard_latest_handshake_seconds"].samples
    assert sample.labels["interface"] == lab.topo.a.wg
    assert sample.labels["allowed_ips"] == f"{lab.topo.b.tunnel_addr}/32"
    assert sample.value > 0
