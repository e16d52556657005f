"""Prometheus text exposition (format 0.0.4) of wg-tuner's own metric families, fast.

prometheus_client's ``generate_latest`` validates and escapes every label name of every
sample; with 10,000 peers that was most of ``wg-tuner metrics`` and of each daemon
render. wg-tuner's metric and label names are fixed identifiers, so only label values
are escaped, and only when they hold a character that needs it. The output is
``generate_latest``'s byte for byte (tests/unit/test_exposition.py holds them equal);
a family of a type wg-tuner does not write goes through ``generate_latest`` itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString as _go_float

_go_string: Callable[[float], str] = _go_float  # typed: prometheus_client leaves it untyped

_PLAIN = {"counter", "gauge"}
_OM_SUFFIXES = ("_created", "_gsum", "_gcount")


def _escape(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


class _One(Collector):
    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self) -> Iterable[Metric]:
        return [self.metric]


class Rows(Metric):
    """A counter or gauge family given as rows of label values and a value, for the
    per-peer series: written straight to text with one format string, without a
    Sample and a labels dict per row. ``samples`` still works (built on first use), so
    a Rows is a Metric like any other to prometheus_client and to tests."""

    def __init__(self, name: str, documentation: str, typ: str, labels: Sequence[str]):
        super().__init__(name, documentation, typ)
        self.labels = tuple(labels)
        self.rows: list[tuple[Sequence[str], float]] = []

    def add(self, values: Sequence[str], value: float) -> None:
        self.rows.append((values, value))

    @property
    def samples(self) -> list[Sample]:
        name = f"{self.name}_total" if self.type == "counter" else self.name
        return [Sample(name, dict(zip(self.labels, v, strict=True)), x) for v, x in self.rows]

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        """Metric.__init__ sets an empty list; rows are the storage here."""

    def write(self, out: list[str]) -> None:
        name = f"{self.name}_total" if self.type == "counter" else self.name
        order = sorted(range(len(self.labels)), key=lambda i: self.labels[i])
        pairs = ",".join(f'{self.labels[i]}="%s"' for i in order)
        line = f"{name}{{{pairs}}} %s\n" if pairs else f"{name} %s\n"
        out.extend(
            line % (*[_escape(values[i]) for i in order], _go_string(value))
            for values, value in self.rows
        )


def _family(metric: Metric, out: list[str]) -> None:
    name = f"{metric.name}_total" if metric.type == "counter" else metric.name
    doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
    out.append(f"# HELP {name} {doc}\n# TYPE {name} {metric.type}\n")
    if isinstance(metric, Rows):
        metric.write(out)
        return
    order: dict[tuple[str, ...], tuple[str, ...]] = {}
    for sample in metric.samples:
        labels = sample.labels
        value = _go_string(sample.value)
        if not labels:
            out.append(f"{sample.name} {value}\n")
            continue
        keys = tuple(labels)
        ordered = order.get(keys)
        if ordered is None:
            ordered = order[keys] = tuple(sorted(keys))
        pairs = ",".join([f'{k}="{_escape(labels[k])}"' for k in ordered])
        out.append(f"{sample.name}{{{pairs}}} {value}\n")


def _plain(metric: Metric) -> bool:
    """A counter or gauge with no timestamps and no OpenMetrics-only samples."""
    if isinstance(metric, Rows):
        return metric.type in _PLAIN
    return metric.type in _PLAIN and all(
        s.timestamp is None and not s.name.endswith(_OM_SUFFIXES) for s in metric.samples
    )


def chunks(metrics: Iterable[Metric]) -> Iterator[str]:
    """The exposition one family at a time (a writer need not hold all of it)."""
    for metric in metrics:
        if _plain(metric):
            out: list[str] = []
            _family(metric, out)
            yield "".join(out)
        else:
            yield generate_latest(_One(metric)).decode("utf-8")


def text(metrics: Iterable[Metric]) -> str:
    return "".join(chunks(metrics))
