"""wg-tuner's fast exposition writes exactly what prometheus_client's generate_latest
writes, for every family it exports, hostile label values included."""

from __future__ import annotations

from dataclasses import replace

import pytest
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from tests.golden.cases import Sample, snapshot
from tuner.exporters.controller_metrics import ControllerCollector, ControllerState
from tuner.exporters.exposition import Rows, text
from tuner.exporters.metrics import PEER_NAMES, registry_for

HOSTILE = 'ali"ce\\ \nphone ✓'


def hostile_snapshot():  # type: ignore[no-untyped-def]
    snap = snapshot(Sample(t=0.0))
    (iface,) = snap.interfaces
    names = {p.public_key: HOSTILE for p in iface.peers}
    return replace(snap, interfaces=(replace(iface, name='wg"0', peer_names=names),))


@pytest.mark.parametrize("names", PEER_NAMES)
@pytest.mark.parametrize("host_series", [False, True])
def test_fast_text_is_generate_latest_byte_for_byte(names: str, host_series: bool) -> None:
    state = ControllerState(peer_findings=(("handshake-never", "wg0", "k", HOSTILE),))
    registry = registry_for(
        hostile_snapshot(), [ControllerCollector(state)], names, host_series=host_series
    )
    ours = text(registry.collect())
    theirs = generate_latest(registry).decode()
    assert ours == theirs
    assert "wireguard_" in ours and r"ali\"ce\\ \nphone ✓" in ours
    parsed = {
        s.labels.get("friendly_name")
        for f in text_string_to_metric_families(ours)
        for s in f.samples
    }
    assert HOSTILE in parsed


def test_rows_are_a_metric_like_any_other() -> None:
    rows = Rows("wg_tuner_x", "doc", "counter", ["b", "a"])
    rows.add(["2", "1"], 5)
    (sample,) = rows.samples
    assert (sample.name, sample.labels, sample.value) == (
        "wg_tuner_x_total",
        {"b": "2", "a": "1"},
        5,
    )
    assert (
        text([rows]) == "# HELP wg_tuner_x_total doc\n# TYPE wg_tuner_x_total counter\n"
        'wg_tuner_x_total{a="1",b="2"} 5.0\n'
    )


def test_a_family_of_another_shape_goes_through_prometheus_client() -> None:
    created = CounterMetricFamily("wg_tuner_y", "doc", labels=["a"])
    created.add_metric(["1"], 3, created=1700000000.0)
    assert text([created]) == generate_latest(_One(created)).decode()


class _One:
    def __init__(self, metric: CounterMetricFamily) -> None:
        self.metric = metric

    def collect(self):  # type: ignore[no-untyped-def]
        return [self.metric]
