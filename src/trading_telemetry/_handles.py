"""Bound handles: one metric, one label set, and that series' running state.

Each handle pre-aggregates its own series, as a prometheus_client child does: a counter
keeps its total, a gauge its last value, a histogram its bucket counts, sum, min and max,
behind a lock where an update is more than one store. Recording costs a check, a lock and
an add.

What readers may use of a handle (the read protocol of ``_series``): ``value`` (a counter's
total, a gauge's last value or None), ``snapshot()`` (a histogram's counts, sum, min, max),
``snapshot_native()`` (the same with its native buckets), ``exemplars()`` (the last
exemplar kept in each bucket for /metrics), ``label_items()``, ``attributes`` and
``label_text(render)``, the series' labels as the /metrics renderer writes them, rendered
once and kept. The OTel SDK reads the same state
when it collects, through the view aggregations of ``_aggregation``.
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from opentelemetry.context import get_current
from opentelemetry.trace import format_span_id, format_trace_id, get_current_span

from trading_telemetry._checks import check_value, overflow, unusable_number, wrong_kind
from trading_telemetry._drops import DropPolicy
from trading_telemetry._native import NativeBuckets, NativeSnapshot
from trading_telemetry._safe import safe_repr
from trading_telemetry.catalog import SERVICE_LABEL, MetricSpec
from trading_telemetry.errors import MeasurementError, RetiredSeriesError

__all__ = ["BoundMetric", "retire_handle"]

_MAX = sys.float_info.max
T = TypeVar("T")
Exemplars = Callable[[float, Mapping[str, str]], None]
Exemplar = tuple[float, str, str, float]
"""An observation kept for /metrics: (value, trace id hex, span id hex, Unix time); empty
ids for one made outside a span."""


class BoundMetric:
    """One metric bound to one label set: the fastest way to record in a hot loop.

    Get one from :meth:`PlaneMetrics.bind`. Only the method matching the metric's kind
    records (``inc`` for counters, ``set`` for gauges, ``observe`` for histograms); the
    others are bad input, like a bad value. Thread-safe: concurrent calls lose nothing.

    Example::

        spy_ticks = metrics.bind("ticks_received", source="ibkr_rt", symbol="SPY")
        for tick in feed:
            spy_ticks.inc()
    """

    # Lean on purpose (a desk has tens of thousands of series): the label values as one
    # tuple, which is also the series' key; the attributes dict only once an SDK reader
    # asks for it.
    __slots__ = ("_attrs", "_high", "_label_text", "_low", "_policy", "key", "spec")

    retired = False
    """Whether ``retire`` removed this series: then every recording drops (``retired``)."""

    def __init__(self, spec: MetricSpec, key: tuple[str, ...], policy: DropPolicy) -> None:
        self.spec = spec
        self.key = key
        """The label values, in the order of ``spec.labels``."""
        self._attrs: dict[str, str] | None = None
        self._policy = policy
        self._label_text: Any = None  # see label_text()
        # The fast path accepts an int or float with low <= value <= high; everything else
        # (NaN, infinities, other number types, integral gauges) takes check_value().
        low = -_MAX if spec.min_value is None else spec.min_value
        high = _MAX if spec.max_value is None else spec.max_value
        self._low, self._high = (_MAX, -_MAX) if spec.integral else (low, high)

    @property
    def labels(self) -> dict[str, str]:
        """The labels this handle is bound to (``service`` aside)."""
        return dict(zip(self.spec.labels, self.key, strict=True))

    def label_items(self) -> list[tuple[str, str]]:
        """The series' labels, ``service`` included."""
        return [*zip(self.spec.labels, self.key, strict=True), (SERVICE_LABEL, self._policy.service)]

    def label_text(self, render: Callable[[list[tuple[str, str]]], T]) -> T:
        """The series' labels as ``render`` writes them (the /metrics renderer's escaped
        label string), rendered at the first call and kept: labels never change."""
        text = self._label_text
        if text is None:
            text = self._label_text = render(self.label_items())
        return text  # type: ignore[no-any-return]

    @property
    def attributes(self) -> Mapping[str, str]:
        """The OTel attributes of this series: the labels and ``service``."""
        attrs = self._attrs
        if attrs is None:
            attrs = self._attrs = dict(self.label_items())
        return attrs

    def inc(self, value: float = 1) -> None:
        """Add ``value`` (default 1) to a counter."""
        self._policy.reject(wrong_kind(self.spec, "inc", self._policy.strict))

    def set(self, value: float) -> None:
        """Set a gauge to ``value``."""
        self._policy.reject(wrong_kind(self.spec, "set", self._policy.strict))

    def observe(self, value: float) -> None:
        """Record ``value`` in a histogram."""
        self._policy.reject(wrong_kind(self.spec, "observe", self._policy.strict))

    def record_unchecked(self, value: float) -> None:
        """Record ``value`` without the value check (``inc``, ``set`` or ``observe`` by the
        metric's kind): for values the package produced itself (a duration from the
        monotonic clock, a count of 1)."""
        raise NotImplementedError

    def after_fork(self) -> None:
        """In a forked child: the series as if nothing had been recorded in this process,
        with new locks."""

    def _checked(self, value: object) -> None:
        """The slow path of every value the fast check did not take; never raises in
        production mode, whatever ``value`` is."""
        try:
            number = check_value(self.spec, value)
        except Exception:  # noqa: BLE001 - a hostile __float__, __class__, ...
            number = unusable_number(self.spec, value)
        if isinstance(number, MeasurementError):
            self._policy.reject(number)
        else:
            self.record_unchecked(number)

    def __repr__(self) -> str:
        labels = ", ".join(f"{k}={v!r}" for k, v in self.labels.items())
        return f"<{type(self).__name__} {self.spec.plane.value}/{self.spec.key}({labels})>"


