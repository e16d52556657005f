"""Path-MTU search and probe results (pure: the prober is a function passed in).

``bisect_mtu`` finds the largest packet size that passes, between a floor that must
pass (1280, IPv6's minimum) and the interface MTU. Each size is tried up to
``attempts`` times before it counts as lost, so random loss cannot shrink the answer;
the search stops when the bracket is within ``resolution`` bytes or the budget is spent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

MIN_TUNNEL_MTU = 1280
WG_PADDING = 16
"""WireGuard pads each packet to a multiple of 16 bytes (capped at the interface MTU),
so a probe of N bytes leaves as roundup16(N) + overhead: through a tunnel whose MTU is
above the path's, pass and fail change only at multiples of 16."""


def round_trip_size(mtu: int) -> int:
    """The largest echo through a tunnel of ``mtu`` that fits both ways on a path that
    carries exactly ``mtu`` + overhead.

    Our side caps its padding at our MTU, but the peer pads its reply by up to 15 bytes
    past it when its own MTU is larger (it usually is: only our side was changed), so an
    echo of exactly ``mtu`` bytes can come back too big. One on the 16-byte grid is never
    padded. The search has already measured the last bytes on the underlay.
    """
    return max(LOWEST_PROBE, mtu - mtu % WG_PADDING)


LOWEST_PROBE = 576
"""Below 1280 a tunnel cannot carry IPv6, but the probe still measures such a path."""
OVERHEAD_V4 = 60
OVERHEAD_V6 = 80


class ProbeMethod(StrEnum):
    TUNNEL = "tunnel"
    """ICMP echo with DF through the tunnel to the peer's tunnel address."""
    UNDERLAY = "underlay"
    """ICMP echo with DF to the peer's endpoint; tunnel MTU = path MTU - overhead."""
    TUNNEL_UNDERLAY = "tunnel+underlay"
    """Found through the tunnel, then refined to the byte on the underlay (see padding)."""


class ProbeOutcome(StrEnum):
    OK = "ok"
    UNREACHABLE = "unreachable"
    """Not even the smallest probe passed, but the peer answered before: a down path."""
    UNPROBEABLE = "unprobeable"
    """Nothing ever answered (firewalled, no ICMP): never to be read as a blackhole."""
    INCONCLUSIVE = "inconclusive"
    """A size the search counted as lost passed when confirmed: loss, not the path, made
    the answer. No path MTU is reported (so no finding); the next probe tries again."""


@dataclass(frozen=True, slots=True)
class MtuSearch:
    mtu: int | None
    """Largest passing size, or None when even the floor failed."""
    probes: int
    exact: bool
    """False when the budget ran out before the bracket closed."""
    failed_at: int | None = None
    """Smallest size known to fail (None when the ceiling passed)."""
    sizes: int = 0
    """Distinct sizes tried (``probes`` counts packets, retries included)."""
    answered: bool = False
    """Whether any probe got a reply."""


def bisect_mtu(  # noqa: PLR0911 - each early return is one documented outcome
    passes: Callable[[int], bool],
    floor: int,
    ceiling: int,
    *,
    lowest: int | None = None,
    attempts: int = 3,
    resolution: int = 4,
    step: int = 1,
    bracket: bool = False,
    budget: int = 40,
    out_of_time: Callable[[], bool] = lambda: False,
) -> MtuSearch:
    """Largest size in [lowest or floor, ceiling] for which ``passes(size)`` is true.

    The floor is tried first (it usually passes and tells the prober the round-trip
    time), then the ceiling; only when the floor fails is ``lowest`` tried, so a path
    below the floor is still measured. A size is lost only after ``attempts`` tries.
    Running out of budget never counts as a failure: the result is then marked inexact.
    ``step`` keeps midpoints on a grid (WireGuard's 16-byte padding); with ``bracket``
    the floor is known to pass and the ceiling to fail, so neither is probed again.
    """
    sent = 0
    tried: set[int] = set()
    replied = False

    def ok(size: int) -> bool | None:
        nonlocal sent, replied
        tried.add(size)
        for _ in range(attempts):
            if sent >= budget or out_of_time():
                return None
            sent += 1
            if passes(size):
                replied = True
                return True
        return False

    def result(mtu: int | None, exact: bool, failed: int | None = None) -> MtuSearch:
        return MtuSearch(mtu, sent, exact, failed, len(tried), replied)

    if bracket:
        return _narrow(
            ok, lo=floor, hi=ceiling, resolution=max(resolution, step), step=step, result=result
        )

    first = ok(floor)
    if first is None:
        return result(None, False)
    if first:
        top = ok(ceiling)
        if top is None:
            return result(floor, False)
        if top:
            return result(ceiling, True)
        lo, hi = floor, ceiling  # lo passes, hi fails
    else:
        if lowest is None or lowest >= floor:
            return result(None, True)
        low = ok(lowest)
        if not low:
            return result(None, low is not None)
        lo, hi = lowest, floor
    return _narrow(ok, lo=lo, hi=hi, resolution=max(resolution, step), step=step, result=result)


def _narrow(
    ok: Callable[[int], bool | None],
    *,
    lo: int,
    hi: int,
    resolution: int,
    step: int,
    result: Callable[..., MtuSearch],
) -> MtuSearch:
    """Bisect a bracket where ``lo`` passes and ``hi`` fails, midpoints on the grid."""
    while hi - lo > resolution:
        mid = lo + max(step, (hi - lo) // 2 // step * step)
        if mid >= hi:
            break
        verdict = ok(mid)
        if verdict is None:
            return result(lo, False, hi)
        if verdict:
            lo = mid
        else:
            hi = mid
    return result(lo, True, hi)


@dataclass(frozen=True, slots=True)
class MtuProbe:
    interface: str
    peer: str
    target: str
    method: ProbeMethod
    outcome: ProbeOutcome
    tunnel_mtu: int | None
    """Largest tunnel MTU that passed (already net of overhead for underlay probes)."""
    interface_mtu: int
    probes: int
    """Packets sent, retries of lost sizes included."""
    exact: bool
    at: float
    duration: float
    sizes: int = 0
    """Distinct packet sizes tried (each retried before it counts as lost)."""


@dataclass(frozen=True, slots=True)
class Reachability:
    interface: str
    peer: str
    target: str
    sent: int
    received: int
    rtt_ms: float | None
    """Median round-trip time of the replies."""
    at: float

    @property
    def loss(self) -> float:
        return 1.0 - self.received / self.sent if self.sent else 1.0
