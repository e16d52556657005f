"""NAT facts: which side is NATed, the lifetime bound from churn, the keepalive ladder,
the route's source address, and the churn check a keepalive is verified by."""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest

from tests.golden.cases import Sample, snapshot
from tuner.engine.health import CheckResult, Health
from tuner.exporters.metrics import render
from tuner.model.nat import (
    LIFETIME_CAP,
    NatPeer,
    behind_nat,
    endpoint_host,
    keepalive_fit,
    translated,
)
from tuner.model.routes import Route, RouteTable
from tuner.model.snapshot import Peer
from tuner.observe.nat import NatTracker
from tuner.observe.probes import PathProber

KEY = "CZZ9R+7zfotIs5Bje0Xl7cqdsJb9IDO6OgKiGoXCTD8="


def peer(endpoint: str | None, rx: int = 0, tx: int = 0, keepalive: int = 0) -> Peer:
    return Peer(KEY, endpoint, ("192.0.2.2/32",), 0.0, rx, tx, keepalive)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.1.2.3", True),
        ("172.31.255.1", True),
        ("192.168.0.7", True),
        ("100.64.0.2", True),
        ("100.127.255.254", True),
        ("100.128.0.1", False),
        ("169.254.1.1", True),
        ("fd00::1", True),
        ("fe80::1", True),
        ("203.0.113.2", False),
        ("2001:db8::1", False),
        ("not-an-address", False),
    ],
)
def test_translated_ranges(address: str, expected: bool) -> None:
    assert translated(address) is expected


def test_behind_nat_needs_a_public_endpoint_and_only_translated_sources() -> None:
    assert behind_nat("203.0.113.2", ["100.64.0.2"])
    assert behind_nat("203.0.113.2", ["192.168.1.5", "fd00::5"])  # v6 source: other family
    assert not behind_nat("203.0.113.2", ["192.168.1.5", "198.51.100.2"])  # one public
    assert not behind_nat("10.0.0.1", ["10.0.0.2"])  # a private peer: no NAT between
    assert not behind_nat("203.0.113.2", [])  # no route: unknown is no
    assert not behind_nat("2001:db8::1", ["100.64.0.2"])  # no v6 source at all
    assert not behind_nat("host.example", ["100.64.0.2"])


def test_endpoint_host() -> None:
    assert endpoint_host("203.0.113.2:51820") == "203.0.113.2"
    assert endpoint_host("[fe80::1%eth0]:51820") == "fe80::1"
    assert endpoint_host("nothing") is None


@pytest.mark.parametrize(
    ("lifetime", "current", "churning", "expected"),
    [
        (None, 0, False, 25),
        (40.0, 0, False, 25),
        (25.0, 0, False, 15),  # strictly below the bound
        (16.0, 0, False, 15),
        (15.0, 0, False, 10),
        (11.0, 0, False, 10),
        (10.0, 0, False, 5),  # below the ladder's 10 s rung: the policy's floor holds it
        (3.0, 0, False, 5),
        (None, 25, True, 15),  # churn with 25 s on: one rung down
        (None, 15, True, 10),
        (None, 25, False, 25),  # a keepalive alone bounds nothing
        (12.0, 25, True, 10),
    ],
)
def test_keepalive_ladder(
    lifetime: float | None, current: int, churning: bool, expected: int
) -> None:
    assert keepalive_fit(lifetime, current, churning) == expected


State = tuple[float, str, int, int, int]
"""(monotonic time, endpoint, rx bytes, tx bytes, keepalive) of the one peer."""


def fold(*states: State) -> NatPeer | None:
    """The states through a real tracker, in order; what it says about the peer."""
    base = snapshot(Sample(0.0))
    iface = base.interfaces[0]
    tracker, seen = NatTracker(), ()
    for t, endpoint, rx, tx, keepalive in states:
        one = replace(iface, peers=(peer(endpoint, rx, tx, keepalive),))
        seen = tracker.update(replace(base, monotonic=t, taken_at=1000 + t, interfaces=(one,)))
    return seen[0] if seen else None


def test_the_silence_before_a_churn_bounds_the_lifetime() -> None:
    # t=0..10: rx grew (the packet came after t=0); t=10..20: the hub sent alone;
    # t=20..24: the peer again, on a new port
    start = ((0.0, "a:1", 0, 0, 0), (10.0, "a:1", 10, 0, 0), (20.0, "a:1", 10, 5, 0))
    nat = fold(*start, (24.0, "a:2", 20, 5, 0))
    assert nat is not None and (nat.churns, nat.lifetime, nat.last_churn) == (1, 24.0, 1024.0)
    # a later churn after a longer silence cannot loosen the bound
    nat = fold(*start, (24.0, "a:2", 20, 5, 0), (60.0, "a:2", 20, 9, 0), (70.0, "a:3", 30, 9, 0))
    assert nat is not None and (nat.churns, nat.lifetime) == (2, 24.0)


def test_a_churn_without_a_send_in_the_silence_bounds_nothing() -> None:
    """The peer moved (or came back after idling) while the hub never tried to reach it:
    nothing was lost, so the silence says nothing about the NAT."""
    nat = fold((0.0, "a:1", 0, 0, 0), (10.0, "a:1", 10, 0, 0), (30.0, "a:2", 20, 0, 0))
    assert nat is not None and (nat.churns, nat.lifetime) == (1, None)