class CounterHandle(BoundMetric):
    __slots__ = ("_lock", "value")

    def __init__(self, spec: MetricSpec, key: tuple[str, ...], policy: DropPolicy) -> None:
        super().__init__(spec, key, policy)
        self._lock = threading.Lock()
        self.value: float = 0

    def inc(self, value: float = 1) -> None:
        try:
            if (value.__class__ is int or value.__class__ is float) and 0 <= value <= _MAX:
                with self._lock:
                    total = self.value + value
                    if total <= _MAX:  # an int total beyond a float, or inf, could not be exported
                        self.value = total
                        return
                self._policy.reject(overflow(self.spec, value, "counter's total"))
                return
        except MeasurementError:
            raise
        except Exception:  # noqa: BLE001 - a hostile value: judged by _checked
            pass
        self._checked(value)

    def record_unchecked(self, value: float) -> None:
        with self._lock:
            total = self.value + value
            if total <= _MAX:
                self.value = total
                return
        self._policy.reject(overflow(self.spec, value, "counter's total"))

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self.value = 0


class GaugeHandle(BoundMetric):
    __slots__ = ("value",)

    def __init__(self, spec: MetricSpec, key: tuple[str, ...], policy: DropPolicy) -> None:
        super().__init__(spec, key, policy)
        self.value: float | None = None  # None: never set, not exported

    def set(self, value: float) -> None:
        try:
            if (value.__class__ is float or value.__class__ is int) and self._low <= value <= self._high:
                self.value = value  # one store: atomic
                return
        except Exception:  # noqa: BLE001 - a hostile value: judged by _checked
            pass
        self._checked(value)

    def record_unchecked(self, value: float) -> None:
        self.value = value

    def after_fork(self) -> None:
        self.value = None


