from __future__ import annotations

from types import MappingProxyType

from tuner.model.probe_schedule import ProbeSchedule, due_probes
from tuner.model.rates import PeerRate, Rates
from tuner.model.snapshot import (
    HostCounters,
    Implementation,
    Knobs,
    Link,
    Peer,
    Snapshot,
    WgInterface,
)


def snap(n: int) -> Snapshot:
    peers = tuple(Peer(f"K{i}", None, (), 0.0, 0, 0, 0) for i in range(n))
    iface = WgInterface(
        "wg0", Implementation.KERNEL, None, 1, 0, Link("wg0", 1, "wireguard", 1420, "UP"), peers
    )
    return Snapshot(10_000.0, 1.0, "n", (iface,), (), HostCounters(), Knobs())


def rates(
    peers: dict[str, tuple[int, int]], counters: dict[str, dict[str, int]] | None = None
) -> Rates:
    return Rates(
        interval=2.0,
        peers=MappingProxyType(
            {("wg0", k): PeerRate(rx / 2, tx / 2, rx, tx) for k, (rx, tx) in peers.items()}
        ),
        counters=counters or {},
    )


def test_quiet_peers_are_swept_a_few_at_a_time() -> None:
    s = snap(10_000)
    due = due_probes(s, rates({}), {}, ProbeSchedule(max_per_cycle=16))
    assert len(due) == 16 and all(d.reason == "sweep" for d in due)


def test_recently_probed_quiet_peers_wait_for_the_sweep_interval() -> None:
    s = snap(3)
    last = {("wg0", f"K{i}"): 10_000.0 - 60 for i in range(3)}
    assert due_probes(s, rates({}), last) == ()


def test_tx_without_rx_is_probed_at_once_and_first() -> None:
    s = snap(100)
    last = {("wg0", f"K{i}"): 10_000.0 - 60 for i in range(100)}
    due = due_probes(s, rates({"K42": (0, 5000), "K7": (100, 100)}), last)
    assert [(d.peer, d.reason) for d in due] == [("K42", "tx without rx")]


def test_path_counters_moving_probe_active_peers_only() -> None:
    s = snap(5)
    last = {("wg0", f"K{i}"): 10_000.0 - 60 for i in range(5)}
    r = rates({"K1": (100, 100), "K2": (0, 0)}, {"Tcp": {"RetransSegs": 12}})
    due = due_probes(s, r, last)
    assert [(d.peer, d.reason) for d in due] == [("K1", "path counters moving")]


def test_min_interval_rate_limits_even_symptoms() -> None:
    s = snap(1)
    due = due_probes(s, rates({"K0": (0, 5000)}), {("wg0", "K0"): 10_000.0 - 2})
    assert due == ()


def test_a_lone_keepalive_is_not_demand() -> None:
    s = snap(1)
    last = {("wg0", "K0"): 10_000.0 - 60}
    assert due_probes(s, rates({"K0": (0, 32)}), last) == ()  # WireGuard's own keepalive
    assert [d.reason for d in due_probes(s, rates({"K0": (0, 148)}), last)] == ["tx without rx"]
