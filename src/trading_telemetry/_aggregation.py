"""View aggregations that read the SDK-side state from our handles; and the one module
that uses the OpenTelemetry SDK's private API.

Every private symbol the package uses is imported or reached here, each with the reason
no public API serves; ``tests/unit/test_sdk_private.py`` names any that an SDK version
lacks. The SDK offers no asynchronous histogram and no way for a view's aggregation to
read state kept outside the SDK, so the aggregations below subclass the SDK's own
(``_SumAggregation``, ``_LastValueAggregation``, ``_ExplicitBucketHistogramAggregation``,
``_ExponentialBucketHistogramAggregation``, their base ``_Aggregation``, and the view hook
``_create_aggregation``, which its ``isinstance`` checks and collection rely on).

Our bound handles keep each series' state themselves (a counter's total, a gauge's last
value, a histogram's bucket counts, sum, min and max, and its native buckets for metrics
that have them). These aggregations, set on the metrics' views, hand that state to the SDK
at collection time, so readers and exporters (OTLP, console, in-memory) see ordinary sum,
gauge, explicit-bucket and (native buckets) exponential histogram points. A
collection is then what the raw SDK's is, a point built per series, with no callback
and no Observation per series; an instrument measurement happens once per series, to
make the SDK create the series' aggregation (:func:`register_series`).

In a forked child, the periodic readers inherited from the parent are disowned through
their private ``_collect`` and ``_shutdown_event`` (:func:`disown_reader`): the SDK's own
fork hook starts their threads again, and no public call stops one without exporting; and
the class-wide lock of MeterProvider's construction is renewed (:func:`renew_provider_lock`).
Under a delta-temporality reader, SDK 1.45.2's reset of a synchronous instrument's series
at each collection is turned off for ours (:func:`keep_across_delta`); a retired series'
aggregations are released instead (:func:`forget_series`).

The SDK still calls ``aggregate`` for measurements recorded on the instrument itself:
the handles do so only for observations made inside a span, to offer them to the
exemplar reservoir (:func:`offer_exemplar`); a label set with no live handle at that
moment (an observation that raced its series' retirement) gets an aggregation of ours that
reads nothing until a handle of those labels exists. A label set recorded on the raw
instrument (no handle) gets the SDK's own aggregation.
"""

from __future__ import annotations

import inspect
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider

# Private: the SDK's aggregation classes, subclassed so that the SDK's collection (which
# dispatches on them with isinstance) builds ordinary Sum, Gauge and Histogram points.
from opentelemetry.sdk.metrics._internal.aggregation import (
    _Aggregation,
    _ExplicitBucketHistogramAggregation,
    _ExponentialBucketHistogramAggregation,
    _LastValueAggregation,
    _SumAggregation,
)

# Private: the SDK's measurement, the only way to hand a label set to every reader's
# storage without recording a value (the SDK's instruments refuse NaN and negatives).
from opentelemetry.sdk.metrics._internal.measurement import Measurement
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Buckets,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    MetricExporter,
    NumberDataPoint,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    LastValueAggregation,
    SumAggregation,
)
from opentelemetry.util.types import Attributes

from trading_telemetry._native import MAX_BUCKETS, MAX_SCALE, NativeSnapshot

if TYPE_CHECKING:
    from trading_telemetry._series import SeriesReader


class HistogramCell(Protocol):
    """What the aggregation reads from a handle."""

    def snapshot(self) -> tuple[list[int], float, float, float]:
        """(bucket counts, sum, min, max), consistent with each other."""
        ...


Find = Callable[[], Any]
"""The handle a label set has in the store now (None: none)."""


class _Dormant:
    """The cell of a label set of ours that has no live handle when the SDK makes its
    aggregation (an exemplar offered by an observation that raced its series' retirement):
    the aggregation reads nothing until a handle of those labels exists, then follows it."""

    retired = True


_DORMANT = _Dormant()
_offering = threading.local()
"""``offering.on``: this thread is offering a handle's exemplar to the SDK (:func:`offer_exemplar`)."""


