"""Native buckets on the push side: histograms with native buckets reach the SDK's readers and exporters as
exponential histogram points equal to what their handles hold, cumulative and delta, with exemplars;
OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION decides which histograms are exponential."""

from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import Histogram
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    InMemoryMetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, ExponentialBucketHistogramAggregation

from trading_telemetry import TelemetryConfig, init_metrics_exporter, reset
from trading_telemetry._aggregation import exporter_preferences, native_delta
from trading_telemetry._native import MAX_SCALE, NativeBuckets, NativeSnapshot
from trading_telemetry._sdk import METER_NAME, _otlp_exporter, otlp_temporality
from trading_telemetry.catalog import CATALOG, Kind, MetricSpec, Plane, effective_catalog, extend

SLIP = {"strategy": "OFI", "symbol": "SPY", "direction": "BUY"}
SPY = {"source": "ibkr_rt", "symbol": "SPY"}
ALL_NATIVE = TelemetryConfig(strict=True, metrics_exporters=(), native_histograms="all")
HISTOGRAM_VARIABLE = "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION"

# Observations of the slippage histogram (basis points, any sign), zeros included, from a narrow to a very
# wide range: downscaling happens in some examples and not in others.
observations = st.lists(
    st.one_of(st.just(0.0), st.floats(min_value=-1e9, max_value=1e9, allow_nan=False).filter(lambda v: v != 0)),
    min_size=1,
    max_size=200,
)


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    out: dict[str, list[Any]] = {}
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def _as_snapshot(point: ExponentialHistogramDataPoint) -> NativeSnapshot:
    return NativeSnapshot(
        point.scale,
        point.zero_count,
        point.positive.offset,
        tuple(point.positive.bucket_counts),
        point.negative.offset,
        tuple(point.negative.bucket_counts),
    )


def _buckets(snapshot: NativeSnapshot, scale: int) -> dict[tuple[str, int], int]:
    """The snapshot's counts by (side, index) at a scale at most its own: the zero bucket under ("zero", 0)."""
    change = snapshot.scale - scale
    out = {("zero", 0): snapshot.zero_count}
    for side, offset, counts in (("+", snapshot.positive_offset, snapshot.positive),
                                 ("-", snapshot.negative_offset, snapshot.negative)):  # fmt: skip
        for position, n in enumerate(counts):
            key = (side, (offset + position) >> change)
            out[key] = out.get(key, 0) + n
    return {k: n for k, n in out.items() if n}


@settings(max_examples=60, deadline=None)
@given(values=observations)
def test_a_cumulative_point_is_the_handles_native_snapshot(values: list[float]) -> None:
    """Any observations: the in-memory reader's exponential point has the handle's scale, zero count, offsets and
    buckets, and its count, sum, min and max."""
    reset()
    reader = InMemoryMetricReader()
    metrics = init_metrics_exporter("order_plane", config=ALL_NATIVE, metric_readers=[reader])
    handle = metrics.bind("slippage_bps", **SLIP)
    for value in values:
        handle.observe(value)
    counts, total, low, high, native = handle.snapshot_native()  # type: ignore[attr-defined]
    (point,) = _points(reader)["orders_slippage_bps"]
    assert isinstance(point, ExponentialHistogramDataPoint)
    assert _as_snapshot(point) == native
    assert (point.count, point.sum, point.min, point.max) == (sum(counts), total, low, high)
    assert (point.count, point.min, point.max) == (len(values), min(values), max(values))
    assert dict(point.attributes or {}) == {**SLIP, "service": "order_plane"}


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(observations, min_size=2, max_size=4))
def test_delta_points_count_each_collections_observations_at_the_current_scale(batches: list[list[float]]) -> None:
    """Delta temporality: each collection's point holds exactly the observations made since the previous one, at the
    series' current scale (earlier buckets brought down to it), and its count and sum."""
    reset()
    reader = InMemoryMetricReader(preferred_temporality=otlp_temporality("delta"))
    metrics = init_metrics_exporter("order_plane", config=ALL_NATIVE, metric_readers=[reader])
    handle = metrics.bind("slippage_bps", **SLIP)
    for batch in batches:
        for value in batch:
            handle.observe(value)
        (point,) = _points(reader)["orders_slippage_bps"]
        native = handle.snapshot_native()[4]  # type: ignore[attr-defined]
        alone = NativeBuckets()
        for value in batch:
            alone.add(value)
        assert point.scale == native.scale
        assert _buckets(_as_snapshot(point), native.scale) == _buckets(alone.snapshot(), native.scale)
        assert point.count == len(batch)
        assert abs(point.sum - sum(batch)) <= 1e-6 * max(1.0, sum(abs(v) for v in batch))
    assert _points(reader).get("orders_slippage_bps", []) == [], "nothing new: no point"