class HistogramHandle(BoundMetric):
    __slots__ = (
        "_bounds",
        "_counts",
        "_every",
        "_exemplars",
        "_keep",
        "_kept",
        "_lock",
        "_max",
        "_min",
        "_native",
        "_offer",
        "_sum",
    )

    def __init__(
        self,
        spec: MetricSpec,
        key: tuple[str, ...],
        policy: DropPolicy,
        exemplars: Exemplars | None,
        every: bool = False,
    ) -> None:
        super().__init__(spec, key, policy)
        self._bounds = tuple(spec.buckets or ())
        self._counts = [0] * (len(self._bounds) + 1)
        # Native (exponential) buckets beside the classic ones, for metrics opted in.
        self._native = NativeBuckets() if spec.native else None
        self._sum = 0.0
        self._min = math.inf
        self._max = -math.inf
        self._lock = threading.Lock()
        # Called for observations made inside a recording span: the SDK's path to the
        # exemplar reservoirs. None when no reader exports exemplars.
        self._exemplars = exemplars
        # OTEL_METRICS_EXEMPLAR_FILTER=always_on: every observation is offered, not only
        # those made inside a recording span.
        self._every = every
        # Whether /metrics is served with exemplars: then each classic bucket keeps the last
        # observation offered (``_kept``, made at the first one).
        self._keep = False
        self._kept: list[Exemplar | None] | None = None
        self._offer = exemplars is not None

    def observe(self, value: float) -> None:
        try:
            fast = (value.__class__ is float or value.__class__ is int) and self._low <= value <= self._high
        except Exception:  # noqa: BLE001 - a hostile value: judged by _checked
            fast = False
        if fast:
            self.record_unchecked(value)
        else:
            self._checked(value)

    def record_unchecked(self, value: float) -> None:
        index = bisect_left(self._bounds, value)  # the bucket (b[i-1], b[i]], as OTel counts
        with self._lock:
            total = self._sum + value
            finite = -_MAX <= total <= _MAX  # else the observation is dropped whole: the sum stays finite
            if finite:
                self._counts[index] += 1
                if self._native is not None:
                    self._native.add(value)
                self._sum = total
                if value < self._min:
                    self._min = value
                if value > self._max:
                    self._max = value
        if not finite:
            self._policy.reject(overflow(self.spec, value, "histogram's sum"))
            return
        # Outside any context (no span) the check is one call returning an empty Context.
        if self._offer and (self._every or (get_current() and get_current_span().is_recording())):
            self._offer_exemplar(value, index)

    def _offer_exemplar(self, value: float, index: int) -> None:
        """An observation the exemplar filter offers: kept for /metrics in its bucket, and
        handed to the SDK's reservoirs; none once the series is retired (an observation
        that raced the retirement)."""
        if self.retired:
            return
        with contextlib.suppress(Exception):  # an exemplar is a nicety, never a failure
            if self._keep:
                context = get_current_span().get_span_context()
                trace_id = span_id = ""
                if context.is_valid:
                    trace_id, span_id = format_trace_id(context.trace_id), format_span_id(context.span_id)
                kept = self._kept
                if kept is None:
                    kept = self._kept = [None] * len(self._counts)
                kept[index] = (value, trace_id, span_id, time.time())  # one store: atomic
            if self._exemplars is not None:
                self._exemplars(value, self.attributes)

    def exemplars(self) -> list[Exemplar | None] | None:
        """The last exemplar kept in each classic bucket (None: none there), or None when
        none is kept."""
        kept = self._kept
        return list(kept) if kept is not None else None

    def snapshot(self) -> tuple[list[int], float, float, float]:
        """(bucket counts, sum, min, max), consistent with each other."""
        with self._lock:
            return list(self._counts), self._sum, self._min, self._max

    def snapshot_native(self) -> tuple[list[int], float, float, float, NativeSnapshot | None]:
        """(bucket counts, sum, min, max, native buckets or None when the metric has none),
        consistent with each other."""
        with self._lock:
            native = self._native.snapshot() if self._native is not None else None
            return list(self._counts), self._sum, self._min, self._max, native

    def use_exemplars(self, exemplars: Exemplars | None, every: bool, keep: bool = False) -> None:
        """Offer observations to ``exemplars`` (the SDK's reservoirs; None: none) and, when
        ``keep``, keep the last one of each bucket for /metrics: all observations when
        ``every``, else those made inside a recording span."""
        self._exemplars, self._every, self._keep = exemplars, every, keep
        self._offer = exemplars is not None or keep
        if not keep:
            self._kept = None

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self._counts = [0] * len(self._counts)
        if self._native is not None:
            self._native = NativeBuckets()
        self._sum = 0.0
        self._min = math.inf
        self._max = -math.inf
        self._kept = None


class RejectedHandle(BoundMetric):
    """What :meth:`PlaneMetrics.bind` returns in production mode for a bad key or label
    set: every measurement is dropped and counted with the original reason."""

    __slots__ = ("_error",)

    def __init__(self, error: MeasurementError, policy: DropPolicy) -> None:
        self._error = error
        self._policy = policy
        self.key = ()

    @property
    def labels(self) -> dict[str, str]:
        return {}

    def inc(self, value: float = 1) -> None:
        self._policy.reject(self._error)

    set = observe = record_unchecked = inc

    def __repr__(self) -> str:
        return f"<rejected metric: {self._error}>"


def _retired_error(handle: BoundMetric) -> RetiredSeriesError:
    spec, labels = handle.spec, handle.labels
    return RetiredSeriesError(
        lambda: (
            f"{spec.key}: the series {safe_repr(labels, 200)} was retired; record with the labels "
            "(or bind them again) to start a new series"
        ),
        metric=spec.key,
        value=labels,
    )


def _record_retired(self: BoundMetric, value: object = 1) -> None:
    self._policy.reject(_retired_error(self))


_RETIRED_TYPES: dict[type, type] = {}


def retire_handle(handle: BoundMetric) -> None:
    """Make ``handle`` inert: its class becomes a subclass of its own (same slots, so the
    state readers may still hold stays as it was) whose recording methods drop with
    reason ``retired`` (raise in strict mode). Costs the live handles nothing."""
    kind = type(handle)
    if kind.retired:
        return
    retired = _RETIRED_TYPES.get(kind)
    if retired is None:
        methods = dict.fromkeys(("inc", "set", "observe", "record_unchecked"), _record_retired)
        retired = _RETIRED_TYPES[kind] = type(
            f"Retired{kind.__name__}", (kind,), {"__slots__": (), "retired": True, **methods}
        )
    handle.__class__ = retired
