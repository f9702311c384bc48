"""The recording API: a plane's metrics object and the handles bound to one label set.

The hot path is a dict lookup (for ``metrics.inc(key, **labels)``), one type check and
one range comparison, then the OTel instrument. Everything else (the key, the labels,
the cardinality limit, odd values) is checked off the hot path, when a label set is first
seen or when a value fails the one-comparison check.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.context import get_current
from opentelemetry.metrics import Histogram, Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics._internal.measurement import Measurement
from opentelemetry.trace import Tracer

from trading_telemetry._checks import check_labels, check_value, find_spec, unusable_number, wrong_kind
from trading_telemetry._drops import DROPPED_METRIC, DropPolicy
from trading_telemetry._sdk import METER_NAME, PlaneSDK
from trading_telemetry._version import __version__
from trading_telemetry.catalog import SERVICE_LABEL, Kind, MetricSpec, Plane, plane_specs
from trading_telemetry.errors import CardinalityLimitError, MeasurementError

__all__ = ["BoundMetric", "PlaneMetrics"]

_MAX = sys.float_info.max
_Record = Callable[[Any, Mapping[str, str]], None]


class BoundMetric:
    """One metric bound to one label set: the fastest way to record in a hot loop.

    Get one from :meth:`PlaneMetrics.bind`. Only the method matching the metric's kind
    records (``inc`` for counters, ``set`` for gauges, ``observe`` for histograms); the
    others are bad input, like a bad value.

    Example::

        spy_ticks = metrics.bind("ticks_received", source="ibkr_rt", symbol="SPY")
        for tick in feed:
            spy_ticks.inc()
    """

    __slots__ = ("_attributes", "_high", "_low", "_policy", "_record", "labels", "spec")

    def __init__(self, spec: MetricSpec, labels: Mapping[str, str], service: str, record: _Record, policy: DropPolicy):
        self.spec = spec
        self.labels = dict(labels)
        self._attributes = {**labels, SERVICE_LABEL: service}
        self._policy = policy
        self._record = record
        # The fast path accepts an int or float with low <= value <= high; everything else
        # (NaN, infinities, other number types, integral gauges) takes check_value().
        low = -_MAX if spec.min_value is None else spec.min_value
        high = _MAX if spec.max_value is None else spec.max_value
        self._low, self._high = (_MAX, -_MAX) if spec.integral else (low, high)

    def inc(self, value: float = 1) -> None:
        """Add ``value`` (default 1) to a counter."""
        self._policy.reject(wrong_kind(self.spec, "inc", value))

    def set(self, value: float) -> None:
        """Set a gauge to ``value``."""
        self._policy.reject(wrong_kind(self.spec, "set", value))

    def observe(self, value: float) -> None:
        """Record ``value`` in a histogram."""
        self._policy.reject(wrong_kind(self.spec, "observe", value))

    def unchecked(self) -> tuple[_Record, Mapping[str, str]]:
        """The instrument's record function and this label set's attributes, to call as
        ``record(value, attributes)`` without the value check: for values the package
        produced itself (a duration from the monotonic clock, a count of 1)."""
        return self._record, self._attributes

    def _checked(self, value: object) -> None:
        try:
            number = check_value(self.spec, value)
        except MeasurementError as error:
            self._policy.reject(error)
            return
        except Exception:  # noqa: BLE001 - e.g. an int too large for a float
            self._policy.reject(unusable_number(self.spec, value))
            return
        self._record(number, self._attributes)

    def __repr__(self) -> str:
        labels = ", ".join(f"{k}={v!r}" for k, v in self.labels.items())
        return f"<{type(self).__name__} {self.spec.plane.value}/{self.spec.key}({labels})>"


class _Counter(BoundMetric):
    __slots__ = ()

    def inc(self, value: float = 1) -> None:
        if (value.__class__ is int or value.__class__ is float) and 0 <= value <= _MAX:
            self._record(value, self._attributes)
        else:
            self._checked(value)


class _Gauge(BoundMetric):
    __slots__ = ()

    def set(self, value: float) -> None:
        if (value.__class__ is float or value.__class__ is int) and self._low <= value <= self._high:
            self._record(value, self._attributes)
        else:
            self._checked(value)


class _Histogram(BoundMetric):
    __slots__ = ()

    def observe(self, value: float) -> None:
        if (value.__class__ is float or value.__class__ is int) and self._low <= value <= self._high:
            self._record(value, self._attributes)
        else:
            self._checked(value)


class _Rejected(BoundMetric):
    """What :meth:`PlaneMetrics.bind` returns in production mode for a bad key or label
    set: every measurement is dropped and counted with the original reason."""

    __slots__ = ("_error",)

    def __init__(self, error: MeasurementError, policy: DropPolicy) -> None:
        self._error = error
        self._policy = policy
        self.labels = {}

    def inc(self, value: float = 1) -> None:
        self._policy.reject(self._error)

    set = observe = inc

    def unchecked(self) -> tuple[_Record, Mapping[str, str]]:
        return (lambda value, attributes: self.inc(value)), {}

    def __repr__(self) -> str:
        return f"<rejected metric: {self._error}>"


_HANDLES: dict[Kind, type[BoundMetric]] = {Kind.COUNTER: _Counter, Kind.GAUGE: _Gauge, Kind.HISTOGRAM: _Histogram}


def _signed_record(histogram: Histogram) -> _Record:
    """``Histogram.record`` of the Python SDK drops negative values, which the OTel data
    model and both Prometheus exporters accept. For histograms of signed quantities
    (slippage), hand negative values to the SDK's measurement consumer, as
    ``record`` itself does for non-negative ones."""
    consumer = getattr(histogram, "_measurement_consumer", None)
    if consumer is None:  # the no-op SDK
        return histogram.record

    def record(value: Any, attributes: Mapping[str, str]) -> None:
        if value >= 0:
            histogram.record(value, attributes)
        else:
            consumer.consume_measurement(
                Measurement(value, time.time_ns(), histogram, get_current(), attributes)  # type: ignore[arg-type]
            )

    return record


def _recorder(meter: Meter, s: MetricSpec) -> _Record:
    if s.kind is Kind.COUNTER:
        return meter.create_counter(s.name, unit=s.unit, description=s.description).add
    if s.kind is Kind.GAUGE:
        return meter.create_gauge(s.name, unit=s.unit, description=s.description).set
    histogram = meter.create_histogram(s.name, unit=s.unit, description=s.description)
    return _signed_record(histogram) if s.allows_negative else histogram.record


class PlaneMetrics:
    """The metrics of one plane, as the seed README's API records them.

    Create it with :func:`trading_telemetry.init_metrics_exporter`. Every call names a
    catalog key and passes exactly that metric's labels; the ``service`` label is set
    to the plane's name by the SDK.

    Example::

        metrics = init_metrics_exporter("data_plane")
        metrics.inc("ticks_received", source="ibkr_rt", symbol="SPY")
        metrics.observe("data_freshness", 0.150, source="ibkr_rt", symbol="SPY")
        metrics.set("completeness_score", 0.95, symbol="SPY")

    A bad call (unknown key, wrong labels, a bad value) raises a
    :class:`~trading_telemetry.errors.MeasurementError` in strict mode; in production
    mode it is dropped, counted in ``trading_telemetry_dropped_measurements_total`` and
    logged at most once a minute, and never raises.
    """

    def __init__(self, sdk: PlaneSDK) -> None:
        self.plane: Plane = sdk.plane
        self._sdk = sdk
        self._specs = plane_specs(self.plane)
        meter = sdk.meter_provider.get_meter(METER_NAME, __version__)
        self._records = {key: _recorder(meter, s) for key, s in self._specs.items()}
        dropped = meter.create_counter(
            DROPPED_METRIC, unit="{measurement}", description="Measurements dropped as bad input, by metric and reason"
        )
        self._policy = DropPolicy(strict=sdk.config.strict, service=self.plane.value, counter=dropped)
        self._limit = sdk.config.cardinality_limit
        self._cache: dict[tuple[Any, ...], BoundMetric] = {}
        self._series: dict[str, dict[frozenset[tuple[str, str]], BoundMetric]] = {k: {} for k in self._specs}
        self._lock = threading.Lock()
        provider = sdk.tracer_provider
        self.tracer: Tracer | None = provider.get_tracer(METER_NAME, __version__) if provider else None
        """The plane's tracer, or None when tracing is off (no span exporter configured)."""

    @property
    def strict(self) -> bool:
        return self._policy.strict

    @property
    def sdk(self) -> PlaneSDK:
        return self._sdk

    def inc(self, key: str, value: float = 1, /, **labels: str) -> None:
        """Add ``value`` (default 1) to the counter ``key``."""
        try:
            handle = self._cache[(key, *labels.items())]
        except (KeyError, TypeError):
            handle = self._bind(key, labels)
        handle.inc(value)

    def observe(self, key: str, value: float, /, **labels: str) -> None:
        """Record ``value`` in the histogram ``key``."""
        try:
            handle = self._cache[(key, *labels.items())]
        except (KeyError, TypeError):
            handle = self._bind(key, labels)
        handle.observe(value)

    def set(self, key: str, value: float, /, **labels: str) -> None:
        """Set the gauge ``key`` to ``value``."""
        try:
            handle = self._cache[(key, *labels.items())]
        except (KeyError, TypeError):
            handle = self._bind(key, labels)
        handle.set(value)

    def bind(self, key: str, /, **labels: str) -> BoundMetric:
        """The metric ``key`` bound to ``labels``, for hot loops.

        In strict mode a bad key or label set raises here; in production mode the
        returned handle drops (and counts) every measurement instead.
        """
        return self._bind(key, labels)

    def _bind(self, key: str, labels: dict[str, Any]) -> BoundMetric:
        try:
            s = find_spec(self.plane, self._specs, key)
            check_labels(s, labels)
            canonical = frozenset(labels.items())
            with self._lock:
                series = self._series[s.key]
                handle = series.get(canonical)
                if handle is None:
                    if len(series) >= self._limit:
                        raise CardinalityLimitError(
                            f"{s.key}: label set {labels!r} would exceed the cardinality limit of {self._limit} "
                            "(TRADING_TELEMETRY_CARDINALITY_LIMIT)",
                            metric=s.key,
                            value=labels,
                        )
                    handle = _HANDLES[s.kind](s, labels, self.plane.value, self._records[s.key], self._policy)
                    series[canonical] = handle
                self._cache[(key, *labels.items())] = handle
            return handle
        except MeasurementError as error:
            if self._policy.strict:
                raise
            return _Rejected(error, self._policy)

    def series_count(self, key: str) -> int:
        """How many label sets ``key`` has recorded (what the cardinality limit counts)."""
        return len(self._series[key])

    def health(self) -> dict[str, Any]:
        """What ``GET /health`` returns: ``status`` is ``ok``, ``degraded`` (a push
        exporter is failing; pull still works), ``disabled`` or ``stopped``."""
        exporters = self._sdk.exporter_states()
        if self._sdk.stopped:
            status = "stopped"
        elif self._sdk.config.sdk_disabled:
            status = "disabled"
        elif any(e["state"] == "failing" for e in exporters.values()):
            status = "degraded"
        else:
            status = "ok"
        return {
            "status": status,
            "plane": self.plane.value,
            "uptime_seconds": round(time.monotonic() - self._sdk.started, 3),
            "exporters": exporters,
            "dropped_measurements": self._policy.dropped,
            "strict": self._policy.strict,
        }

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Push what has been recorded now, without waiting for the export interval."""
        provider = self._sdk.meter_provider
        return bool(provider.force_flush(timeout_millis)) if isinstance(provider, MeterProvider) else True

    def shutdown(self) -> None:
        """Flush push exporters and stop the plane's SDK (idempotent)."""
        self._sdk.shutdown()

    def __repr__(self) -> str:
        return f"<PlaneMetrics {self.plane.value} exporters={list(self._sdk.exporter_states())}>"
