"""Active probes through the tunnel: path MTU per peer and reachability (loss, RTT).

Probes are observations: their results are added to a Snapshot with their method and
time. A small memory file in the state directory (0600) remembers which peers have
answered before and when each was last probed, so a peer that used to answer and
now does not is *unreachable*, while one that never answered is *unprobeable* — never
a blackhole — and the schedule can space probes out across runs.
"""

from __future__ import annotations

import ipaddress
import json
import statistics
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import structlog

from tuner.adapters.icmp import Pinger
from tuner.files import write_atomic
from tuner.model.nat import endpoint_host
from tuner.model.probe import (
    LOWEST_PROBE,
    MIN_TUNNEL_MTU,
    OVERHEAD_V4,
    OVERHEAD_V6,
    WG_PADDING,
    MtuProbe,
    MtuSearch,
    ProbeMethod,
    ProbeOutcome,
    Reachability,
    bisect_mtu,
)
from tuner.model.snapshot import ACTIVE_HANDSHAKE_MAX, Peer, Snapshot, WgInterface

log = structlog.get_logger("tuner.probe")

SMALL_PACKET = 84
MIN_TIMEOUT = 0.05
DOUBTFUL = -1
"""What ``_refine`` returns when a byte size it counted as lost passed when confirmed."""


class Echo(Protocol):
    def echo(self, size: int, timeout: float) -> float | None: ...
    def close(self) -> None: ...


EchoFactory = Callable[[str, str | None], Echo]


def _real_echo(target: str, device: str | None) -> Echo:
    return Pinger(target, device=device)


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    timeout: float = 0.5
    """Seconds to wait for one reply."""
    attempts: int = 3
    """Tries per size before it counts as lost."""
    budget: float = 5.0
    """Seconds per peer for the whole MTU search."""
    parallel: int = 8
    reach_count: int = 5
    confirm: int = 8
    """Extra tries of the smallest lost size before a smaller MTU is reported: with 20 %
    loss each way, eight losses in a row of a size that passes happen 3 times in 10,000."""


def tunnel_target(peer: Peer) -> str | None:
    """The peer's own tunnel address: the host route (/32, /128) in its allowed IPs."""
    for cidr in peer.allowed_ips:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            continue
        if net.num_addresses == 1:
            return str(net.network_address)
    return None