def _dormant() -> Any:
    """The cell of a label set that has no live handle: dormant while a handle offers it an
    exemplar (its series retired meanwhile); else None (the SDK's type probe, or a label set
    recorded on the raw instrument, which gets the SDK's own aggregation)."""
    return _DORMANT if getattr(_offering, "on", False) else None


def offer_exemplar(instrument: Any, value: float, attributes: Mapping[str, str]) -> None:
    """A handle's observation offered to the SDK's exemplar reservoirs, through the
    instrument. Should the series be retired meanwhile, the aggregation the SDK makes for
    the label set is a dormant one of ours, which ignores the value, rather than the SDK's
    own, which would count it and then every later registration's NaN."""
    _offering.on = True
    try:
        instrument.record(value, attributes)
    finally:
        _offering.on = False


class _Follows:
    """An aggregation that reads a handle, and follows its label set when ``retire``
    removes it: nothing is collected while the label set has no live handle, and a new
    handle of the same labels, a new series from zero, is read from its start. (``retire``
    also has the SDK drop the aggregation, :func:`forget_series`; this covers a collection
    that still holds one, and an aggregation made while the label set had no handle.)"""

    _cell: Any
    _find: Find

    def _live(self, collection_start_nano: int) -> Any:
        """The handle to read, or None while the label set is retired."""
        cell = self._cell
        if not cell.retired:
            return cell
        cell = self._find()
        if cell is None or cell.retired:
            return None
        self._cell = cell
        self._restart(collection_start_nano)
        return cell

    def _restart(self, now: int) -> None:
        """A new series from zero since ``now``: the delta baseline and start time reset."""
        raise NotImplementedError


class _CellHistogramAggregation(_Follows, _Aggregation[HistogramDataPoint]):
    def __init__(
        self,
        cell: HistogramCell,
        attributes: Attributes,
        start_time_unix_nano: int,
        reservoir_builder: Any,
        boundaries: Sequence[float],
        find: Find,
    ) -> None:
        super().__init__(attributes, reservoir_builder=partial(reservoir_builder, boundaries=boundaries))
        self._cell = cell
        self._find = find
        self._boundaries = tuple(boundaries)
        self._start_time_unix_nano = start_time_unix_nano
        self._previous_counts = [0] * (len(self._boundaries) + 1)
        self._previous_sum = 0.0
        self._previous_collection = start_time_unix_nano

    def aggregate(self, measurement: Measurement, should_sample_exemplar: bool = True) -> None:
        # The handle has counted the value already; the SDK path only carries exemplars.
        if not math.isnan(measurement.value):
            self._sample_exemplar(measurement, should_sample_exemplar)

    def _restart(self, now: int) -> None:
        with self._lock:
            self._previous_counts = [0] * (len(self._boundaries) + 1)
            self._previous_sum = 0.0
            self._previous_collection = self._start_time_unix_nano = now

    def collect(
        self, collection_aggregation_temporality: AggregationTemporality, collection_start_nano: int
    ) -> HistogramDataPoint | None:
        cell = self._live(collection_start_nano)
        if cell is None:
            return None
        counts, total, low, high = cell.snapshot()
        count = sum(counts)
        if collection_aggregation_temporality is AggregationTemporality.DELTA:
            with self._lock:
                delta = [now - before for now, before in zip(counts, self._previous_counts, strict=True)]
                delta_sum = total - self._previous_sum
                start = self._previous_collection
                self._previous_counts, self._previous_sum = counts, total
                self._previous_collection = collection_start_nano
            if not any(delta):
                return None
            counts, total, count = delta, delta_sum, sum(delta)
        elif count == 0:
            return None
        else:
            start = self._start_time_unix_nano
        return HistogramDataPoint(
            attributes=self._attributes,
            exemplars=self._collect_exemplars(),
            start_time_unix_nano=start,
            time_unix_nano=collection_start_nano,
            count=count,
            sum=total,
            bucket_counts=tuple(counts),
            explicit_bounds=self._boundaries,
            min=low,
            max=high,
        )


