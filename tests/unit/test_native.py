"""Native buckets (``_native``) against the OTel SDK's exponential aggregation as the oracle."""

from __future__ import annotations

import math
import random
from array import array

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


@st.composite
def _at_a_boundary(draw: st.DrawFn) -> float:
    """A bucket boundary ``base**i`` at some scale (a power of two at every scale when ``i`` is a multiple of
    ``2**scale``), or one of its two float neighbours on either side."""
    scale = draw(st.integers(min_value=0, max_value=MAX_SCALE))
    value = 2.0 ** (draw(st.integers(min_value=-40 << scale, max_value=40 << scale)) / (1 << scale))
    step = draw(st.integers(min_value=-2, max_value=2))
    for _ in range(abs(step)):
        value = math.nextafter(value, math.inf if step > 0 else 0.0)
    return value


@settings(max_examples=150, deadline=None)
@given(values=st.lists(_at_a_boundary(), min_size=1, max_size=100))
def test_values_at_bucket_boundaries_land_in_the_sdks_buckets(values: list[float]) -> None:
    """Powers of two, bucket boundaries and their float neighbours, repeated, get the SDK's scale and buckets (the
    fast path's logarithm is replaced by the exact index near a boundary)."""
    native = NativeBuckets()
    for value in values * 2:  # the second time through, each value's bucket is in the window: the fast path
        native.add(value)
    point = _sdk_point(values * 2)
    snap = native.snapshot()
    assert snap.scale == point.scale  # type: ignore[attr-defined]
    assert _nonzero(snap.positive_offset, snap.positive) == _nonzero(
        point.positive.offset,
        point.positive.bucket_counts,  # type: ignore[attr-defined]
    )


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(positive, _at_a_boundary()))
def test_a_value_counted_again_lands_in_the_bucket_index_of_gives(value: float) -> None:
    """A value added three times (the first opens its bucket, the others take the fast path) is counted three
    times in the bucket index_of gives at the finest scale."""
    native = NativeBuckets()
    for _ in range(3):
        native.add(value)
    snap = native.snapshot()
    assert (snap.scale, snap.positive_offset, snap.positive) == (MAX_SCALE, index_of(value, MAX_SCALE), (3,))


def test_a_count_past_four_bytes_widens_its_side() -> None:
    """A bucket counting past 2**32 - 1 widens its side's counts to 8 bytes instead of failing."""
    native = NativeBuckets()
    native.add(0.003)
    native._pos[0] = 2**32 - 1  # as after 4 billion observations
    native.add(0.003)
    assert native.snapshot().positive == (2**32,)
    assert native._pos.itemsize == 8


def test_halving_the_resolution_keeps_counts_past_four_bytes() -> None:
    """Buckets merged by a downscale keep their summed counts when the sums pass 2**32 - 1."""
    native = NativeBuckets()
    for value in (0.003, 0.004):
        native.add(value)
    full = 2**32 - 1
    native._pos = array("I", [full] * len(native._pos))  # as after 4 billion observations in each
    before = sum(native.snapshot().positive)
    native.add(1e6)  # a range that needs a coarser scale: neighbouring buckets merge
    after = native.snapshot()
    assert after.scale < MAX_SCALE
    assert sum(after.positive) == before + 1
    assert max(after.positive) > full