@settings(max_examples=200, deadline=None)
@given(before=observations, after=observations)
def test_native_delta_is_the_difference_of_bucket_counts(before: list[float], after: list[float]) -> None:
    """native_delta of two snapshots of one series is, bucket by bucket at the later scale, what the later counted
    beyond the earlier, with both sides trimmed to their counting buckets."""
    buckets = NativeBuckets()
    for value in before:
        buckets.add(value)
    earlier = buckets.snapshot()
    for value in after:
        buckets.add(value)
    later = buckets.snapshot()
    delta = native_delta(later, earlier)
    assert delta.scale == later.scale <= earlier.scale
    expected = _buckets(later, later.scale)
    for key, n in _buckets(earlier, later.scale).items():
        expected[key] -= n
    assert _buckets(delta, later.scale) == {k: n for k, n in expected.items() if n}
    for counts in (delta.positive, delta.negative):
        assert not counts or (counts[0] and counts[-1])


def test_observations_in_a_span_carry_exemplars_on_exponential_points() -> None:
    """With the always_on exemplar filter, an observation's value is offered to the exponential point's exemplars."""
    reader = InMemoryMetricReader()
    cfg = TelemetryConfig(strict=True, metrics_exporters=(), native_histograms="all", exemplar_filter="always_on")
    metrics = init_metrics_exporter("data_plane", config=cfg, metric_readers=[reader])
    metrics.observe("data_freshness", 0.0421, **SPY)
    (point,) = _points(reader)["data_freshness"]
    assert isinstance(point, ExponentialHistogramDataPoint)
    assert [e.value for e in point.exemplars] == [0.0421]


def test_a_label_set_without_a_handle_gets_the_sdks_exponential_aggregation() -> None:
    """A label set recorded on the raw instrument (no handle) is aggregated by the SDK's exponential aggregation
    with the same bounds (scale 8 at most, 160 buckets a side): the buckets native ones would have."""
    reader = InMemoryMetricReader()
    metrics = init_metrics_exporter("data_plane", config=ALL_NATIVE, metric_readers=[reader])
    raw = metrics.sdk.meter_provider.get_meter(METER_NAME).create_histogram("data_freshness", unit="s")
    raw.record(0.3, {**SPY, "service": "data_plane"})
    raw.record(0.5, {**SPY, "service": "data_plane"})
    (point,) = _points(reader)["data_freshness"]
    reference = NativeBuckets()
    reference.add(0.3)
    reference.add(0.5)
    assert isinstance(point, ExponentialHistogramDataPoint)
    assert (point.count, point.scale) == (2, reference.snapshot().scale)
    assert point.scale < MAX_SCALE, "0.3 and 0.5 are 189 buckets apart at scale 8"
    assert _buckets(_as_snapshot(point), point.scale) == _buckets(reference.snapshot(), point.scale)


def _histogram_types(cfg: TelemetryConfig, native_key: str) -> dict[str, type]:
    """The point type of every histogram of the three planes, one observation each, ``native_key`` declared
    native in the desk's catalog (a copy of a built-in histogram under another name)."""
    (template,) = [s for s in CATALOG if s.key == "qp_solve_time"]
    extend([MetricSpec(Plane.STRATEGY, native_key, f"strategy_{native_key}", Kind.HISTOGRAM, "s", "A native one",
                       buckets=template.buckets, min_value=0.0, native=True)])  # fmt: skip
    found: dict[str, type] = {}
    for plane in Plane:
        reader = InMemoryMetricReader()
        metrics = init_metrics_exporter(plane, config=cfg, metric_readers=[reader])
        for spec in [s for s in effective_catalog() if s.plane is plane and s.kind is Kind.HISTOGRAM]:
            labels = {name: _label_value(name) for name in spec.labels}
            metrics.observe(spec.key, 0.5, **labels)
        found |= {name: type(p) for name, ps in _points(reader).items() for p in ps if "Histogram" in type(p).__name__}
    return found


