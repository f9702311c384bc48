"""The recording API: a plane's metrics object, handing out bound handles.

``metrics.inc(key, **labels)`` is a dict lookup of the call's key and labels, then the
handle's own fast path (``_handles``). Everything else (the key, the labels, the
cardinality limit) is checked off the hot path, when a label set is first seen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation
from opentelemetry.trace import Tracer

from trading_telemetry._checks import MAX_LABEL_VALUE_LENGTH, check_labels, find_spec
from trading_telemetry._drops import DROPPED_HELP, DROPPED_METRIC, DropPolicy
from trading_telemetry._fork import reset_handle
from trading_telemetry._handles import (
    BoundMetric,
    CounterHandle,
    Exemplars,
    GaugeHandle,
    HistogramHandle,
    RejectedHandle,
)
from trading_telemetry._safe import safe_repr, safe_str, type_name
from trading_telemetry._version import __version__
from trading_telemetry.catalog import Kind, MetricSpec, Plane, plane_specs
from trading_telemetry.errors import CardinalityLimitError, InvalidInputError, MeasurementError

if TYPE_CHECKING:  # built when a plane is set up (the SDK, and prometheus_client for /metrics)
    from trading_telemetry._exposition import PlaneExposition
    from trading_telemetry._multiprocess import PlaneFiles
    from trading_telemetry._sdk import PlaneSDK

__all__ = ["BoundMetric", "PlaneMetrics"]

REJECTED_KEPT = 1024
"""Most rejected calls a plane caches (a repeated bad call then costs a lookup)."""


_NONE = type(None)

HANDLES: dict[Kind, Any] = {Kind.COUNTER: CounterHandle, Kind.GAUGE: GaugeHandle, Kind.HISTOGRAM: HistogramHandle}


def _builtin(kind: type) -> bool:
    """Whether ``kind`` is int, float, bool or NoneType: by identity, as a class's metaclass
    could make it compare equal to one."""
    return kind is int or kind is float or kind is bool or kind is _NONE


UPTIME_METRIC = "trading_telemetry_uptime"
"""Self-metric gauge (exposed as ``..._seconds``, label ``service``): seconds since the
plane started. It moves while the plane runs, on every path: the liveness the
``PlaneStopped`` alert watches."""

UPTIME_HELP = "Seconds since the plane started: it keeps moving while the plane runs (its liveness)"


def _cacheable(value: object) -> bool:
    """Whether a rejected label value may key the call cache: a short str, or a number,
    bool or None, whose hash and equality are the built-in ones."""
    kind = type(value)
    return (kind is str and len(value) <= MAX_LABEL_VALUE_LENGTH) or _builtin(kind)  # type: ignore[arg-type]


def _plain_call(call: tuple[Any, ...]) -> tuple[Any, ...]:
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


def _exemplar_path(histogram: Histogram) -> Exemplars:
    def offer(value: float, attributes: Mapping[str, str]) -> None:
        if value >= 0:  # the SDK's Histogram.record takes no negative value
            histogram.record(value, attributes)

    return offer


class PlaneMetrics:
    """The metrics of one plane, as the original monitoring specification's API records them.

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
        from trading_telemetry._aggregation import register_series

        self._register_series = register_series
        self.plane: Plane = sdk.plane
        self._specs = plane_specs(self.plane)
        # key -> {label values in the spec's order: handle}; shared with the histogram views.
        self._series = sdk.series
        self._policy = DropPolicy(strict=sdk.config.strict, service=self.plane.value, keys=self._specs)
        self.multiprocess: PlaneFiles | None = None
        """The plane's files in TRADING_TELEMETRY_MULTIPROCESS_DIR, or None (one process)."""
        self._handle_types = HANDLES
        if sdk.config.multiprocess_dir and not sdk.config.sdk_disabled:
            from trading_telemetry import _multiprocess  # here: one process needs none of it

            try:
                directory = _multiprocess.prepare_directory(sdk.config)
            except BaseException:
                sdk.shutdown()
                raise
            self.multiprocess = _multiprocess.PlaneFiles(
                directory, self.plane.value, self._specs, sdk.config.multiprocess_gauge
            )
            self._policy.sink = self.multiprocess.count_drop
            self._handle_types = _multiprocess.HANDLES
        self.exposition: PlaneExposition | None = None
        """What ``/metrics`` serves: rendered from the handles (in multiprocess mode, from
        every process's files); None when the ``prometheus`` exporter is off."""
        self.tracer: Tracer | None = None
        """The plane's tracer, or None when tracing is off (no span exporter configured)."""
        self._use(sdk)
        self._limit = sdk.config.cardinality_limit
        # (key, *label items) of each call -> its handle. Rejected calls are kept too (so a
        # repeated bad call costs a lookup), but at most REJECTED_KEPT of them.
        self._cache: dict[tuple[Any, ...], BoundMetric] = {}
        self._rejected_kept = 0
        # OrderLifecycle's shared handle sets, by (strategy, symbol, direction, order type).
        self._order_handles: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()

    def _use(self, sdk: PlaneSDK) -> None:
        """Record through ``sdk``: its instruments, its exposition, its tracer."""
        from trading_telemetry._sdk import METER_NAME

        self._sdk = sdk
        meter = sdk.meter_provider.get_meter(METER_NAME, __version__)
        self._instruments: dict[str, Any] = {}
        for s in self._specs.values():
            self._create_instrument(meter, s)
        meter.create_observable_counter(
            DROPPED_METRIC,
            callbacks=[self._policy.observations],
            unit="{measurement}",
            description=DROPPED_HELP,
        )
        meter.create_observable_gauge(
            UPTIME_METRIC, callbacks=[self._uptime_observations], unit="s", description=UPTIME_HELP
        )
        self.exposition = self._exposition(sdk) if sdk.pull else None
        provider = sdk.tracer_provider
        self.tracer = provider.get_tracer(METER_NAME, __version__) if provider else None

    def _exposition(self, sdk: PlaneSDK) -> PlaneExposition:
        from trading_telemetry._exposition import PlaneExposition
        from trading_telemetry._sdk import build_resource

        files = self.multiprocess
        resource = sdk.resource
        if files is not None:  # the sum of the processes: the plane's own instance, no pid
            resource = build_resource(self.plane, sdk.config)
        return PlaneExposition(
            self._specs,
            self._series,
            resource=dict(resource.attributes) if resource is not None else {},
            dropped=self._policy.counts,
            dropped_name=DROPPED_METRIC,
            dropped_help=DROPPED_HELP,
            service=self.plane.value,
            uptime=self.uptime,
            uptime_name=UPTIME_METRIC + "_seconds",
            uptime_help=UPTIME_HELP,
            source=files.merged if files is not None else None,
        )

    def _after_fork(self) -> None:
        """In a forked child (``_fork``): this process's counts start from zero, with new
        locks; in multiprocess mode they go to a file of this process; the SDK is built
        anew (exporters, reader threads, a resource with this process's pid)."""
        from trading_telemetry._aggregation import renew_provider_lock
        from trading_telemetry._sdk import build_sdk

        self._lock = threading.Lock()
        self._policy.after_fork()
        files = self.multiprocess
        if files is not None:
            files.after_fork()
        for series in self._series.values():
            for handle in series.values():
                reset_handle(handle)
                if files is not None:
                    handle._mv = files.unattached(handle)
        inherited = self._sdk
        inherited.disown()
        renew_provider_lock()
        self._use(build_sdk(self.plane, inherited.config, series=inherited.series, instrument_asyncio=False))
        for s in self._specs.values():
            for handle in self._series[s.key].values():
                if self._sdk.has_readers:
                    self._register_series(self._instruments[s.key], handle.attributes)
                if s.kind is Kind.HISTOGRAM:
                    handle._exemplars, handle._every = self._exemplar_settings(s)

    def _create_instrument(self, meter: Meter, s: MetricSpec) -> None:
        """The metric's synchronous instrument. Its view's aggregation reads the handles;
        the instrument itself sees one measurement per series (``register_series``) and, for
        histograms, the observations that offer exemplars."""
        if s.kind is Kind.COUNTER:
            self._instruments[s.key] = meter.create_counter(s.name, unit=s.unit, description=s.description)
        elif s.kind is Kind.GAUGE:
            self._instruments[s.key] = meter.create_gauge(s.name, unit=s.unit, description=s.description)
        else:
            self._instruments[s.key] = meter.create_histogram(s.name, unit=s.unit, description=s.description)

    def _new_handle(self, s: MetricSpec, key: tuple[str, ...]) -> BoundMetric:
        kind = self._handle_types[s.kind]
        if s.kind is Kind.HISTOGRAM:
            exemplars, every = self._exemplar_settings(s)
            handle: BoundMetric = kind(s, key, self._policy, exemplars, every)
        else:
            handle = kind(s, key, self._policy)
        if self.multiprocess is not None:
            handle._mv = self.multiprocess.attach(handle)  # type: ignore[attr-defined]
        return handle

    def _exemplar_settings(self, s: MetricSpec) -> tuple[Exemplars | None, bool]:
        """A histogram handle's path to the exemplar reservoirs, and whether every
        observation takes it (OTEL_METRICS_EXEMPLAR_FILTER=always_on)."""
        exemplar_filter = self._sdk.config.exemplar_filter
        offer = self._sdk.has_readers and exemplar_filter != "always_off"  # the pull path carries none
        exemplars = _exemplar_path(self._instruments[s.key]) if offer else None
        return exemplars, offer and exemplar_filter == "always_on"

    @property
    def strict(self) -> bool:
        return self._policy.strict

    @property
    def sdk(self) -> PlaneSDK:
        return self._sdk

    # The call cache is keyed by (key, *label names, *label values). Only plain strings (and
    # the built-in int, float, bool, None of a cached rejected call) may key it: any other
    # object could pass for a cached string through its __eq__ and __hash__, so a call made
    # with one is first rewritten by _plain_call (a str subclass gives its characters), and
    # one that holds anything else is judged by _bind. A call of plain strings costs a type
    # check per part and one dict lookup.

    def inc(self, key: str, value: float = 1, /, **labels: str) -> None:
        """Add ``value`` (default 1) to the counter ``key``."""
        call = (key, *labels, *labels.values())
        for part in call:
            if type(part) is not str:
                call = _plain_call(call)
                break
        try:
            handle = self._cache[call]
        except KeyError:
            handle = self._bind(key, labels)
        handle.inc(value)

    def observe(self, key: str, value: float, /, **labels: str) -> None:
        """Record ``value`` in the histogram ``key``."""
        call = (key, *labels, *labels.values())
        for part in call:
            if type(part) is not str:
                call = _plain_call(call)
                break
        try:
            handle = self._cache[call]
        except KeyError:
            handle = self._bind(key, labels)
        handle.observe(value)

    def set(self, key: str, value: float, /, **labels: str) -> None:
        """Set the gauge ``key`` to ``value``."""
        call = (key, *labels, *labels.values())
        for part in call:
            if type(part) is not str:
                call = _plain_call(call)
                break
        try:
            handle = self._cache[call]
        except KeyError:
            handle = self._bind(key, labels)
        handle.set(value)

    def bind(self, key: str, /, **labels: str) -> BoundMetric:
        """The metric ``key`` bound to ``labels``, for hot loops.

        In strict mode a bad key or label set raises here; in production mode the
        returned handle drops (and counts) every measurement instead.
        """
        return self._bind(key, labels)

    def _bind(self, key: str, labels: dict[str, Any]) -> BoundMetric:
        """The handle of ``key`` and ``labels``, checked; in production mode a
        RejectedHandle for bad input (strict mode raises). Never raises anything but a
        MeasurementError, whatever the arguments."""
        try:
            s = find_spec(self.plane, self._specs, key)
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
                    if self._sdk.has_readers:
                        self._register_series(self._instruments[s.key], handle.attributes)
                call = _plain_call((key, *labels, *labels.values()))
                if call and all(type(part) is str for part in call):  # plain strings: safe to hash
                    self._cache[call] = handle
            return handle
        except Exception as error:  # noqa: BLE001 - hostile arguments included
            measurement_error = error if isinstance(error, MeasurementError) else _input_error(key, error)
            if self._policy.strict:
                raise measurement_error from (None if error is measurement_error else error)
            rejected = RejectedHandle(measurement_error, self._policy)
            self._keep_rejected(key, labels, rejected)
            return rejected

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
                    self._cache[(key, *labels, *labels.values())] = rejected
                    self._rejected_kept += 1
        except Exception:  # noqa: BLE001 - not cached, still rejected
            pass

    def count_drop(self, key: str, reason: str) -> None:
        """Count a figure of ``key`` that could not be computed (``reason``: ``no_rate``,
        ``no_mark``, ...) in the drop self-metric; the caller logs it. Never raises."""
        self._policy.count(key, reason)

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
        health = {
            "status": status,
            "plane": self.plane.value,
            "uptime_seconds": self.uptime(),
            "exporters": exporters,
            "dropped_measurements": self._policy.dropped,
            "strict": self._policy.strict,
        }
        if self.multiprocess is not None:
            health["multiprocess"] = self.multiprocess.state()
            if self.multiprocess.failed and status == "ok":  # this process's counts are not in the sum
                health["status"] = "degraded"
        return health

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Push what has been recorded now, without waiting for the export interval."""
        from opentelemetry.sdk.metrics import MeterProvider

        provider = self._sdk.meter_provider
        return bool(provider.force_flush(timeout_millis)) if isinstance(provider, MeterProvider) else True

    def uptime(self) -> float:
        """Seconds since the plane started (monotonic clock)."""
        return round(time.monotonic() - self._sdk.started, 3)

    def _uptime_observations(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.uptime(), {"service": self.plane.value})]

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush push exporters and stop the plane's SDK (idempotent), waiting at most
        ``timeout`` seconds (default TRADING_TELEMETRY_SHUTDOWN_TIMEOUT); whether it
        finished in time."""
        thread = self._sdk.shutdown()
        if thread is None:
            return True
        thread.join(self._sdk.config.shutdown_timeout_ms / 1000 if timeout is None else timeout)
        return not thread.is_alive()

    def __repr__(self) -> str:
        return f"<PlaneMetrics {self.plane.value} exporters={list(self._sdk.exporter_states())}>"