class CellHistogramAggregation(ExplicitBucketHistogramAggregation):
    """The view aggregation: label sets with a handle read the handle; others fall back
    to the SDK's explicit-bucket aggregation with the same boundaries."""

    def __init__(self, boundaries: Sequence[float], store: SeriesReader, key: str, labels: Sequence[str]) -> None:
        super().__init__(boundaries=boundaries)
        self._store = store
        self._key = key
        self._labels = tuple(labels)

    def _create_aggregation(
        self,
        instrument: Any,
        attributes: Attributes,
        reservoir_factory: Callable[[type[_Aggregation[Any]]], Any],
        start_time_unix_nano: int,
    ) -> _Aggregation[Any]:
        cell = _cell(self._store, self._key, self._labels, attributes) or _dormant()
        if cell is None:
            return super()._create_aggregation(instrument, attributes, reservoir_factory, start_time_unix_nano)
        keep_across_delta(instrument)
        return _CellHistogramAggregation(
            cell,
            attributes,
            start_time_unix_nano,
            reservoir_factory(_ExplicitBucketHistogramAggregation),
            self._boundaries or (),
            partial(_cell, self._store, self._key, self._labels, attributes),
        )


class ValueCell(Protocol):
    """What the sum and last-value aggregations read from a handle."""

    value: Any


def _cell(store: SeriesReader, key: str, labels: tuple[str, ...], attributes: Attributes) -> Any:
    """The handle of ``attributes`` in ``key``'s series; None for the SDK's type probe
    (attributes None) or a label set with no handle now (raw, or retired)."""
    if not attributes:
        return None
    return store.series(key).get(tuple([attributes.get(name) for name in labels]))  # type: ignore[misc]


class _CellSumAggregation(_Follows, _SumAggregation):
    def __init__(
        self, cell: ValueCell, attributes: Attributes, start_time_unix_nano: int, reservoir: Any, find: Find
    ) -> None:
        super().__init__(attributes, True, AggregationTemporality.CUMULATIVE, start_time_unix_nano, reservoir)
        self._cell = cell
        self._find = find

    def _restart(self, now: int) -> None:
        with self._lock:
            self._previous_value = 0
            self._previous_collection_start_nano = self._start_time_unix_nano = now

    def aggregate(self, measurement: Measurement, should_sample_exemplar: bool = True) -> None:
        """The handle has counted it (the one measurement is the series' registration)."""

    def collect(  # type: ignore[override]
        self, collection_aggregation_temporality: AggregationTemporality, collection_start_nano: int
    ) -> NumberDataPoint | None:
        cell = self._live(collection_start_nano)
        if cell is None:
            return None
        value = cell.value
        start = self._start_time_unix_nano
        if collection_aggregation_temporality is AggregationTemporality.DELTA:
            with self._lock:
                value, self._previous_value = value - self._previous_value, value
                start, self._previous_collection_start_nano = (
                    self._previous_collection_start_nano,
                    collection_start_nano,
                )
        return NumberDataPoint(
            attributes=self._attributes,
            exemplars=[],
            start_time_unix_nano=start,
            time_unix_nano=collection_start_nano,
            value=value,
        )


class _ReadsHandles:
    """A view aggregation whose label sets with a handle read it; others (and the SDK's
    type probe) get the SDK's own aggregation."""

    def __init__(self, store: SeriesReader, key: str, labels: Sequence[str]) -> None:
        self._store = store
        self._key = key
        self._labels = tuple(labels)

    def _for_cell(
        self, cell: Any, attributes: Attributes, start: int, reservoir_factory: Callable[..., Any], find: Find
    ) -> _Aggregation[Any]:
        raise NotImplementedError

    def _create_aggregation(
        self,
        instrument: Any,
        attributes: Attributes,
        reservoir_factory: Callable[[type[_Aggregation[Any]]], Any],
        start_time_unix_nano: int,
    ) -> _Aggregation[Any]:
        cell = _cell(self._store, self._key, self._labels, attributes) or _dormant()
        if cell is None:
            return super()._create_aggregation(  # type: ignore[misc, no-any-return]
                instrument, attributes, reservoir_factory, start_time_unix_nano
            )
        keep_across_delta(instrument)
        find = partial(_cell, self._store, self._key, self._labels, attributes)
        return self._for_cell(cell, attributes, start_time_unix_nano, reservoir_factory, find)


