"""PathProber decisions on a simulated network (padding, fallbacks, outcomes)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.reliability import FigureFn
from tuner.model.probe import ProbeMethod, ProbeOutcome
from tuner.model.snapshot import (
    HostCounters,
    Implementation,
    Knobs,
    Link,
    Peer,
    Snapshot,
    WgInterface,
)
from tuner.observe.probes import PathProber, ProbeMemory, ProbeSettings, tunnel_target

pytestmark = pytest.mark.timing

PEER = "CZZ9R+7zfotIs5Bje0Xl7cqdsJb9IDO6OgKiGoXCTD8="


class Net:
    """path: outer path MTU; tunnel_icmp / underlay_icmp: whether targets answer."""

    def __init__(
        self,
        path: int,
        *,
        tunnel_icmp: bool = True,
        underlay_icmp: bool = True,
        tunnel_up: bool = True,
        iface_mtu: int = 1420,
        peer_mtu: int | None = None,
    ) -> None:
        self.path, self.iface_mtu = path, iface_mtu
        self.peer_mtu = peer_mtu
        """The peer's own MTU, which caps the padding of its reply (None: not modelled)."""
        self.tunnel_icmp, self.underlay_icmp, self.tunnel_up = tunnel_icmp, underlay_icmp, tunnel_up
        self.sent: list[tuple[str, int]] = []

    def factory(self, target: str, device: str | None) -> Echo:
        return Echo(self, target, device)


