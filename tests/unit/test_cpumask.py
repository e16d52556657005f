from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tuner.model.cpumask import (
    format_cpu_list,
    format_hex_mask,
    normalise_list,
    normalise_mask,
    parse_cpu_list,
    parse_hex_mask,
)


def test_both_spellings_normalise_equal() -> None:
    assert normalise_mask("00000000,0000000f") == normalise_list("0-3") == "0-3"
    assert normalise_list("3,1,0,2") == "0-3"
    assert normalise_mask("0") == ""
    assert normalise_mask("101") == "0,8"


@given(st.frozensets(st.integers(min_value=0, max_value=255)))
def test_round_trips(cpus: frozenset[int]) -> None:
    assert parse_cpu_list(format_cpu_list(cpus)) == cpus
    assert parse_hex_mask(format_hex_mask(cpus)) == cpus