class CellSumAggregation(_ReadsHandles, SumAggregation):
    """A counter's view aggregation: label sets with a handle read its total."""

    def _for_cell(
        self, cell: Any, attributes: Attributes, start: int, reservoir_factory: Callable[..., Any], find: Find
    ) -> _Aggregation[Any]:
        return _CellSumAggregation(cell, attributes, start, reservoir_factory(_SumAggregation), find)


class NativeCell(Protocol):
    """What the exponential aggregation reads from a handle with native buckets."""

    def snapshot_native(self) -> tuple[list[int], float, float, float, NativeSnapshot | None]:
        """(classic bucket counts, sum, min, max, native buckets), consistent with each other."""
        ...


_NO_BUCKETS = NativeSnapshot(MAX_SCALE, 0, 0, (), 0, ())


def native_delta(now: NativeSnapshot, before: NativeSnapshot) -> NativeSnapshot:
    """What ``now`` counted since ``before`` (an earlier snapshot of the same series), at
    ``now``'s scale: a series' scale only goes down, and bucket ``i`` at a scale finer by
    ``change`` is bucket ``i >> change`` at ``now``'s. Each side is trimmed to its buckets
    from the first to the last that counted something (empty: offset 0, no bucket)."""
    change = before.scale - now.scale
    positive = _side_delta(now.positive_offset, now.positive, before.positive_offset, before.positive, change)
    negative = _side_delta(now.negative_offset, now.negative, before.negative_offset, before.negative, change)
    return NativeSnapshot(now.scale, now.zero_count - before.zero_count, *positive, *negative)


def _side_delta(
    offset: int, counts: Sequence[int], before_offset: int, before: Sequence[int], change: int
) -> tuple[int, tuple[int, ...]]:
    delta = list(counts)
    for position, n in enumerate(before):
        if n:
            delta[((before_offset + position) >> change) - offset] -= n
    first = next((i for i, n in enumerate(delta) if n), None)
    if first is None:
        return 0, ()
    last = max(i for i, n in enumerate(delta) if n)
    return offset + first, tuple(delta[first : last + 1])


class _CellExponentialAggregation(_Follows, _ExponentialBucketHistogramAggregation):
    """A series with native buckets: exponential points from its handle's snapshot; the
    SDK's own state (from the base class) stays empty, only its exemplar reservoir and
    lock serve."""

    def __init__(
        self, cell: NativeCell, attributes: Attributes, start_time_unix_nano: int, reservoir_builder: Any, find: Find
    ) -> None:
        super().__init__(
            attributes,
            reservoir_builder,
            AggregationTemporality.DELTA,  # a synchronous instrument's, as the SDK's view gives it
            start_time_unix_nano,
            max_size=MAX_BUCKETS,
            max_scale=MAX_SCALE,
        )
        self._cell = cell
        self._find = find
        self._before = _NO_BUCKETS
        self._before_count = 0
        self._before_sum = 0.0
        self._before_collection = start_time_unix_nano

    def _restart(self, now: int) -> None:
        with self._lock:
            self._before, self._before_count, self._before_sum = _NO_BUCKETS, 0, 0.0
            self._before_collection = self._start_time_unix_nano = now

    def aggregate(self, measurement: Measurement, should_sample_exemplar: bool = True) -> None:
        # The handle has counted the value already; the SDK path only carries exemplars.
        if not math.isnan(measurement.value):
            self._sample_exemplar(measurement, should_sample_exemplar)

    def collect(  # type: ignore[override]
        self, collection_aggregation_temporality: AggregationTemporality, collection_start_nano: int
    ) -> ExponentialHistogramDataPoint | None:
        cell = self._live(collection_start_nano)
        if cell is None:
            return None
        counts, total, low, high, native = cell.snapshot_native()
        if native is None:  # a handle without native buckets: never given this aggregation
            return None
        count = sum(counts)
        if collection_aggregation_temporality is AggregationTemporality.DELTA:
            with self._lock:
                before, before_count, before_sum = self._before, self._before_count, self._before_sum
                start = self._before_collection
                self._before, self._before_count, self._before_sum = native, count, total
                self._before_collection = collection_start_nano
            if count == before_count:
                return None
            native, count, total = native_delta(native, before), count - before_count, total - before_sum
        elif count == 0:
            return None
        else:
            start = self._start_time_unix_nano
        return ExponentialHistogramDataPoint(
            attributes=self._attributes,
            start_time_unix_nano=start,
            time_unix_nano=collection_start_nano,
            count=count,
            sum=total,
            scale=native.scale,
            zero_count=native.zero_count,
            positive=Buckets(offset=native.positive_offset, bucket_counts=list(native.positive)),
            negative=Buckets(offset=native.negative_offset, bucket_counts=list(native.negative)),
            flags=0,
            min=low,
            max=high,
            exemplars=self._collect_exemplars(),
        )


