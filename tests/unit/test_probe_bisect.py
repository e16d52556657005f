from __future__ import annotations

import random

import pytest

from tuner.model.probe import bisect_mtu


def path(limit: int, loss: float = 0.0, seed: int = 1) -> tuple[list[int], object]:
    rng = random.Random(seed)
    sent: list[int] = []

    def passes(size: int) -> bool:
        sent.append(size)
        return size <= limit and rng.random() >= loss

    return sent, passes


@pytest.mark.parametrize("limit", [1280, 1281, 1300, 1339, 1340, 1341, 1400, 1419])
def test_finds_limit_within_4_bytes_never_above(limit: int) -> None:
    _, passes = path(limit)
    result = bisect_mtu(passes, 1280, 1420)  # type: ignore[arg-type]
    assert result.mtu is not None
    assert limit - 4 <= result.mtu <= limit
    assert result.exact
    assert result.probes <= 10 + 2 * 8  # failures are retried


def test_clean_path_two_probes() -> None:
    sent, passes = path(1500)
    result = bisect_mtu(passes, 1280, 1420)  # type: ignore[arg-type]
    assert (result.mtu, result.probes) == (1420, 2)
    assert sent == [1280, 1420]


def test_typical_search_within_10_sends_of_passing_sizes() -> None:
    sent, passes = path(1340)
    bisect_mtu(passes, 1280, 1420, attempts=1)  # type: ignore[arg-type]
    assert len(sent) <= 10


def test_dead_path_is_none() -> None:
    sent, passes = path(0)
    result = bisect_mtu(passes, 1280, 1420)  # type: ignore[arg-type]
    assert result.mtu is None
    assert sent == [1280] * 3


@pytest.mark.parametrize("seed", range(20))
def test_random_loss_does_not_shrink_the_answer(seed: int) -> None:
    _, passes = path(1340, loss=0.05, seed=seed)
    result = bisect_mtu(passes, 1280, 1420)  # type: ignore[arg-type]
    assert result.mtu is not None and 1336 <= result.mtu <= 1340


def test_budget_stops_with_best_known_lower_bound() -> None:
    _, passes = path(1340)
    result = bisect_mtu(passes, 1280, 1420, budget=5)  # type: ignore[arg-type]
    assert not result.exact
    assert result.mtu is not None and result.mtu <= 1340
    assert result.probes <= 5


@pytest.mark.parametrize("limit", [1240, 1000, 600])
def test_paths_below_the_floor_are_still_measured(limit: int) -> None:
    _, passes = path(limit)
    result = bisect_mtu(passes, 1280, 1420, lowest=576)  # type: ignore[arg-type]
    assert result.mtu is not None and limit - 4 <= result.mtu <= limit


def test_running_out_of_time_is_never_a_failure() -> None:
    clock = iter(range(100))
    _, passes = path(1340)
    result = bisect_mtu(
        passes,  # type: ignore[arg-type]
        1280,
        1420,
        out_of_time=lambda: next(clock) > 6,
    )
    assert not result.exact
    assert result.mtu is not None and result.mtu <= 1340