class ProbeMemory:
    """Which peers answered before and when each was last probed (persisted, 0600)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.answered: set[str] = set()
        self.last: dict[str, float] = {}
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text())
                self.answered = set(data.get("answered", []))
                self.last = {str(k): float(v) for k, v in data.get("last", {}).items()}
            except (OSError, ValueError, AttributeError):
                log.warning("probe.memory_unreadable", path=str(path))

    @staticmethod
    def key(interface: str, peer: str) -> str:
        return f"{interface}/{peer}"

    def last_probed(self) -> dict[tuple[str, str], float]:
        return {tuple(k.split("/", 1)): v for k, v in self.last.items()}  # type: ignore[misc]

    def save(self) -> None:
        if self.path is None:
            return
        data = {"answered": sorted(self.answered), "last": self.last}
        write_atomic(self.path, json.dumps(data))


class PathProber:
    def __init__(
        self,
        settings: ProbeSettings = ProbeSettings(),
        memory: ProbeMemory | None = None,
        echo: EchoFactory = _real_echo,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.memory = memory or ProbeMemory(None)
        self.echo = echo
        self.clock = clock
        self._rtt: float | None = None

    def _search(
        self,
        target: str,
        device: str | None,
        *,
        floor: int,
        ceiling: int,
        lowest: int | None,
        resolution: int = 4,
        step: int = 1,
        bracket: bool = False,
    ) -> MtuSearch:
        deadline = time.monotonic() + self.settings.budget
        pinger = self.echo(target, device)
        slowest: list[float] = []

        def passes(size: int) -> bool:
            # Once a reply has been seen, a lost probe is declared lost after a few
            # round-trip times instead of the full timeout: failures stay cheap.
            timeout = self.settings.timeout
            if slowest:
                timeout = min(timeout, max(MIN_TIMEOUT, 4 * slowest[0]))
            rtt = pinger.echo(size, timeout)
            if rtt is None:
                return False
            slowest[:] = [max([rtt, *slowest])]
            return True

        try:
            result = bisect_mtu(
                passes,
                floor,
                max(floor, ceiling),
                lowest=lowest,
                resolution=resolution,
                step=step,
                bracket=bracket,
                attempts=self.settings.attempts,
                out_of_time=lambda: time.monotonic() > deadline,
            )
        finally:
            pinger.close()
        self._rtt = slowest[0] if slowest else None
        return result

    def _refine(
        self, iface: WgInterface, peer: Peer, found: int, failed: int
    ) -> tuple[int | None, int, int]:
        """Byte-exact tunnel MTU in [found, failed) from the underlay, if it answers.

        Through the tunnel, padding hides the last 15 bytes (see WG_PADDING): ``found``
        passed and ``failed`` did not, so outer sizes ``found + overhead`` and
        ``failed + overhead`` are known; only the bytes between are probed, on the
        underlay with DF, which padding does not touch.
        """
        host = endpoint_host(peer.endpoint) if peer.endpoint else None
        if host is None or failed - found <= 1:
            return None, 0, 0
        overhead = OVERHEAD_V6 if ":" in host else OVERHEAD_V4
        search = self._search(
            host,
            None,
            floor=found + overhead,
            ceiling=failed + overhead,
            lowest=None,
            resolution=1,
            bracket=True,
        )
        if not search.answered or search.mtu is None or not search.exact:
            return None, search.probes, search.sizes
        passed, sent = self._confirm_lost(host, None, search.failed_at)
        # The bracket's top is known to fail and was not probed by the search itself.
        sizes = search.sizes + (1 if sent and search.failed_at == failed + overhead else 0)
        if passed:  # a lost byte size passed after all: no byte-exact answer this time
            return DOUBTFUL, search.probes + sent, sizes
        return search.mtu - overhead, search.probes + sent, sizes

    def mtu(  # noqa: PLR0911 - one return per documented outcome (ok, unreachable, ...)
        self, snapshot: Snapshot, iface: WgInterface, peer: Peer, target: str | None = None
    ) -> MtuProbe:
        started = time.monotonic()
        key = ProbeMemory.key(iface.name, peer.public_key)
        target = target or tunnel_target(peer)
        total = 0
        if target is not None:
            search = self._search(
                target,
                iface.name,
                floor=MIN_TUNNEL_MTU,
                ceiling=iface.link.mtu,
                lowest=LOWEST_PROBE,
                resolution=WG_PADDING,
                step=WG_PADDING,
            )
            total += search.probes
            sizes = search.sizes
            mtu, method = search.mtu, ProbeMethod.TUNNEL
            if mtu is not None:
                self.memory.answered.add(key)
                passed, sent = self._confirm_lost(target, iface.name, search.failed_at)
                total += sent
                if passed and search.failed_at is not None:
                    # Loss made a passing size look lost: it is the floor now; search
                    # once more above it, and confirm again.
                    search = self._search(
                        target,
                        iface.name,
                        floor=search.failed_at,
                        ceiling=iface.link.mtu,
                        lowest=None,
                        resolution=WG_PADDING,
                        step=WG_PADDING,
                    )
                    total += search.probes
                    sizes += search.sizes
                    if search.mtu is None:  # the size that just passed was lost again
                        passed = True
                    else:
                        mtu = search.mtu
                        passed, sent = self._confirm_lost(target, iface.name, search.failed_at)
                        total += sent
                if passed:
                    return self._inconclusive(
                        iface=iface,
                        peer=peer,
                        target=target,
                        method=ProbeMethod.TUNNEL,
                        probes=total,
                        started=started,
                    )
                if search.failed_at is not None and search.exact:
                    refined, sent, tried = self._refine(iface, peer, mtu, search.failed_at)
                    total += sent
                    sizes += tried
                    if refined == DOUBTFUL:
                        return self._inconclusive(
                            iface=iface,
                            peer=peer,
                            target=target,
                            method=ProbeMethod.TUNNEL_UNDERLAY,
                            probes=total,
                            started=started,
                        )
                    if refined is not None:
                        mtu, method = refined, ProbeMethod.TUNNEL_UNDERLAY
                return self._result(
                    iface,
                    peer,
                    target,
                    method=method,
                    outcome=ProbeOutcome.OK,
                    mtu=mtu,
                    probes=total,
                    exact=search.exact,
                    started=started,
                    sizes=sizes,
                )
            age = snapshot.handshake_age(peer)
            if key in self.memory.answered or (
                peer.endpoint and (age is None or age > ACTIVE_HANDSHAKE_MAX)
            ):
                return self._result(
                    iface,
                    peer,
                    target,
                    method=ProbeMethod.TUNNEL,
                    outcome=ProbeOutcome.UNREACHABLE,
                    mtu=None,
                    probes=total,
                    exact=True,
                    started=started,
                )
        host = endpoint_host(peer.endpoint) if peer.endpoint else None
        if host is None:
            return self._result(
                iface,
                peer,
                target or "-",
                method=ProbeMethod.TUNNEL,
                outcome=ProbeOutcome.UNPROBEABLE,
                mtu=None,
                probes=total,
                exact=True,
                started=started,
            )
        overhead = OVERHEAD_V6 if ":" in host else OVERHEAD_V4
        underlay_mtu = max(
            (u.mtu for u in snapshot.underlays if u.name in iface.underlays), default=1500
        )
        under = self._search(
            host,
            None,
            floor=MIN_TUNNEL_MTU + overhead,
            ceiling=underlay_mtu,
            lowest=LOWEST_PROBE + overhead,
        )
        total += under.probes
        outer, exact = under.mtu, under.exact
        if outer is not None and outer - overhead < iface.link.mtu:
            passed, sent = self._confirm_lost(host, None, under.failed_at)
            total += sent
            if passed:
                return self._inconclusive(
                    iface=iface,
                    peer=peer,
                    target=host,
                    method=ProbeMethod.UNDERLAY,
                    probes=total,
                    started=started,
                )
        if outer is None:
            return self._result(
                iface,
                peer,
                host,
                method=ProbeMethod.UNDERLAY,
                outcome=ProbeOutcome.UNPROBEABLE,
                mtu=None,
                probes=total,
                exact=True,
                started=started,
            )
        return self._result(
            iface,
            peer,
            host,
            method=ProbeMethod.UNDERLAY,
            outcome=ProbeOutcome.OK,
            mtu=min(outer - overhead, iface.link.mtu),
            probes=total,
            exact=exact,
            started=started,
            sizes=under.sizes,
        )

    def _confirm_lost(self, target: str, device: str | None, size: int | None) -> tuple[bool, int]:
        """Strong evidence before a smaller MTU is reported: the smallest size the search
        counted as lost is tried ``confirm`` more times. (passed, packets sent)."""
        if size is None:
            return False, 0
        timeout = self.settings.timeout
        if self._rtt is not None:  # as in the search: a few round trips, not the timeout
            timeout = min(timeout, max(MIN_TIMEOUT, 4 * self._rtt))
        pinger = self.echo(target, device)
        try:
            for sent in range(1, self.settings.confirm + 1):
                if pinger.echo(size, timeout) is not None:
                    return True, sent
        finally:
            pinger.close()
        return False, self.settings.confirm

    def _inconclusive(
        self,
        *,
        iface: WgInterface,
        peer: Peer,
        target: str,
        method: ProbeMethod,
        probes: int,
        started: float,
    ) -> MtuProbe:
        log.info("probe.inconclusive", interface=iface.name, peer=peer.public_key)
        return self._result(
            iface,
            peer,
            target,
            method=method,
            outcome=ProbeOutcome.INCONCLUSIVE,
            mtu=None,
            probes=probes,
            exact=False,
            started=started,
        )

    def _result(
        self,
        iface: WgInterface,
        peer: Peer,
        target: str,
        *,
        method: ProbeMethod,
        outcome: ProbeOutcome,
        mtu: int | None,
        probes: int,
        exact: bool,
        started: float,
        sizes: int = 0,
    ) -> MtuProbe:
        now = self.clock()
        self.memory.last[ProbeMemory.key(iface.name, peer.public_key)] = now
        probe = MtuProbe(
            iface.name,
            peer.public_key,
            target,
            method,
            outcome,
            mtu,
            iface.link.mtu,
            probes,
            exact,
            now,
            time.monotonic() - started,
            sizes,
        )
        log.info(
            "probe.mtu",
            sizes=sizes,
            interface=iface.name,
            peer=peer.public_key,
            method=method.value,
            outcome=outcome.value,
            tunnel_mtu=mtu,
            probes=probes,
        )
        return probe

    def reach(self, iface: WgInterface, peer: Peer, target: str | None = None) -> Reachability:
        target = target or tunnel_target(peer)
        if target is None:
            return Reachability(iface.name, peer.public_key, "-", 0, 0, None, self.clock())
        pinger = self.echo(target, iface.name)
        rtts: list[float] = []
        try:
            for _ in range(self.settings.reach_count):
                rtt = pinger.echo(SMALL_PACKET, self.settings.timeout)
                if rtt is not None:
                    rtts.append(rtt * 1000)
        finally:
            pinger.close()
        return Reachability(
            iface.name,
            peer.public_key,
            target,
            self.settings.reach_count,
            len(rtts),
            statistics.median(rtts) if rtts else None,
            self.clock(),
        )

    def probe(self, snapshot: Snapshot, which: Iterable[tuple[str, str]]) -> Snapshot:
        """Snapshot with MTU probes for (interface, peer) pairs, run in parallel."""
        jobs = []
        for name, key in which:
            iface = snapshot.interface(name)
            peer = next((p for p in iface.peers if p.public_key == key), None) if iface else None
            if iface is not None and peer is not None:
                jobs.append((iface, peer))
        if not jobs:
            return snapshot
        with ThreadPoolExecutor(max_workers=max(1, self.settings.parallel)) as pool:
            results = list(pool.map(lambda job: self.mtu(snapshot, *job), jobs))
        self.memory.save()
        return replace(snapshot, probes=snapshot.probes + tuple(results))
