"""Native buckets (``_native``) against the OTel SDK's exponential aggregation as the oracle."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics._internal.exponential_histogram.mapping.exponent_mapping import ExponentMapping
from opentelemetry.sdk.metrics._internal.exponential_histogram.mapping.logarithm_mapping import LogarithmMapping
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View

from trading_telemetry._native import MAX_BUCKETS, MAX_SCALE, NativeBuckets, index_of

positive = st.floats(min_value=1e-300, max_value=1e300, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(value=positive, scale=st.integers(min_value=-4, max_value=MAX_SCALE))
def test_the_index_of_a_value_is_the_sdks(value: float, scale: int) -> None:
    """A value's bucket index at every Prometheus schema is the SDK mapping's, powers of two included."""
    mapping = LogarithmMapping(scale) if scale > 0 else ExponentMapping(scale)
    assert index_of(value, scale) == mapping.map_to_index(value)
    power = 2.0 ** math.floor(math.log2(value))
    assert index_of(power, scale) == mapping.map_to_index(power)


def _sdk_point(values: list[float]) -> object:
    reader = InMemoryMetricReader()
    aggregation = ExponentialBucketHistogramAggregation(max_size=MAX_BUCKETS, max_scale=MAX_SCALE)
    provider = MeterProvider(metric_readers=[reader], views=[View(instrument_name="h", aggregation=aggregation)])
    histogram = provider.get_meter("oracle").create_histogram("h")
    for value in values:
        histogram.record(value)
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    return data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0]


def _nonzero(offset: int, counts: object) -> dict[int, int]:
    return {offset + i: n for i, n in enumerate(counts) if n}  # type: ignore[call-overload]


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.just(0.0), st.floats(min_value=1e-12, max_value=1e12)),
        min_size=1,
        max_size=300,
    )
)
def test_buckets_and_downscaling_are_the_sdks(values: list[float]) -> None:
    """Any sequence of observations, zeros included, gives the SDK's scale, zero count and buckets (the SDK's
    histogram takes no negative value: the next test mirrors them)."""
    native = NativeBuckets()
    for value in values:
        native.add(value)
    point = _sdk_point(values)
    snap = native.snapshot()
    if any(values):  # with zeros only, the scale means nothing (the SDK says 0, a series starts at MAX_SCALE)
        assert snap.scale == point.scale  # type: ignore[attr-defined]
    assert snap.zero_count == point.zero_count  # type: ignore[attr-defined]
    assert _nonzero(snap.positive_offset, snap.positive) == _nonzero(
        point.positive.offset,
        point.positive.bucket_counts,  # type: ignore[attr-defined]
    )
    assert _nonzero(snap.negative_offset, snap.negative) == _nonzero(
        point.negative.offset,
        point.negative.bucket_counts,  # type: ignore[attr-defined]
    )
    assert len(snap.positive) <= MAX_BUCKETS


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(min_value=1e-12, max_value=1e12), min_size=1, max_size=200))
def test_negative_values_mirror_the_positive_buckets(values: list[float]) -> None:
    """Observing -v for every v gives, on the negative side, the buckets and scale that v gives on the positive."""
    plus, minus = NativeBuckets(), NativeBuckets()
    for value in values:
        plus.add(value)
        minus.add(-value)
    p, m = plus.snapshot(), minus.snapshot()
    assert (m.scale, m.negative_offset, m.negative, m.positive) == (p.scale, p.positive_offset, p.positive, ())


@pytest.mark.parametrize("sigma", [0.1, 1.0, 3.0])
def test_a_wide_workload_keeps_the_finest_scale_within_the_bucket_limit(sigma: float) -> None:
    """A lognormal workload keeps at most MAX_BUCKETS buckets, at the finest scale where its range fits."""
    rng = random.Random(7)
    native = NativeBuckets()
    values = [rng.lognormvariate(-6, sigma) for _ in range(20_000)]
    for value in values:
        native.add(value)
    snap = native.snapshot()
    assert len(snap.positive) <= MAX_BUCKETS
    if snap.scale < MAX_SCALE:
        finer = snap.scale + 1
        assert index_of(max(values), finer) - index_of(min(values), finer) + 1 > MAX_BUCKETS
