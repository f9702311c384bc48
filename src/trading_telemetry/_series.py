"""A plane's series, and the one store that owns them.

``SeriesStore.bind`` turns a call's key and labels into the series' handle: it checks them
(``_checks``), holds the cardinality limit, makes the handle (``_handles``; in multiprocess
mode those of ``_multiprocess``, with a record in the process's file), registers the new
series with the SDK's readers, and caches the call, a rejected one too (at most
REJECTED_KEPT of those), so that the next identical call is one dict lookup
(``PlaneMetrics`` reads ``calls`` directly on its hot path).

Readers use one protocol, ``series(key)``: the label values in the spec's order -> the
handle. The /metrics renderer walks it (``_exposition``); the SDK's view aggregations look
a label set up in it when the SDK first meets the series (``_aggregation``). Of a handle
they read ``value``, ``snapshot()``, ``snapshot_native()``, ``exemplars()``,
``label_items()``, ``attributes`` and ``label_text(render)``, nothing else (the merged
series of multiprocess mode have neither ``snapshot_native()`` nor ``exemplars()``: their
metrics have no native buckets, and the renderer reads no exemplar from them).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from trading_telemetry._checks import MAX_LABEL_VALUE_LENGTH, check_labels, find_spec, label_value
from trading_telemetry._drops import DropPolicy
from trading_telemetry._handles import (
    BoundMetric,
    CounterHandle,
    Exemplars,
    GaugeHandle,
    HistogramHandle,
    RejectedHandle,
    retire_handle,
)
from trading_telemetry._safe import safe_repr, safe_str, type_name
from trading_telemetry.catalog import Kind, MetricSpec, Plane
from trading_telemetry.errors import (
    CardinalityLimitError,
    InvalidInputError,
    LabelError,
    MeasurementError,
    RetireUnsupportedError,
)

if TYPE_CHECKING:
    from trading_telemetry._multiprocess import PlaneFiles

__all__ = ["REJECTED_KEPT", "SeriesReader", "SeriesStore", "plain_call"]

REJECTED_KEPT = 1024
"""Most rejected calls a plane caches (a repeated bad call then costs a lookup)."""

HANDLES: dict[Kind, Any] = {Kind.COUNTER: CounterHandle, Kind.GAUGE: GaugeHandle, Kind.HISTOGRAM: HistogramHandle}

_NONE = type(None)


class SeriesReader(Protocol):
    """What the /metrics renderer and the SDK's views read: a metric's series by label values."""

    def series(self, key: str) -> Mapping[tuple[str, ...], Any]:
        """``key``'s series: label values in the spec's order -> its handle (or merged cell)."""
        ...


def _builtin(kind: type) -> bool:
    """Whether ``kind`` is int, float, bool or NoneType: by identity, as a class's metaclass
    could make it compare equal to one."""
    return kind is int or kind is float or kind is bool or kind is _NONE


def _cacheable(value: object) -> bool:
    """Whether a rejected label value may key the call cache: a short str, or a number,
    bool or None, whose hash and equality are the built-in ones."""
    kind = type(value)
    return (kind is str and len(value) <= MAX_LABEL_VALUE_LENGTH) or _builtin(kind)  # type: ignore[arg-type]


def plain_call(call: tuple[Any, ...]) -> tuple[Any, ...]:
    """A call's cache key with each str subclass replaced by its characters (whatever its
    ``__eq__``, ``__hash__`` or ``__str__`` say); ``()``, which keys nothing, if a part is
    neither a string nor a built-in int, float, bool or None."""
    parts = []
    for part in call:
        kind = type(part)
        if kind is not str and not _builtin(kind):
            try:
                part = str.__str__(part)  # TypeError unless a str, whatever its __class__ claims
            except TypeError:
                return ()
        parts.append(part)
    return tuple(parts)


def _input_error(key: object, error: BaseException) -> InvalidInputError:
    metric = key if type(key) is str else safe_repr(key, 40)
    return InvalidInputError(
        lambda: f"{safe_repr(key)}: an argument broke recording: {type_name(error)}: {safe_str(error)}",
        metric=metric,
    )


def _exemplar_path(histogram: Any) -> Exemplars:
    from trading_telemetry._aggregation import offer_exemplar  # the SDK is there: the plane has readers

    def offer(value: float, attributes: Mapping[str, str]) -> None:
        if value >= 0:  # the SDK's Histogram.record takes no negative value
            offer_exemplar(histogram, value, attributes)

    return offer


def _has(values: tuple[str, ...], wanted: list[tuple[int, str]]) -> bool:
    """Whether a series' label values hold every (position, value) of ``wanted``."""
    return all(values[index] == value for index, value in wanted)


