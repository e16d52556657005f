"""The verifier's tunnel probe passes on a path that carries the new MTU, whatever the
peer's own MTU (its reply is padded by up to 15 bytes past ours)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_prober import Net, prober, snapshot
from tuner.engine.health import CheckResult, Health
from tuner.model.checks import HealthCheck
from tuner.model.probe import round_trip_size
from tuner.model.target import Target

CHECK = HealthCheck("tunnel_probe_passes", {"interface": "wg0"})
BASELINE = CheckResult("tunnel_probe_passes", True, "baseline")


def verify(net: Net, desired: int) -> tuple[CheckResult, list[tuple[str, Any]]]:
    snap, _, _ = snapshot()
    health = Health(observer=None, prober=prober(net), actuators={})  # type: ignore[arg-type]
    result = health.run(CHECK, Target("mtu", "wg0"), str(desired), snap, None, baseline=BASELINE)
    return result, net.sent


@pytest.mark.parametrize("path", [1400, 1300, 1350, 1479])
def test_a_fitting_mtu_verifies_though_the_peer_pads_its_reply(path: int) -> None:
    fitted = path - 60  # what the search found, to the byte
    result, sent = verify(Net(path, iface_mtu=fitted, peer_mtu=1420), fitted)
    assert result.ok, (result, sent)
    assert {size for _, size in sent} == {round_trip_size(fitted)}


def test_an_mtu_too_big_for_the_path_still_fails() -> None:
    result, _ = verify(Net(1400, iface_mtu=1360, peer_mtu=1420), 1360)
    assert not result.ok


def test_round_trip_size_is_the_16_byte_grid_below() -> None:
    assert [round_trip_size(m) for m in (1340, 1344, 1420, 1279, 100)] == [
        1328,
        1344,
        1408,
        1264,
        576,
    ]


def test_fragmentation_stops_needs_the_counter_all_but_stopped() -> None:
    from dataclasses import replace as with_

    from tests.golden.cases import Sample, snapshot

    start = Sample(t=0.0, frag_creates=0)
    before, baseline_at = snapshot(start), snapshot(with_(start, t=1.0, frag_creates=1000))
    health = Health(observer=None, prober=None, actuators={})  # type: ignore[arg-type]
    check = HealthCheck("fragmentation_stops")
    target = Target("mtu", "wg0")
    base = health.run(check, target, "1340", baseline_at, before, baseline=None)
    assert base.ok and base.value == 1000.0  # 1000 fragments a second before the change

    def after(per_second: int) -> CheckResult:
        then = snapshot(with_(start, t=2.0, frag_creates=1000))
        now = snapshot(with_(start, t=3.0, frag_creates=1000 + per_second))
        return health.run(check, target, "1340", now, then, baseline=base)

    assert after(0).ok and after(90).ok  # stopped, or under a tenth (+0.5/s)
    assert not after(500).ok  # halved is not stopped: "not worse" would have passed it


def test_fragmentation_stops_counts_ipv6_fragments_too() -> None:
    """An IPv6 underlay fragments into Ip6FragCreates (/proc/net/snmp6), not Ip's."""
    from dataclasses import replace as with_

    from tests.golden.cases import Sample, snapshot

    start = Sample(t=0.0)
    health = Health(observer=None, prober=None, actuators={})  # type: ignore[arg-type]
    check, target = HealthCheck("fragmentation_stops"), Target("mtu", "wg0")
    base = health.run(
        check,
        target,
        "1320",
        snapshot(with_(start, t=1.0, frag_creates6=800)),
        snapshot(start),
        baseline=None,
    )
    assert base.value == 800.0
    still = health.run(
        check,
        target,
        "1320",
        snapshot(with_(start, t=3.0, frag_creates6=1600)),
        snapshot(with_(start, t=2.0, frag_creates6=800)),
        baseline=base,
    )
    assert not still.ok, still  # IPv6 fragments did not stop: not verified


