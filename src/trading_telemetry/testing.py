"""Test your own instrumentation: the ``captelemetry`` pytest fixture.

Installed with the package as a pytest plugin. The fixture gives every plane an
in-memory metric reader and span exporter, in strict mode (bad input raises), and resets
the package before and after the test, keeping the desk's catalog (what ``extend()`` and
catalog files added, typically when the desk's modules were imported)::

    def test_fill_is_counted(captelemetry):
        execute(order)  # your code, using init_metrics_exporter / get_metrics / timed / traced
        captelemetry.assert_counter_rose("orders_filled", by=1, strategy="OFI", symbol="SPY",
                                         direction="BUY", status="FILLED")
        captelemetry.assert_observed("total_fill_latency", le=0.05, strategy="OFI",
                                     symbol="SPY", order_type="LIMIT")

Counts are measured from the last :meth:`TelemetryCapture.mark` (the start of the test
if none), so a test asserts on what it caused.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import (
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from trading_telemetry import _state
from trading_telemetry._recorder import PlaneMetrics
from trading_telemetry.catalog import SERVICE_LABEL, Kind, MetricSpec, Plane, effective_catalog, lookup
from trading_telemetry.config import TelemetryConfig

__all__ = ["HistogramSnapshot", "TelemetryCapture", "captelemetry"]


@dataclass(frozen=True)
class HistogramSnapshot:
    """One histogram series: count, sum, and observations per bucket upper bound
    (``math.inf`` for the last), not cumulative."""

    count: int = 0
    sum: float = 0.0
    buckets: dict[float, int] = field(default_factory=dict)
    exemplar_trace_ids: tuple[int, ...] = ()


class TelemetryCapture:
    """In-memory telemetry of all three planes, and assertions on it."""

    def __init__(self, config: TelemetryConfig | None = None) -> None:
        # The desk's catalog file (TRADING_TELEMETRY_CATALOG) applies in tests too.
        catalog = TelemetryConfig.from_env({k: v for k, v in os.environ.items() if k == "TRADING_TELEMETRY_CATALOG"})
        self.config = config or TelemetryConfig(
            strict=True, metrics_exporters=(), traces_exporters=(), catalog_path=catalog.catalog_path
        )
        self.spans_exporter = InMemorySpanExporter()
        self._readers: dict[Plane, InMemoryMetricReader] = {}
        self._mark: dict[tuple[str, frozenset[tuple[str, str]]], Any] = {}

    def plane(self, plane: str | Plane) -> PlaneMetrics:
        """The plane's metrics object, capturing into memory (created on first use)."""
        p = Plane.parse(plane)
        if p not in self._readers:
            self._readers[p] = InMemoryMetricReader()
            _state.init_metrics_exporter(
                p, config=self.config, metric_readers=[self._readers[p]], span_exporters=[self.spans_exporter]
            )
        return _state.get_metrics(p)

    def start(self) -> None:
        """Initialise every plane, so code under test finds them already set up."""
        for p in Plane:
            self.plane(p)

    # -- reading -----------------------------------------------------------------

    def _collect(self, plane: Plane) -> dict[str, dict[frozenset[tuple[str, str]], Any]]:
        """One collection of the plane: instrument name -> label set -> data point."""
        self.plane(plane)
        data = self._readers[plane].get_metrics_data()
        out: dict[str, dict[frozenset[tuple[str, str]], Any]] = {}
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    points = out.setdefault(metric.name, {})
                    for point in metric.data.data_points:
                        attrs = {k: str(v) for k, v in (point.attributes or {}).items() if k != SERVICE_LABEL}
                        points[frozenset(attrs.items())] = point
        return out

    def _points(self, s: MetricSpec) -> dict[frozenset[tuple[str, str]], Any]:
        return self._collect(s.plane).get(s.name, {})

    def _spec(self, key: str, kind: Kind) -> MetricSpec:
        s = lookup(key)
        if s is None or s.kind is not kind:
            keys = sorted(c.key for c in effective_catalog() if c.kind is kind)
            raise AssertionError(f"{key!r} is not a catalog {kind.value}; {kind.value}s: {', '.join(keys)}")
        return s

    def counter(self, key: str, **labels: str) -> float:
        """The counter's current total for exactly these labels (0 if never recorded)."""
        point = self._points(self._spec(key, Kind.COUNTER)).get(frozenset(labels.items()))
        return float(point.value) if isinstance(point, NumberDataPoint) else 0.0

    def total(self, key: str, **labels: str) -> float:
        """The sum of the counter's series whose labels include these (all of them if none given)."""
        want = set(labels.items())
        points = self._points(self._spec(key, Kind.COUNTER))
        return math.fsum(float(p.value) for attrs, p in points.items() if want <= attrs)

    def observations(self, key: str, **labels: str) -> int:
        """The number of observations of the histogram's series whose labels include these."""
        want = set(labels.items())
        points = self._points(self._spec(key, Kind.HISTOGRAM))
        return sum(int(p.count) for attrs, p in points.items() if want <= attrs)

    def gauge(self, key: str, **labels: str) -> float | None:
        """The gauge's last value for exactly these labels (None if never set)."""
        point = self._points(self._spec(key, Kind.GAUGE)).get(frozenset(labels.items()))
        return float(point.value) if isinstance(point, NumberDataPoint) else None

    def histogram(self, key: str, **labels: str) -> HistogramSnapshot:
        """The histogram series for exactly these labels (empty if never recorded)."""
        s = self._spec(key, Kind.HISTOGRAM)
        point = self._points(s).get(frozenset(labels.items()))
        if isinstance(point, HistogramDataPoint):
            bounds, counts = [*point.explicit_bounds, math.inf], point.bucket_counts
        elif isinstance(point, ExponentialHistogramDataPoint):
            # Pushed as native buckets only; the classic ones are the series' handle's.
            bounds, counts = [*(s.buckets or ()), math.inf], self._classic_counts(s, labels)
        else:
            return HistogramSnapshot()
        return HistogramSnapshot(
            count=point.count,
            sum=point.sum,
            buckets=dict(zip(bounds, counts, strict=True)),
            exemplar_trace_ids=tuple(e.trace_id for e in point.exemplars if e.trace_id),
        )

    def _classic_counts(self, s: MetricSpec, labels: dict[str, str]) -> list[int]:
        key = tuple(labels.get(name, "") for name in s.labels)
        handle: Any = self.plane(s.plane).store.series(s.key).get(key)
        return list(handle.snapshot()[0]) if handle is not None else [0] * (len(s.buckets or ()) + 1)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """Finished spans of every plane, optionally only those called ``name``."""
        return [s for s in self.spans_exporter.get_finished_spans() if name is None or s.name == name]

    # -- asserting -----------------------------------------------------------------

    def mark(self) -> None:
        """Count from now on: later assertions see only what happens after this."""
        self._mark = {}
        for plane in list(self._readers):
            collected = self._collect(plane)
            for s in effective_catalog():
                if s.plane is plane and s.kind is not Kind.GAUGE:
                    for attrs, point in collected.get(s.name, {}).items():
                        if isinstance(point, ExponentialHistogramDataPoint):
                            point = self.histogram(s.key, **dict(attrs))
                        self._mark[(s.key, attrs)] = point

    def assert_counter_rose(self, key: str, by: float, **labels: str) -> None:
        """The counter rose by exactly ``by`` for these labels since the mark."""
        now = self.counter(key, **labels)
        before = self._mark.get((key, frozenset(labels.items())))
        rose = now - (float(before.value) if before is not None else 0.0)
        assert rose == pytest.approx(by), f"{key}{labels} rose by {rose}, expected {by}"

    def assert_observed(self, key: str, *, le: float, count: int = 1, **labels: str) -> None:
        """Exactly ``count`` observations landed in the bucket with upper bound ``le``
        (``math.inf`` for the last) for these labels since the mark."""
        snap = self.histogram(key, **labels)
        if le not in snap.buckets and snap.buckets:
            raise AssertionError(f"{key} has no bucket le={le}; bounds: {sorted(snap.buckets)}")
        before = self._mark.get((key, frozenset(labels.items())))
        earlier = 0
        if isinstance(before, HistogramSnapshot):
            earlier = before.buckets.get(le, 0)
        elif before is not None:
            bounds = [*before.explicit_bounds, math.inf]
            earlier = dict(zip(bounds, before.bucket_counts, strict=True)).get(le, 0)
        got = snap.buckets.get(le, 0) - earlier
        assert got == count, f"{key}{labels}: {got} observations in le={le}, expected {count}; buckets {snap.buckets}"


@contextlib.contextmanager
def capturing() -> Iterator[TelemetryCapture]:
    """What the fixture does: every plane capturing into memory, strict; the package
    reset before and after, the desk's catalog kept."""
    _state.reset_keeping_the_desk_catalog()
    capture = TelemetryCapture()
    capture.start()
    try:
        yield capture
    finally:
        _state.reset_keeping_the_desk_catalog()


@pytest.fixture
def captelemetry() -> Iterator[TelemetryCapture]:
    """Every plane capturing into memory, strict; the package reset around the test,
    the desk's catalog kept."""
    with capturing() as capture:
        yield capture