class Echo:
    def __init__(self, net: Net, target: str, device: str | None) -> None:
        self.net, self.target, self.device = net, target, device

    def echo(self, size: int, timeout: float) -> float | None:
        net = self.net
        net.sent.append((self.target, size))
        if self.device:  # through the tunnel: padded to 16, capped at the interface MTU
            padded = min(-(-size // 16) * 16, net.iface_mtu)
            ok = net.tunnel_up and net.tunnel_icmp and padded + 60 <= net.path
            if net.peer_mtu is not None:  # the echo reply, padded by the peer
                ok = ok and min(-(-size // 16) * 16, net.peer_mtu) + 60 <= net.path
        else:
            ok = net.underlay_icmp and size <= net.path
        return 0.001 if ok else None

    def close(self) -> None:
        pass


def snapshot(handshake: float = 999.0) -> tuple[Snapshot, WgInterface, Peer]:
    peer = Peer(PEER, "203.0.113.2:51820", ("192.0.2.2/32",), handshake, 1, 1, 0)
    link = Link("wg0", 5, "tun", 1420, "UNKNOWN")
    iface = WgInterface("wg0", Implementation.USERSPACE, None, 1, 0, link, (peer,), ("eth0",))
    snap = Snapshot(
        1000.0,
        1.0,
        "net:[1]",
        (iface,),
        (Link("eth0", 2, "veth", 1500, "UP"),),
        HostCounters(),
        Knobs(),
    )
    return snap, iface, peer


def prober(net: Net, tmp_path: Path | None = None) -> PathProber:
    memory = ProbeMemory(tmp_path / "probes.json" if tmp_path else None)
    return PathProber(ProbeSettings(timeout=0.01), memory, echo=net.factory, clock=lambda: 1000.0)


@pytest.mark.parametrize(
    ("path", "expected"),
    [(1400, 1340), (1300, 1240), (1350, 1290), (1500, 1420), (1480, 1420), (1479, 1419)],
)
def test_tunnel_then_underlay_refinement(path: int, expected: int) -> None:
    snap, iface, peer = snapshot()
    result = prober(Net(path)).mtu(snap, iface, peer)
    assert result.outcome is ProbeOutcome.OK
    assert result.tunnel_mtu == expected
    assert result.method is (
        ProbeMethod.TUNNEL if expected == 1420 else ProbeMethod.TUNNEL_UNDERLAY
    )


def test_without_underlay_icmp_the_answer_is_the_safe_16_byte_edge() -> None:
    snap, iface, peer = snapshot()
    result = prober(Net(1400, underlay_icmp=False)).mtu(snap, iface, peer)
    assert (result.method, result.tunnel_mtu) == (ProbeMethod.TUNNEL, 1328)


def test_unanswering_tunnel_target_falls_back_to_the_underlay() -> None:
    snap, iface, peer = snapshot()
    result = prober(Net(1400, tunnel_icmp=False)).mtu(snap, iface, peer)
    assert (result.method, result.outcome, result.tunnel_mtu) == (
        ProbeMethod.UNDERLAY,
        ProbeOutcome.OK,
        1340,
    )


def test_nothing_answers_is_unprobeable_never_a_blackhole() -> None:
    snap, iface, peer = snapshot()
    result = prober(Net(1400, tunnel_icmp=False, underlay_icmp=False)).mtu(snap, iface, peer)
    assert result.outcome is ProbeOutcome.UNPROBEABLE
    assert result.tunnel_mtu is None


def test_a_peer_that_answered_before_and_now_does_not_is_unreachable(tmp_path: Path) -> None:
    snap, iface, peer = snapshot()
    net = Net(1500)
    first = prober(net, tmp_path)
    assert first.mtu(snap, iface, peer).outcome is ProbeOutcome.OK
    first.memory.save()
    net.tunnel_up = False
    result = prober(net, tmp_path).mtu(snap, iface, peer)
    assert result.outcome is ProbeOutcome.UNREACHABLE
    assert oct((tmp_path / "probes.json").stat().st_mode & 0o777) == "0o600"


def test_stale_handshake_and_silence_is_unreachable() -> None:
    snap, iface, peer = snapshot(handshake=0.0)
    result = prober(Net(1500, tunnel_up=False)).mtu(snap, iface, peer)
    assert result.outcome is ProbeOutcome.UNREACHABLE


def test_tunnel_target_is_the_host_route() -> None:
    assert tunnel_target(Peer(PEER, None, ("10.0.0.0/24", "10.0.0.7/32"), 0, 0, 0, 0)) == "10.0.0.7"
    assert tunnel_target(Peer(PEER, None, ("fd00::5/128",), 0, 0, 0, 0)) == "fd00::5"
    assert tunnel_target(Peer(PEER, None, ("0.0.0.0/0",), 0, 0, 0, 0)) is None


def test_reachability_counts_loss() -> None:
    _, iface, peer = snapshot()
    reach = prober(Net(1500)).reach(iface, peer)
    assert (reach.sent, reach.received, reach.loss) == (5, 5, 0.0)
    down = prober(Net(1500, tunnel_up=False)).reach(iface, peer)
    assert down.loss == 1.0 and down.rtt_ms is None


@pytest.mark.parametrize(
    ("path", "most"), [(1400, 11), (1350, 11), (1479, 11), (1460, 11), (1300, 15)]
)
def test_exact_answer_in_few_probe_sizes(path: int, most: int) -> None:
    """Typically at most 11 sizes (one of them the confirmation of the smallest lost
    size); a path below 1280 (atypical) needs a few more."""
    snap, iface, peer = snapshot()
    net = Net(path)
    result = prober(net).mtu(snap, iface, peer)
    assert result.tunnel_mtu == min(1420, path - 60)
    assert result.sizes == len({size for _, size in net.sent})
    assert result.sizes <= most, net.sent


class LossyEcho(Echo):
    """Each probe and each reply is lost with probability ``loss`` (seeded)."""

    def __init__(self, net: Net, target: str, device: str | None, rng: random.Random) -> None:
        super().__init__(net, target, device)
        self.rng = rng

    def echo(self, size: int, timeout: float) -> float | None:
        answer = super().echo(size, timeout)
        lost = self.rng.random() < LOSS or self.rng.random() < LOSS
        return None if lost else answer


LOSS = 0.2


@pytest.mark.parametrize("path", [1400, 1300])
def test_loss_never_makes_a_smaller_mtu_only_an_inconclusive_probe(
    path: int, figure: FigureFn
) -> None:
    """20 % loss each way: the answer is the true MTU or inconclusive, never below it."""
    snap, iface, peer = snapshot()
    truth = path - 60
    outcomes: dict[str, int] = {}
    for seed in range(400):
        rng = random.Random(seed)
        net = Net(path)
        p = PathProber(
            ProbeSettings(timeout=0.01, budget=60),
            ProbeMemory(None),
            echo=lambda target, device, net=net, rng=rng: LossyEcho(net, target, device, rng),
            clock=lambda: 1000.0,
        )
        result = p.mtu(snap, iface, peer)
        if result.outcome is ProbeOutcome.OK:
            # Exact (the underlay fallback bisects to 4 bytes), or no answer at all.
            slack = 3 if result.method is ProbeMethod.UNDERLAY else 0
            assert result.tunnel_mtu is not None, (seed, result)
            assert truth - slack <= result.tunnel_mtu <= truth, (seed, result)
            key = "exact" if result.tunnel_mtu == truth else "within 3 bytes (underlay)"
        else:
            assert result.outcome is ProbeOutcome.INCONCLUSIVE, (seed, result)
            key = "inconclusive"
        outcomes[key] = outcomes.get(key, 0) + 1
    figure(
        "Verification noise",
        f"path-MTU probe of a {truth} path under 20 % loss each way, 400 seeded runs -> "
        "answers below the path's MTU",
        0,
        f"({', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))})",
    )
    assert outcomes.get("exact", 0) > 300


def test_a_real_blackhole_is_confirmed_not_called_inconclusive() -> None:
    net = Net(1400)
    snap, iface, peer = snapshot()
    result = prober(net).mtu(snap, iface, peer)
    assert result.outcome is ProbeOutcome.OK and result.tunnel_mtu == 1340
    confirmations = [s for _, s in net.sent].count(1344)
    assert confirmations >= 8  # the smallest lost size was tried again before answering