@pytest.mark.parametrize(
    ("name", "halved_passes"), [("softnet_drops_stop", False), ("softnet_drops_not_worse", True)]
)
def test_softnet_drops_stop_needs_the_drops_all_but_stopped(name: str, halved_passes: bool) -> None:
    """udp-backlog's proof is its symptom's own counter: drops that only halved after
    the backlog was raised did not stop, though they are not worse."""
    from dataclasses import replace as with_

    from tests.golden.cases import Sample, snapshot

    start = Sample(t=0.0, softnet_drops=0)
    health = Health(observer=None, prober=None, actuators={})  # type: ignore[arg-type]
    check = HealthCheck(name)
    target = Target("sysctl", "net.core.netdev_max_backlog")
    base = health.run(
        check,
        target,
        "2000",
        snapshot(with_(start, t=1.0, softnet_drops=400)),
        snapshot(start),
        baseline=None,
    )
    assert base.ok and base.value == 400.0

    def after(per_second: int) -> CheckResult:
        then = snapshot(with_(start, t=2.0, softnet_drops=400))
        now = snapshot(with_(start, t=3.0, softnet_drops=400 + per_second))
        return health.run(check, target, "2000", now, then, baseline=base)

    assert after(0).ok and after(40).ok
    assert after(200).ok is halved_passes
    assert not after(900).ok


def test_socket_drops_stop_counts_the_changed_interfaces_own_socket() -> None:
    """udp-socket-grow's proof: drops on wg0's own sockets all but stop. Host-wide UDP
    errors do not count (another socket's), and a socket that cannot be read fails."""
    from dataclasses import replace as with_

    from tests.golden.cases import Sample, snapshot

    start = Sample(t=0.0)
    health = Health(observer=None, prober=None, actuators={})  # type: ignore[arg-type]
    check = HealthCheck("socket_drops_stop", {"interface": "wg0"})
    target = Target("socket_buffer", "wg0")
    base = health.run(
        check,
        target,
        "7340032",
        snapshot(with_(start, t=1.0, socket_drops=300)),
        snapshot(start),
        baseline=None,
    )
    assert base.ok and base.value == 300.0

    def after(drops: int, errors: int = 0, iface: str = "wg0") -> CheckResult:
        then = snapshot(with_(start, t=2.0, socket_drops=300))
        now = snapshot(with_(start, t=3.0, socket_drops=300 + drops, rcvbuf_errors=errors))
        probe = HealthCheck("socket_drops_stop", {"interface": iface})
        return health.run(probe, target, "7340032", now, then, baseline=base)

    assert after(0).ok and after(25).ok
    assert not after(150).ok  # halved is not stopped
    assert after(0, errors=5000).ok  # someone else's socket
    assert not after(0, iface="wg9").ok  # no such interface: nothing proven


def test_softirq_spreads_needs_the_other_cores_to_take_softirq_work() -> None:
    """softirq-hotspot's proof is where softirq time goes (/proc/stat per core): a
    change after which one core still does it all did not spread it, though nothing
    got worse; a load that ended leaves nothing to judge."""
    from dataclasses import replace as with_

    from tests.golden.cases import Sample, snapshot

    start = Sample(t=0.0)
    health = Health(observer=None, prober=None, actuators={})  # type: ignore[arg-type]
    check = HealthCheck("softirq_spreads")
    target = Target("irq_affinity", "eth0/rx-0")

    def at(t: float, cpu0: int, cpu1: int) -> Any:
        """Softirq jiffies so far on each core (each core's time adds up to 100/s)."""
        return snapshot(
            with_(
                start,
                t=t,
                cpu0=(cpu0, cpu0, int(100 * t) - cpu0),
                cpu1=(cpu1, cpu1, int(100 * t) - cpu1),
            )
        )

    base = health.run(check, target, "0-1", at(10.0, 950, 5), at(0.0, 0, 0), baseline=None)
    assert base.ok and base.value == pytest.approx(5 / 955)  # one core did it all

    def after(cpu0: int, cpu1: int) -> CheckResult:
        return health.run(
            check, target, "0-1", at(20.0, 950 + cpu0, 5 + cpu1), at(10.0, 950, 5), baseline=base
        )

    spread = after(600, 350)
    assert spread.ok and "37%" in spread.detail, spread
    assert not after(940, 10).ok  # still one core's: nothing spread
    assert not after(930, 60).ok  # 6 %: not yet a tenth of the work
    assert after(2, 1).ok  # the load is gone: nothing left to spread