def _state_of(handle: BoundMetric) -> Any:
    """What changes when a series records: a histogram's count and sum, else its value."""
    if isinstance(handle, HistogramHandle):
        counts, total, _, _ = handle.snapshot()
        return sum(counts), total
    return handle.value  # type: ignore[attr-defined]


class SeriesStore:
    """The series of one plane: every handle, the call cache, and their SDK registration."""

    def __init__(
        self,
        plane: Plane,
        specs: Mapping[str, MetricSpec],
        policy: DropPolicy,
        limit: int,
        files: PlaneFiles | None = None,
    ) -> None:
        self.plane = plane
        self.specs = specs
        self._policy = policy
        self._limit = limit
        self._files = files
        self._handle_types: Mapping[Kind, Any] = HANDLES
        if files is not None:
            from trading_telemetry._multiprocess import HANDLES as FILE_HANDLES

            self._handle_types = FILE_HANDLES
        # key -> {label values in the spec's order: handle}
        self._series: dict[str, dict[tuple[str, ...], BoundMetric]] = {key: {} for key in specs}
        self.calls: dict[tuple[Any, ...], BoundMetric] = {}
        """(key, *label names, *label values) of each call -> its handle, rejected calls
        included: the recording API's fast path."""
        self._rejected_kept = 0
        self._seen: dict[BoundMetric, tuple[Any, float]] = {}  # retire_idle(): state, and since when
        self._lock = threading.Lock()
        self._instruments: Mapping[str, Any] = {}
        self._register: Callable[[Any, Mapping[str, str]], None] | None = None
        self._forget: Callable[[Any], None] | None = None
        self._release_failed = False
        self._exemplar_filter = "always_off"
        self._keep_exemplars = False

    def connect(
        self,
        instruments: Mapping[str, Any],
        register: Callable[[Any, Mapping[str, str]], None] | None,
        exemplar_filter: str,
        keep_exemplars: bool = False,
        forget: Callable[[Any], None] | None = None,
    ) -> None:
        """Record through the SDK's ``instruments`` (one per key): each series, those that
        exist included, is handed to ``register``, and histograms offer exemplars unless
        ``exemplar_filter`` is always_off; ``register`` None (no SDK reader, or one that
        reads every process's sum instead) registers nothing and offers no exemplar to the
        SDK. ``keep_exemplars`` (/metrics is served from these handles): histograms keep the
        last exemplar of each bucket for it, under the same filter. ``forget`` releases the
        SDK's state of an instrument's series that have no handle (after a retirement)."""
        with self._lock:
            self._instruments, self._register, self._exemplar_filter = instruments, register, exemplar_filter
            self._forget = forget if register is not None else None
            self._keep_exemplars = keep_exemplars
            for key, series in self._series.items():
                for handle in series.values():
                    self._introduce(key, handle)

    def _introduce(self, key: str, handle: BoundMetric) -> None:
        """Tell the SDK about a series (the lock held)."""
        if self._register is not None:
            self._register(self._instruments[key], handle.attributes)
        if isinstance(handle, HistogramHandle):
            handle.use_exemplars(*self._exemplar_settings(key))

    def _exemplar_settings(self, key: str) -> tuple[Exemplars | None, bool, bool]:
        """A histogram's path to the exemplar reservoirs, whether every observation takes
        it (OTEL_METRICS_EXEMPLAR_FILTER=always_on), and whether the handle keeps exemplars
        for /metrics."""
        on = self._exemplar_filter != "always_off"
        offer = self._register is not None and on
        exemplars = _exemplar_path(self._instruments[key]) if offer else None
        keep = self._keep_exemplars and on
        return exemplars, (offer or keep) and self._exemplar_filter == "always_on", keep

    def series(self, key: str) -> Mapping[tuple[str, ...], BoundMetric]:
        """``key``'s series (read only): label values in the spec's order -> handle."""
        return self._series[key]

    def count(self, key: str) -> int:
        """How many label sets ``key`` has (what the cardinality limit counts)."""
        return len(self._series[key])

    def bind(self, key: str, labels: dict[str, Any]) -> BoundMetric:
        """The handle of ``key`` and ``labels``, checked; in production mode a
        RejectedHandle for bad input (strict mode raises). Never raises anything but a
        MeasurementError, whatever the arguments."""
        try:
            s = find_spec(self.plane, self.specs, key)
            clean = check_labels(s, labels)
            values = tuple([clean[name] for name in s.labels])  # the series' key
            with self._lock:
                series = self._series[s.key]
                handle = series.get(values)
                if handle is None:
                    if len(series) >= self._limit:
                        raise self._over_limit(s, clean)
                    handle = self._new_handle(s, values)
                    series[values] = handle
                    self._introduce(s.key, handle)
                call = plain_call((key, *labels, *labels.values()))
                if call and all(type(part) is str for part in call):  # plain strings: safe to hash
                    self.calls[call] = handle
            return handle
        except Exception as error:  # noqa: BLE001 - hostile arguments included
            measurement_error = error if isinstance(error, MeasurementError) else _input_error(key, error)
            if self._policy.strict:
                raise measurement_error from (None if error is measurement_error else error)
            rejected = RejectedHandle(measurement_error, self._policy)
            self._keep_rejected(key, labels, rejected)
            return rejected

    def _new_handle(self, s: MetricSpec, key: tuple[str, ...]) -> BoundMetric:
        kind = self._handle_types[s.kind]
        handle: BoundMetric = (
            kind(s, key, self._policy, None) if s.kind is Kind.HISTOGRAM else kind(s, key, self._policy)
        )
        if self._files is not None:
            self._files.attach(handle)
        return handle

    def _over_limit(self, s: MetricSpec, labels: dict[str, str]) -> CardinalityLimitError:
        limit = self._limit
        return CardinalityLimitError(
            lambda: (
                f"{s.key}: label set {safe_repr(labels, 200)} would exceed the cardinality limit of {limit} "
                "(TRADING_TELEMETRY_CARDINALITY_LIMIT)"
            ),
            metric=s.key,
            value=labels,
        )

    def _keep_rejected(self, key: object, labels: dict[str, Any], rejected: RejectedHandle) -> None:
        """Cache a rejected call, so that repeating it costs a lookup and a count; only
        plain-string keys and labels (safe to hash), and at most REJECTED_KEPT of them."""
        if self._rejected_kept >= REJECTED_KEPT or type(key) is not str:
            return
        try:
            if all(type(k) is str and _cacheable(v) for k, v in labels.items()):
                with self._lock:
                    self.calls[(key, *labels, *labels.values())] = rejected
                    self._rejected_kept += 1
        except Exception:  # noqa: BLE001 - not cached, still rejected
            pass

    def retire(self, key: str | None, labels: Mapping[str, object]) -> list[BoundMetric]:
        """Remove every series of ``key`` (every metric of the plane when None) whose labels
        include all of ``labels``: from the readers' view, the cardinality count and the
        call cache; each removed handle becomes inert (``retire_handle``). The removed
        handles; a MeasurementError (raised, whatever the mode) for a call that names no
        metric and no label, an unknown key, a label no metric concerned has or a value
        that could never be a label's, and in multiprocess mode."""
        matches = self._retire_matches(key, labels)
        with self._lock:
            return self._remove([(name, values) for name, wanted in matches for values in self._series[name]
                                 if _has(values, wanted)])  # fmt: skip

    def _remove(self, doomed: list[tuple[str, tuple[str, ...]]]) -> list[BoundMetric]:
        """Remove these (key, label values) series and the calls cached to them (the lock held)."""
        removed = []
        for name, values in doomed:
            handle = self._series[name].pop(values)
            retire_handle(handle)
            removed.append(handle)
        if removed:
            calls = self.calls
            for call in [call for call, handle in calls.items() if handle.retired]:
                del calls[call]
            if self._forget is not None:
                for name in dict.fromkeys(handle.spec.key for handle in removed):
                    self._release(name)
        return removed

    def _release(self, key: str) -> None:
        """The SDK's state of ``key``'s removed series released (the lock held). Only memory
        is at stake: a failure (an SDK whose private members changed) is logged once, and the
        retirement stands."""
        try:
            assert self._forget is not None
            self._forget(self._instruments[key])
        except Exception as error:  # noqa: BLE001 - the series are removed either way
            if not self._release_failed:
                self._release_failed = True
                logging.getLogger("trading_telemetry").warning(
                    "%s: the SDK's state of retired series of %s is not released (%s: %s); they are removed, "
                    "and keep their memory in the SDK",
                    self.plane.value,
                    key,
                    type_name(error),
                    safe_str(error),
                )

    def retire_idle(self, older_than: float, now: float) -> list[BoundMetric]:
        """Retire the series whose state (a counter's total, a gauge's value, a histogram's
        count and sum) has not changed since a call at least ``older_than`` seconds before
        ``now``: each call notes every series' state and since when it has been so, so that
        recording pays nothing for it. The removed handles."""
        if self._files is not None:
            raise RetireUnsupportedError(
                "retire_idle: not supported in multiprocess mode (TRADING_TELEMETRY_MULTIPROCESS_DIR)",
                metric="retire_idle",
            )
        with self._lock:
            seen, doomed = self._seen, []
            self._seen = {}
            for name, series in self._series.items():
                for values, handle in series.items():
                    state = _state_of(handle)
                    before = seen.get(handle)
                    since = before[1] if before is not None and before[0] == state else now
                    if now - since >= older_than:
                        doomed.append((name, values))
                    else:
                        self._seen[handle] = (state, since)
            return self._remove(doomed)

    def _retire_matches(self, key: str | None, labels: Mapping[str, object]) -> list[tuple[str, list[tuple[int, str]]]]:
        """The metrics ``retire`` looks at, each with the (label position, value) pairs a
        series must have; a MeasurementError for a bad call."""
        shown = key if type(key) is str else "retire"
        if self._files is not None:
            raise RetireUnsupportedError(
                lambda: f"{shown}: retire() is not supported in multiprocess mode (TRADING_TELEMETRY_MULTIPROCESS_DIR)",
                metric=shown,
            )
        if key is None and not labels:
            raise InvalidInputError(
                f"{self.plane.value}: retire() needs a metric key, a label=value, or both", metric=shown
            )
        specs = [find_spec(self.plane, self.specs, key)] if key is not None else list(self.specs.values())
        matches = []
        for s in specs:
            if all(name in s.labels for name in labels):
                wanted = [(s.labels.index(name), label_value(s, name, value)) for name, value in labels.items()]
                matches.append((s.key, wanted))
        name = next((name for name in labels if all(name not in s.labels for s in specs)), None)
        if not matches and name is not None:
            where = (
                f"{key} has labels {', '.join(specs[0].labels) or 'none'}"
                if key is not None
                else (f"no metric of {self.plane.value} has it")
            )
            raise LabelError(
                lambda: f"{shown}: retire() by label {safe_repr(name, 40)}={safe_repr(labels[name])}: {where}",
                reason="unknown_label",
                metric=shown,
                label=safe_repr(name, 40),
                value=labels[name],
            )
        return matches

    def after_fork(self) -> None:
        """In a forked child: every series starts from zero in this process, with new locks
        (in multiprocess mode, its record is made at its first store); the SDK's
        instruments are the parent's until ``connect`` is called again."""
        self._lock = threading.Lock()
        self._register = None
        self._forget = None
        self._instruments = {}
        self._keep_exemplars = False
        for series in self._series.values():
            for handle in series.values():
                handle.after_fork()
                if isinstance(handle, HistogramHandle):
                    handle.use_exemplars(None, False)  # not the parent's instruments
                if self._files is not None:
                    self._files.detach(handle)