class CellExponentialAggregation(_ReadsHandles, ExponentialBucketHistogramAggregation):
    """A histogram with native buckets: label sets with a handle read its native buckets;
    others fall back to the SDK's exponential aggregation with the same bounds
    (``max_size`` 160, ``max_scale`` 8)."""

    def __init__(self, store: SeriesReader, key: str, labels: Sequence[str]) -> None:
        _ReadsHandles.__init__(self, store, key, labels)
        ExponentialBucketHistogramAggregation.__init__(self, max_size=MAX_BUCKETS, max_scale=MAX_SCALE)

    def _for_cell(
        self, cell: Any, attributes: Attributes, start: int, reservoir_factory: Callable[..., Any], find: Find
    ) -> _Aggregation[Any]:
        return _CellExponentialAggregation(
            cell, attributes, start, reservoir_factory(_ExponentialBucketHistogramAggregation), find
        )


_LAST_VALUE_TAKES_SYNCHRONOUS = "instrument_is_synchronous" in inspect.signature(_LastValueAggregation).parameters


class _CellLastValueAggregation(_Follows, _LastValueAggregation):
    def __init__(self, cell: ValueCell, attributes: Attributes, reservoir: Any, find: Find) -> None:
        if _LAST_VALUE_TAKES_SYNCHRONOUS:  # SDK 1.45 added the argument; 1.44 has none
            super().__init__(attributes, reservoir, instrument_is_synchronous=True)
        else:
            super().__init__(attributes, reservoir)  # type: ignore[call-arg]
        self._cell = cell
        self._find = find

    def _restart(self, now: int) -> None:
        """A gauge has no baseline."""

    def aggregate(self, measurement: Measurement, should_sample_exemplar: bool = True) -> None:
        """The handle holds the value (the one measurement is the series' registration)."""

    def collect(  # type: ignore[override]
        self, collection_aggregation_temporality: AggregationTemporality, collection_start_nano: int
    ) -> NumberDataPoint | None:
        cell = self._live(collection_start_nano)
        value = None if cell is None else cell.value
        if value is None:  # never set, or retired
            return None
        return NumberDataPoint(
            attributes=self._attributes,
            exemplars=[],
            start_time_unix_nano=None,  # type: ignore[arg-type]  # as the SDK's gauges
            time_unix_nano=collection_start_nano,
            value=value,
        )


class CellLastValueAggregation(_ReadsHandles, LastValueAggregation):
    """A gauge's view aggregation: label sets with a handle read its last value."""

    def _for_cell(
        self, cell: Any, attributes: Attributes, start: int, reservoir_factory: Callable[..., Any], find: Find
    ) -> _Aggregation[Any]:
        return _CellLastValueAggregation(cell, attributes, reservoir_factory(_LastValueAggregation), find)