def _label_value(name: str) -> str:
    return {"direction": "BUY", "order_type": "LIMIT", "strategy": "OFI", "event_type": "tick"}.get(name, "SPY")


def test_explicit_leaves_only_the_catalogs_native_histograms_exponential() -> None:
    """explicit_bucket_histogram (the default): the histograms the catalog declares native (the desk's one
    included) are exponential, every other histogram keeps its explicit buckets."""
    cfg = TelemetryConfig.from_env({"OTEL_METRICS_EXPORTER": "none", HISTOGRAM_VARIABLE: "explicit_bucket_histogram"})
    types = _histogram_types(cfg, "native_solve_time")
    assert types.pop("strategy_native_solve_time") is ExponentialHistogramDataPoint
    expected = {s.name: ExponentialHistogramDataPoint if s.native else HistogramDataPoint
                for s in CATALOG if s.kind is Kind.HISTOGRAM}  # fmt: skip
    assert types == expected
    assert HistogramDataPoint in types.values()


def test_base2_makes_every_histogram_exponential() -> None:
    """base2_exponential_bucket_histogram: every histogram of every plane is exponential."""
    cfg = TelemetryConfig.from_env(
        {"OTEL_METRICS_EXPORTER": "none", HISTOGRAM_VARIABLE: "BASE2_exponential_bucket_histogram"}
    )
    types = _histogram_types(cfg, "native_solve_time")
    assert len(types) == len([s for s in CATALOG if s.kind is Kind.HISTOGRAM]) + 1
    assert set(types.values()) == {ExponentialHistogramDataPoint}


def test_the_otlp_exporter_aggregates_other_histograms_as_the_setting_says(monkeypatch: Any) -> None:
    """The OTLP exporter's own aggregation of histograms outside the catalog follows the configuration, not the
    process environment the SDK would read."""
    monkeypatch.setenv(HISTOGRAM_VARIABLE, "base2_exponential_bucket_histogram")
    for name, expected in (("explicit_bucket_histogram", ExplicitBucketHistogramAggregation),
                           ("base2_exponential_bucket_histogram", ExponentialBucketHistogramAggregation)):  # fmt: skip
        exporter = _otlp_exporter(
            TelemetryConfig(metrics_exporters=("otlp",), otlp_histogram_aggregation=name), "metrics"
        )
        try:
            assert type(exporter_preferences(exporter)["preferred_aggregation"][Histogram]) is expected
        finally:
            exporter.shutdown()


def test_the_console_exporter_prints_exponential_points() -> None:
    """The console exporter writes a native histogram's point as JSON with its scale, zero count and buckets."""
    out = io.StringIO()
    reader = PeriodicExportingMetricReader(ConsoleMetricExporter(out=out), export_interval_millis=3_600_000)
    metrics = init_metrics_exporter("order_plane", config=ALL_NATIVE, metric_readers=[reader])
    handle = metrics.bind("slippage_bps", **SLIP)
    for value in (-3.0, 0.0, 2.0, 2.0):
        handle.observe(value)
    reader.force_flush()
    native = handle.snapshot_native()[4]  # type: ignore[attr-defined]
    printed = json.loads(out.getvalue())["resource_metrics"]
    points = [p for rm in printed for sm in rm["scope_metrics"] for m in sm["metrics"]
              if m["name"] == "orders_slippage_bps" for p in m["data"]["data_points"]]  # fmt: skip
    assert [(p["scale"], p["zero_count"], p["count"], p["positive"], p["negative"]) for p in points] == [
        (native.scale, 1, 4, {"offset": native.positive_offset, "bucket_counts": list(native.positive)},
         {"offset": native.negative_offset, "bucket_counts": list(native.negative)})
    ]  # fmt: skip
