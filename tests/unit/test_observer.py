"""The Observer with in-memory ports: backend choice, namespaces, vanished and broken interfaces."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.fakehost import build_tree
from tests.fakeuapi import daemon, make_reply
from tuner.adapters.uapi import UapiClient, UapiDevice
from tuner.errors import ObserveError
from tuner.model.nat import endpoint_host
from tuner.model.rates import delta, rates
from tuner.model.snapshot import Implementation, Link, LinkCounters, Peer
from tuner.observe.collector import Observer
from tuner.observe.paths import HostPaths
from tuner.observe.wireguard import WireGuardReader


class FakeNetlink:
    def __init__(self, links: list[Link], oifs: dict[str, int] | None = None) -> None:
        self._links = links
        self.oifs = oifs or {}

    def links(self) -> tuple[Link, ...]:
        return tuple(self._links)

    def route_oifs(self, destinations: tuple[str, ...]) -> dict[str, int]:
        return {d: self.oifs[d] for d in destinations if d in self.oifs}

    def route_sources(self, destinations: tuple[str, ...]) -> set[str]:
        return set()


def link(name: str, index: int, kind: str, rx: int = 0) -> Link:
    return Link(name, index, kind, 1420, "UNKNOWN", LinkCounters(rx_bytes=rx))


@pytest.fixture
def paths(tmp_path: Path) -> HostPaths:
    return HostPaths.under(build_tree(tmp_path))


def observer(paths: HostPaths, nl: FakeNetlink, **kw: object) -> Observer:
    clock = iter(float(t) for t in range(1_700_000_100, 1_700_000_200))
    mono = iter(float(t) for t in range(100))
    return Observer(
        paths=paths,
        netlink=nl,  # type: ignore[arg-type]
        clock=lambda: next(clock),
        monotonic=lambda: next(mono),
        **kw,  # type: ignore[arg-type]
    )


def test_only_interfaces_with_a_link_here_are_read(paths: HostPaths) -> None:
    nl = FakeNetlink(
        [link("lo", 1, ""), link("wg0", 2, "tun"), link("eth0", 3, "veth")],
        oifs={"198.51.0.1": 3},
    )
    with (
        daemon(paths.wg_socket_dir, "wg0", make_reply(2)),
        daemon(paths.wg_socket_dir, "othernsif", make_reply(1)),
    ):
        snap = observer(paths, nl).observe()
    assert [i.name for i in snap.interfaces] == ["wg0"]
    iface = snap.interfaces[0]
    assert iface.implementation is Implementation.USERSPACE
    assert iface.underlays == ("eth0",)
    assert [u.name for u in snap.underlays] == ["eth0"]
    assert [i.irq for i in snap.host.interrupts] == [24, 25]
    assert snap.knobs.rps_cpus["eth0/rx-0"] == "0-1"
    assert snap.host.snmp["Udp"]["RcvbufErrors"] == 15


def test_tun_without_socket_is_not_wireguard(paths: HostPaths) -> None:
    snap = observer(paths, FakeNetlink([link("tun0", 2, "tun")])).observe()
    assert snap.interfaces == ()


def test_kernel_link_uses_generic_netlink(paths: HostPaths) -> None:
    seen: list[str] = []

    def kernel(ifname: str) -> UapiDevice:
        seen.append(ifname)
        return UapiDevice("PUB", 51820, 0, (Peer("K", None, (), 0.0, 1, 2, 0),))

    uapi = UapiClient(paths.wg_socket_dir)
    reader = WireGuardReader(uapi, kernel_reader=kernel)
    snap = observer(paths, FakeNetlink([link("wg1", 5, "wireguard")]), wireguard=reader).observe()
    assert seen == ["wg1"]
    assert snap.interfaces[0].implementation is Implementation.KERNEL


def test_vanished_interface_is_skipped_with_an_event(paths: HostPaths) -> None:
    nl = FakeNetlink([link("wg0", 2, "tun"), link("wg9", 3, "tun")])

    def gone(ifname: str) -> bool:
        return ifname != "wg9"

    uapi = UapiClient(paths.wg_socket_dir, timeout=0.5)
    reader = WireGuardReader(uapi, link_exists=gone)
    with (
        daemon(paths.wg_socket_dir, "wg0", make_reply(1)),
        daemon(paths.wg_socket_dir, "wg9", b"garbage"),
        capture_logs() as logs,
    ):
        snap = observer(paths, nl, wireguard=reader).observe()
    assert [i.name for i in snap.interfaces] == ["wg0"]
    assert snap.notes and "wg9" in snap.notes[0]
    assert snap.errors == ()
    assert [e["event"] for e in logs] == ["observe.interface_vanished"]


def test_garbage_socket_is_an_error_naming_the_interface(paths: HostPaths) -> None:
    nl = FakeNetlink([link("wg0", 2, "tun"), link("wgbad", 3, "tun")])
    with (
        daemon(paths.wg_socket_dir, "wg0", make_reply(1)),
        daemon(paths.wg_socket_dir, "wgbad", b"HTTP/1.0 200 OK\r\n\r\n"),
        capture_logs() as logs,
    ):
        snap = observer(paths, nl).observe()
    assert [i.name for i in snap.interfaces] == ["wg0"]
    assert len(snap.errors) == 1 and "wgbad" in snap.errors[0]
    assert logs[0]["event"] == "observe.interface_failed"


def test_snapshot_is_immutable(paths: HostPaths) -> None:
    snap = observer(paths, FakeNetlink([])).observe()
    with pytest.raises(AttributeError):
        snap.interfaces = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        snap.host.snmp["Udp"] = {}  # type: ignore[index]


def test_rates_survive_counter_resets(paths: HostPaths) -> None:
    nl = FakeNetlink([link("wg0", 2, "tun")])
    with daemon(paths.wg_socket_dir, "wg0", make_reply(3)):
        obs = observer(paths, nl)
        first = obs.observe()
    # the daemon restarted: counters start again from a smaller value
    with daemon(paths.wg_socket_dir, "wg0", make_reply(3).replace(b"tx_bytes=2000", b"tx_bytes=5")):
        second = obs.observe()
    r = rates(first, second)
    peer = second.interfaces[0].peers[2]
    assert r.peers[("wg0", peer.public_key)].tx_delta == 5
    assert r.peers[("wg0", second.interfaces[0].peers[1].public_key)].tx_delta == 0
    assert delta(10, 15) == 5
    assert delta(10, 3) == 3


def test_endpoint_host_forms() -> None:
    assert endpoint_host("198.51.100.1:51820") == "198.51.100.1"
    assert endpoint_host("[fe80::1%eth0]:51820") == "fe80::1"
    assert endpoint_host("garbage") is None


def test_netlink_errors_classified() -> None:
    import errno

    from tuner.adapters.netlink import _classify
    from tuner.errors import TransientObserveError

    assert isinstance(_classify(OSError(errno.ENOBUFS, "x"), "links"), TransientObserveError)
    err = _classify(OSError(errno.EPERM, "x"), "links")
    assert isinstance(err, ObserveError) and not isinstance(err, TransientObserveError)