def register_series(instrument: Any, attributes: Mapping[str, str]) -> None:
    """Make every reader create the aggregation of this label set now (it reads the
    handle from then on): one measurement through the instrument's private
    ``_measurement_consumer`` (no public API records without a value), which the
    aggregation ignores (NaN) and no exemplar filter samples (an empty context)."""
    instrument._measurement_consumer.consume_measurement(
        Measurement(math.nan, time.time_ns(), instrument, Context(), attributes)
    )


def keep_across_delta(instrument: Any) -> None:
    """Keep the aggregations that read handles from one delta collection to the next.

    From SDK 1.45.2 a synchronous instrument's series under a delta-temporality reader
    are forgotten at each collection (private ``_reset_on_collect`` of each
    ``_ViewInstrumentMatch``), to be made again by the next measurement. Ours are measured
    once (:func:`register_series`) and read from their handles after that, so forgetting
    them would export each series once and never again. The flag is cleared on every
    reader's matches of ``instrument`` (private ``_reader_storages`` and
    ``_instrument_view_instrument_matches``). This runs inside the SDK's creation of one
    of our aggregations, under that match's lock, so no collection falls between the
    series' creation and this. Our store bounds the series (the cardinality limit, each
    refusal counted) and ``retire`` releases them (:func:`forget_series`). The flag is
    cleared for the whole instrument, so a label set recorded on the raw instrument is kept
    too, as on SDKs without the flag."""
    for storage in instrument._measurement_consumer._reader_storages.values():
        for match in storage._instrument_view_instrument_matches.get(instrument, ()):
            if getattr(match, "_reset_on_collect", False):
                match._reset_on_collect = False


def forget_series(instrument: Any) -> None:
    """Release the SDK's aggregations of retired series, so that a retired series holds no
    memory in the SDK: each reader's match of ``instrument`` drops every aggregation of ours
    whose label set has no live handle in the store (private ``_attributes_aggregation`` and
    ``_lock`` of each ``_ViewInstrumentMatch``). Called by the store under its lock, after
    removing the series, so no handle of the same labels is registered meanwhile; that is
    registration's lock order (store, then match), and a collection, which holds the
    match's lock, never takes the store's."""
    for storage in instrument._measurement_consumer._reader_storages.values():
        for match in storage._instrument_view_instrument_matches.get(instrument, ()):
            with match._lock:
                table = match._attributes_aggregation
                for key in [k for k, a in table.items() if isinstance(a, _Follows) and _no_handle(a)]:
                    del table[key]


def _no_handle(aggregation: _Follows) -> bool:
    cell = aggregation._find()
    return cell is None or cell.retired


def disown_reader(reader: PeriodicExportingMetricReader) -> None:
    """In a forked child, a periodic reader inherited from the parent: the SDK's own fork
    hook starts its thread again, to collect and export the parent's instruments from the
    child. Its collect callback (private ``_collect``) becomes a no-op and its stop event
    (private ``_shutdown_event``) is set, so that thread ends at once without collecting
    (the public ``shutdown`` would export once more, and take locks a parent's thread may
    have held at the fork)."""
    reader._collect = _collect_nothing  # type: ignore[assignment]  # returns no metrics, as the SDK allows
    reader._shutdown_event.set()


def _collect_nothing(reader: Any, timeout_millis: float = 0) -> None:
    return None


def renew_provider_lock() -> None:
    """In a forked child, before a MeterProvider is built: the class-wide lock every
    provider's construction takes (private ``_all_metric_readers_lock``), which a parent's
    thread may have held at the fork. The SDK renews it in a fork hook of its own (1.45),
    which runs after ours."""
    MeterProvider._all_metric_readers_lock = threading.Lock()


def exporter_preferences(exporter: MetricExporter) -> dict[str, Any]:
    """An exporter's preferred temporality and aggregation (its private attributes: the
    SDK has no public getter), to build a wrapper that a reader treats the same."""
    return {
        "preferred_temporality": exporter._preferred_temporality,
        "preferred_aggregation": exporter._preferred_aggregation,
    }