def test_a_churn_with_a_keepalive_on_bounds_by_the_keepalive() -> None:
    nat = fold((0.0, "a:1", 0, 0, 25), (10.0, "a:2", 10, 0, 25))
    assert nat is not None and nat.lifetime == 25.0
    # the keepalive was set in this very interval: no bound from it
    nat = fold((0.0, "a:1", 0, 0, 0), (10.0, "a:2", 10, 0, 25))
    assert nat is not None and nat.lifetime is None


def test_silences_longer_than_the_cap_bound_nothing() -> None:
    end = LIFETIME_CAP + 50
    nat = fold(
        (0.0, "a:1", 0, 0, 0), (10.0, "a:1", 10, 0, 0), (20.0, "a:1", 10, 5, 0),
        (end, "a:9", 20, 5, 0),
    )  # fmt: skip
    assert nat is not None and (nat.churns, nat.lifetime) == (1, None)


def test_peers_that_come_go_and_reorder_keep_their_memory() -> None:
    base = snapshot(Sample(0.0))
    iface = base.interfaces[0]
    a0, b0 = peer("a:1"), replace(peer("b:1"), public_key="B" * 43 + "=")

    def at(t: float, *peers: Peer) -> tuple[NatPeer, ...]:
        one = replace(iface, peers=peers)
        return tracker.update(replace(base, monotonic=t, taken_at=1000 + t, interfaces=(one,)))

    tracker = NatTracker()
    at(0.0, a0)
    at(10.0, replace(a0, rx_bytes=10), b0)  # a's packet; b is new
    at(20.0, b0, replace(a0, rx_bytes=10, tx_bytes=5))  # reordered; the hub sent to a
    (nat,) = at(24.0, replace(a0, endpoint="a:2", rx_bytes=20, tx_bytes=5), b0)
    assert (nat.peer, nat.lifetime) == (KEY, 24.0)


def test_the_tracker_reports_only_peers_that_churned() -> None:
    base = snapshot(Sample(0.0))
    tracker = NatTracker()
    iface = base.interfaces[0]
    churning = replace(iface.peers[0], endpoint="203.0.113.9:1000")

    def at(t: float, *peers: Peer) -> object:
        return replace(
            base,
            monotonic=t,
            taken_at=1000 + t,
            interfaces=(replace(iface, peers=peers),),
        )

    first = at(0.0, iface.peers[0])
    assert tracker.update(first) == ()  # type: ignore[arg-type]
    moved = replace(churning, rx_bytes=churning.rx_bytes + 1)
    (seen,) = tracker.update(at(5.0, moved))  # type: ignore[arg-type]
    assert (seen.interface, seen.peer, seen.churns) == (iface.name, churning.public_key, 1)
    assert seen.last_churn == 1005.0


def test_route_source_prefers_the_routes_own_then_the_links() -> None:
    table = RouteTable(
        [
            Route(socket.AF_INET, None, 0, 2),
            Route(socket.AF_INET, "100.64.0.0", 24, 2, prefsrc="100.64.0.2"),
            Route(socket.AF_INET, "198.51.100.0", 24, 3, prefsrc="198.51.100.2"),
            Route(socket.AF_INET, "203.0.113.0", 24, 3, prefsrc="198.51.100.9"),
        ]
    )
    assert table.source("8.8.8.8") == "100.64.0.2"  # default via link 2: its address
    assert table.source("203.0.113.2") == "198.51.100.9"  # the route names one
    assert table.source("2001:db8::1") is None


def health() -> Health:
    return Health(observer=None, prober=PathProber(), actuators={})  # type: ignore[arg-type]


def test_the_endpoint_check_fails_on_churn_only() -> None:
    snap = snapshot(Sample(0.0))
    iface = snap.interfaces[0]
    key = iface.peers[0].public_key
    base = Health._endpoint_stable(snap, iface.name, key, None)
    assert base.ok and base.value == iface.peers[0].endpoint
    same = Health._endpoint_stable(snap, iface.name, key, base)
    assert same.ok
    moved = replace(
        snap,
        interfaces=(replace(iface, peers=(replace(iface.peers[0], endpoint="203.0.113.1:4242"),)),),
    )
    churned = Health._endpoint_stable(moved, iface.name, key, base)
    assert not churned.ok and "203.0.113.1:4242" in churned.detail
    none_before = CheckResult("peer_endpoint_stable", True, "baseline", None)
    assert Health._endpoint_stable(moved, iface.name, key, none_before).ok


def test_nat_series_are_exported_for_churned_peers_only() -> None:
    snap = snapshot(Sample(0.0))
    iface = snap.interfaces[0]
    key = iface.peers[0].public_key
    text = render(replace(snap, nat=(NatPeer(iface.name, key, 3, 17.5, 1000.0),)))
    assert (
        f'wg_tuner_peer_endpoint_changes_total{{interface="{iface.name}",public_key="{key}"}} 3.0'
        in text
    )
    assert (
        f'wg_tuner_peer_nat_lifetime_seconds{{interface="{iface.name}",public_key="{key}"}} 17.5'
        in text
    )
    assert "wg_tuner_peer_endpoint_changes_total{" not in render(snap)
