"""Status text/JSON and Prometheus exposition from a recorded snapshot."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakehost import build_tree
from tests.fakeuapi import PRIVATE_HEX, PSK_HEX, daemon, make_reply
from tests.unit.test_observer import FakeNetlink, link, observer
from tuner.exporters.metrics import render, write_textfile
from tuner.exporters.snapshot_json import snapshot_to_data
from tuner.exporters.status import render_text
from tuner.model.rates import rates
from tuner.model.snapshot import Snapshot
from tuner.observe.paths import HostPaths


@pytest.fixture
def snaps(tmp_path: Path) -> tuple[Snapshot, Snapshot]:
    paths = HostPaths.under(build_tree(tmp_path))
    nl = FakeNetlink([link("wg0", 2, "tun"), link("eth0", 3, "veth")], {"198.51.0.1": 3})
    with daemon(paths.wg_socket_dir, "wg0", make_reply(3, handshake=1_699_999_000)):
        obs = observer(paths, nl)
        first = obs.observe()
        second = obs.observe()
    return first, second


def test_metrics_use_wireguard_exporter_names(snaps: tuple[Snapshot, Snapshot]) -> None:
    text = render(snaps[1])
    families = {f.name: f for f in text_string_to_metric_families(text)}
    sent = families["wireguard_sent_bytes"]
    labels = sent.samples[1].labels
    assert set(labels) == {"interface", "public_key", "allowed_ips", "friendly_name"}
    assert labels["friendly_name"] == ""  # no config names this peer
    assert labels["allowed_ips"] == "10.0.0.1/32,fd00::1/128"
    assert sent.samples[1].value == 1000
    assert "wireguard_received_bytes" in families
    assert "wireguard_latest_handshake_seconds" in families
    host = [n for n in families if not n.startswith("wireguard_")]
    assert host and all(n.startswith("wg_tuner_") for n in host)
    counters = {s.labels["counter"] for s in families["wg_tuner_snmp_counter"].samples}
    assert "FragCreates" in counters and "RcvbufErrors" not in counters  # node_exporter's
    assert "wg_tuner_cpu_seconds" not in families and "wg_tuner_link_rx_bytes" not in families
    full = render(snaps[1], host_series=True)
    families = {f.name: f for f in text_string_to_metric_families(full)}
    udp = [
        s
        for s in families["wg_tuner_snmp_counter"].samples
        if s.labels["counter"] == "RcvbufErrors"
    ]
    assert udp[0].value == 15
    assert {"wg_tuner_cpu_seconds", "wg_tuner_link_rx_bytes"} <= set(families)
    assert PRIVATE_HEX not in text and PSK_HEX not in text and PRIVATE_HEX not in full


def test_textfile_is_written_atomically(snaps: tuple[Snapshot, Snapshot], tmp_path: Path) -> None:
    target = tmp_path / "out" / "wg_tuner.prom"
    target.parent.mkdir()
    target.write_text("old\n")
    inode = os.stat(target).st_ino
    write_textfile(snaps[1], target)
    assert os.stat(target).st_ino != inode  # replaced by rename, never rewritten in place
    assert "wireguard_sent_bytes_total" in target.read_text()
    assert sorted(p.name for p in target.parent.iterdir()) == ["wg_tuner.prom"]


def test_status_text_and_json(snaps: tuple[Snapshot, Snapshot]) -> None:
    first, second = snaps
    r = rates(first, second)
    text = render_text(second, r)
    assert "interface wg0 (userspace)" in text
    assert "underlay eth0" in text
    assert "conntrack 120/1000" in text
    data = snapshot_to_data(second, r)
    assert data["schema"] == "wg-tuner/snapshot/v1"
    peer = data["interfaces"][0]["peers"][0]
    assert peer["handshake_age"] == pytest.approx(second.taken_at - 1_699_999_000.5)
    assert peer["rx_bps"] == 0.0
    blob = json.dumps(data)
    assert PRIVATE_HEX not in blob and PSK_HEX not in blob


def test_friendly_names_from_a_config_reach_metrics_status_and_json(tmp_path: Path) -> None:
    """A wg-easy config beside the interface: its client name labels the peer's series,
    an info series carries it with the endpoint, and status text and JSON show it."""
    paths = HostPaths.under(build_tree(tmp_path))
    nl = FakeNetlink([link("wg0", 2, "tun"), link("eth0", 3, "veth")], {"198.51.0.1": 3})
    with daemon(paths.wg_socket_dir, "wg0", make_reply(3, handshake=1_699_999_000)):
        obs = observer(paths, nl)
        first = obs.observe()
        named = first.interfaces[0].peers[0]
        conf = paths.etc("wireguard", "wg0.conf")
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            f"[Interface]\nPrivateKey = {PRIVATE_HEX}\n\n# Client: alice-phone (id-1)\n"
            f"[Peer]\nPublicKey = {named.public_key}\nPresharedKey = {PSK_HEX}\n"
        )
        snap = obs.observe()
    assert dict(snap.interfaces[0].peer_names) == {named.public_key: "alice-phone"}
    text = render(snap)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    by_key = {s.labels["public_key"]: s for s in families["wireguard_sent_bytes"].samples}
    assert by_key[named.public_key].labels["friendly_name"] == "alice-phone"
    info = {s.labels["public_key"]: s.labels for s in families["wg_tuner_peer_info"].samples}
    assert len(info) == len(snap.interfaces[0].peers)
    assert info[named.public_key]["friendly_name"] == "alice-phone"
    assert info[named.public_key]["endpoint"] == (named.endpoint or "")
    assert f"{named.public_key} (alice-phone)" in render_text(snap, None)
    peers = snapshot_to_data(snap)["interfaces"][0]["peers"]
    assert [p["friendly_name"] for p in peers].count("alice-phone") == 1
    assert PRIVATE_HEX not in text and PSK_HEX not in text


def test_probe_series_stay_between_probing_cycles_and_go_with_their_peer() -> None:
    from dataclasses import replace as with_

    from prometheus_client import CollectorRegistry, generate_latest

    from tests.golden.cases import KEY, Sample, snapshot
    from tuner.exporters.controller_metrics import ControllerState, LiveSnapshotCollector
    from tuner.model.probe import Reachability

    state = ControllerState()
    registry = CollectorRegistry()
    registry.register(LiveSnapshotCollector(state))

    def cycle(snap: Snapshot) -> str:
        state.snapshot = snap
        state.remember_probes(snap)
        return generate_latest(registry).decode()

    probed = snapshot(Sample(t=0.0, probe_mtu=1340))
    probed = with_(probed, reachability=(Reachability("wg0", KEY, "192.0.2.2", 3, 2, 12.5, 0.0),))
    first = cycle(probed)
    labels = f'{{interface="wg0",public_key="{KEY}"}}'
    assert f"wg_tuner_probe_path_mtu_bytes{labels} 1340.0" in first
    assert f"wg_tuner_peer_rtt_seconds{labels} 0.0125" in first
    assert f"wg_tuner_peer_echo_loss_ratio{labels} 0.3333333333333333" in first
    # A cycle that did not probe keeps the newest result: no gap in the series.
    assert f"wg_tuner_probe_path_mtu_bytes{labels} 1340.0" in cycle(snapshot(Sample(t=10.0)))
    # The peer is removed from the interface: its probe series go too.
    gone = snapshot(Sample(t=20.0))
    gone = with_(gone, interfaces=tuple(with_(i, peers=()) for i in gone.interfaces))
    assert "wg_tuner_probe_path_mtu_bytes{" not in cycle(gone)


def test_wireguard_exporter_names_and_labels_as_it_writes_them() -> None:
    """mdlayher/wireguard_exporter's series (device + public_key on every peer series,
    its _info metrics), so its public dashboards work on wg-tuner unchanged."""
    from prometheus_client.parser import text_string_to_metric_families

    from tests.golden.cases import KEY, Sample, snapshot
    from tuner.exporters.metrics import render

    snap = snapshot(Sample(t=0.0, rx=500, tx=700))

    def families(text: str) -> dict[str, Any]:
        return {f.name: f for f in text_string_to_metric_families(text)}

    ours = families(render(snap, "wireguard_exporter"))
    assert "wireguard_sent_bytes" not in ours  # MindFlavor's names are off in this mode
    (rx,) = ours["wireguard_peer_receive_bytes"].samples
    assert (rx.name, rx.labels, rx.value) == (
        "wireguard_peer_receive_bytes_total",
        {"device": "wg0", "public_key": KEY},
        500.0,
    )
    assert ours["wireguard_peer_transmit_bytes"].samples[0].value == 700.0
    (info,) = ours["wireguard_peer_info"].samples
    assert set(info.labels) == {"device", "public_key", "allowed_ips", "endpoint", "name"}
    assert info.labels["endpoint"] == "203.0.113.2:51820"
    assert set(ours["wireguard_device_info"].samples[0].labels) == {"device", "public_key"}
    assert set(ours["wireguard_peer_last_handshake_seconds"].samples[0].labels) == {
        "device",
        "public_key",
    }
    both = families(render(snap, "both"))
    assert "wireguard_sent_bytes" in both and "wireguard_peer_transmit_bytes" in both
    default = families(render(snap))
    assert "wireguard_sent_bytes" in default and "wireguard_peer_info" not in default


def test_peer_series_limit_keeps_the_busiest_and_the_peers_with_findings() -> None:
    from dataclasses import replace as with_

    from prometheus_client import CollectorRegistry, generate_latest

    from tests.golden.cases import Sample, snapshot
    from tuner.exporters.controller_metrics import ControllerState, LiveSnapshotCollector

    snap = snapshot(Sample(t=0.0))
    (iface,) = snap.interfaces
    (template,) = iface.peers
    peers = tuple(
        with_(template, public_key=f"peer{n}", rx_bytes=n * 1000, tx_bytes=0) for n in range(5)
    )
    state = ControllerState(snapshot=with_(snap, interfaces=(with_(iface, peers=peers),)))
    state.peer_findings = (("handshake-never", "wg0", "peer0", ""),)  # the quietest peer
    registry = CollectorRegistry()
    registry.register(LiveSnapshotCollector(state, peer_limit=2))
    text = generate_latest(registry).decode()
    shown = {n for n in range(5) if f'public_key="peer{n}"' in text}
    assert shown == {4, 3, 0}, shown  # the two busiest, and the one with a finding
    assert 'wg_tuner_peer_series_omitted{interface="wg0"} 2.0' in text
    assert 'wg_tuner_interface_peers{implementation="userspace",interface="wg0"} 5.0' in text
