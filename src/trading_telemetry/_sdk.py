"""One plane's OpenTelemetry SDK set-up: Resource, views, readers and exporters."""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import MeterProvider as APIMeterProvider
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    TraceBasedExemplarFilter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ConsoleMetricExporter,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import (
    Aggregation,
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.resources import Resource

from trading_telemetry import _exporter_logs
from trading_telemetry._aggregation import (
    CellExponentialAggregation,
    CellHistogramAggregation,
    CellLastValueAggregation,
    CellSumAggregation,
    disown_reader,
    exporter_preferences,
)
from trading_telemetry._fork import child_process
from trading_telemetry.catalog import SERVICE_LABEL, Kind, MetricSpec, Plane
from trading_telemetry.config import SETTINGS, TelemetryConfig, unicode_problem, warn_once
from trading_telemetry.errors import ConfigError

if TYPE_CHECKING:  # the tracing SDK is imported when a plane first exports spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from trading_telemetry._series import SeriesReader, SeriesStore

METER_NAME = "trading_telemetry"
_EXEMPLAR_FILTERS: dict[str, Callable[[], Any]] = {
    "trace_based": TraceBasedExemplarFilter,
    "always_on": AlwaysOnExemplarFilter,
    "always_off": AlwaysOffExemplarFilter,
}
logger = logging.getLogger("trading_telemetry")


def _shut_down(providers: list[MeterProvider | TracerProvider]) -> None:
    """Each provider's shutdown: the span processors' and the periodic readers' last
    export (attempted once), then the exporters'."""
    for provider in providers:
        try:
            provider.shutdown()
        except Exception:
            logger.warning("shutting down %s failed", type(provider).__name__, exc_info=True)


DEFAULT_NAMESPACE = "trading"


def build_resource(plane: Plane, config: TelemetryConfig, per_process: bool = False) -> Resource:
    """The plane's Resource. ``service.name`` is OTEL_SERVICE_NAME or the plane;
    ``service.instance.id`` is stable across restarts: host and plane (or the configured
    one); with ``per_process`` (a worker among several processes), then ``/`` and the pid.

    Every value is exported (``target_info``, OTLP), so each is checked here as well as
    where the environment is read (a TelemetryConfig may be built in code): one that is
    not valid Unicode text is warned about once and left out."""
    from importlib.metadata import version

    attributes: dict[str, str] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": version("opentelemetry-sdk"),
        "service.namespace": DEFAULT_NAMESPACE,
        "service.instance.id": f"{socket.gethostname()}/{plane.value}",
    }
    for key, value in config.resource_attributes.items():
        problem = unicode_problem(str(key)) or unicode_problem(str(value))
        if problem:
            warn_once(f"TelemetryConfig.resource_attributes[{key!r}]", str(value), f"is {problem}; attribute ignored")
        else:
            attributes[key] = value
    if per_process:
        attributes["service.instance.id"] = f"{attributes['service.instance.id']}/{os.getpid()}"
    attributes["service.name"] = plane.value
    if config.service_name:
        problem = unicode_problem(config.service_name)
        if problem:
            warn_once("TelemetryConfig.service_name", config.service_name, f"is {problem}; the plane's name is used")
        else:
            attributes["service.name"] = config.service_name
    return Resource(attributes)


def build_views(specs: Mapping[str, MetricSpec], store: SeriesReader) -> list[View]:
    """One view per catalog metric: its label allow-list (plus ``service``), for
    histograms its explicit bucket boundaries or, with native buckets (``spec.native``),
    the base-2 exponential aggregation, and an aggregation that reads the series from
    ``store`` (``_aggregation``)."""
    views = []
    for s in specs.values():
        aggregation: Aggregation
        if s.kind is Kind.COUNTER:
            aggregation = CellSumAggregation(store, s.key, s.labels)
        elif s.kind is Kind.GAUGE:
            aggregation = CellLastValueAggregation(store, s.key, s.labels)
        elif s.native:
            aggregation = CellExponentialAggregation(store, s.key, s.labels)
        else:
            aggregation = CellHistogramAggregation(s.buckets or (), store, s.key, s.labels)
        views.append(
            View(
                instrument_name=s.name,
                meter_name=METER_NAME,
                attribute_keys={*s.labels, SERVICE_LABEL},
                aggregation=aggregation,
                **_NO_SDK_LIMIT,
            )
        )
    return views


_NO_SDK_LIMIT: dict[str, Any] = (
    {"aggregation_cardinality_limit": sys.maxsize}
    if "aggregation_cardinality_limit" in inspect.signature(View).parameters
    else {}
)
"""From SDK 1.45.2 a view's series beyond a cardinality limit (2,000 by default, or the
reader's) are merged into one ``otel.metric.overflow`` point, which no handle reads: the
series past it would leave the push path silently. Our store enforces the plane's own
limit (``TRADING_TELEMETRY_CARDINALITY_LIMIT``) and counts each label set it refuses, and
``retire`` releases the SDK's aggregations of the series it removes, so the SDK's limit is
lifted on our views."""


class TrackedExporter(MetricExporter):
    """Wraps a push exporter and remembers how its exports went, for /health."""

    def __init__(self, name: str, inner: MetricExporter, target: str = "") -> None:
        super().__init__(**exporter_preferences(inner))
        self.name = name
        self.target = target
        self._inner = inner
        self._lock = threading.Lock()
        self.exports = 0
        self.consecutive_failures = 0
        self.last_success: float | None = None
        self.last_failure: float | None = None
        self._disowned = False

    def disown(self) -> None:
        """In a forked child: the exporter is the parent's (its connections too); it
        sends nothing from here, and is never shut down from here."""
        self._disowned = True

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        if self._disowned:
            return MetricExportResult.SUCCESS
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception:  # noqa: BLE001 - a failed export is a state, not a crash
            result = MetricExportResult.FAILURE
        with self._lock:
            self.exports += 1
            if result is MetricExportResult.SUCCESS:
                self.consecutive_failures = 0
                self.last_success = time.time()
            else:
                self.consecutive_failures += 1
                self.last_failure = time.time()
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True if self._disowned else self._inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if not self._disowned:
            self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)

    def state(self) -> dict[str, Any]:
        with self._lock:
            if self.consecutive_failures:
                state = "failing"
            elif self.exports:
                state = "ok"
            else:
                state = "pending"
            return {
                "state": state,
                "target": self.target,
                "exports": self.exports,
                "consecutive_failures": self.consecutive_failures,
                "last_success_unix": self.last_success,
                "last_failure_unix": self.last_failure,
            }


def build_tracer_provider(
    config: TelemetryConfig, resource: Resource, span_exporters: Sequence[SpanExporter]
) -> TracerProvider | None:
    """The plane's TracerProvider, or None when no span would go anywhere (then
    ``traced`` does not create spans at all)."""
    if not span_exporters and not config.traces_exporters:
        return None
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

    processors: list[SpanProcessor] = [SimpleSpanProcessor(e) for e in span_exporters]
    for name in config.traces_exporters:
        exporter = _otlp_exporter(config, "traces") if name == "otlp" else ConsoleSpanExporter()
        processors.append(BatchSpanProcessor(exporter))
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)  # _state bounds the exit
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


_OTLP_EXPORTERS = {
    ("metrics", "grpc"): ("opentelemetry.exporter.otlp.proto.grpc.metric_exporter", "OTLPMetricExporter"),
    ("metrics", "http/protobuf"): ("opentelemetry.exporter.otlp.proto.http.metric_exporter", "OTLPMetricExporter"),
    ("traces", "grpc"): ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "OTLPSpanExporter"),
    ("traces", "http/protobuf"): ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "OTLPSpanExporter"),
}


# OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, as the specification defines it: the
# instrument kinds that export DELTA under each preference; every other kind CUMULATIVE.
_DELTA_KINDS: dict[str, tuple[type, ...]] = {
    "cumulative": (),
    "delta": (Counter, ObservableCounter, Histogram),
    "lowmemory": (Counter, Histogram),
}


def otlp_temporality(preference: str) -> dict[type, AggregationTemporality]:
    """The OTLP metrics exporter's temporality per instrument kind under ``preference``
    (``cumulative``, ``delta`` or ``lowmemory``). Given to the exporter explicitly, so
    that the configuration decides, not the process's environment, which the SDK's
    exporters also read (and only there)."""
    delta = _DELTA_KINDS[preference]
    return {
        kind: AggregationTemporality.DELTA if kind in delta else AggregationTemporality.CUMULATIVE
        for kind in (Counter, UpDownCounter, Histogram, ObservableCounter, ObservableUpDownCounter, ObservableGauge)
    }


def otlp_histogram_aggregation(name: str) -> dict[type, Aggregation]:
    """The OTLP metrics exporter's aggregation of histograms without a catalog view (such
    as the asyncio instrumentation's) under
    OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION ``name``; catalog histograms
    follow their views, exponential when the setting asks for every histogram (``_plane``
    gives them all native buckets then). Given explicitly, as the temporality."""
    if name == "base2_exponential_bucket_histogram":
        return {Histogram: ExponentialBucketHistogramAggregation()}
    return {Histogram: ExplicitBucketHistogramAggregation()}


def _otlp_exporter(config: TelemetryConfig, signal: str) -> Any:
    """The OTLP exporter for ``signal`` (``metrics`` or ``traces``) over its configured
    protocol; grpc and http are imported only when used."""
    options: dict[str, Any] = {}
    if signal == "metrics":
        protocol, url = config.otlp_protocol, config.otlp_metrics_url
        headers, timeout_ms = config.otlp_headers, config.otlp_timeout_ms
        options["preferred_temporality"] = otlp_temporality(config.otlp_temporality)
        options["preferred_aggregation"] = otlp_histogram_aggregation(config.otlp_histogram_aggregation)
    else:
        protocol, url = config.otlp_traces_protocol, config.otlp_traces_url
        headers, timeout_ms = config.otlp_traces_headers, config.otlp_traces_timeout_ms
    module, name = _OTLP_EXPORTERS[(signal, protocol)]
    exporter = getattr(importlib.import_module(module), name)
    _exporter_logs.throttle()
    return exporter(endpoint=url, headers=dict(headers), timeout=timeout_ms / 1000, **options)


def _require(extra: str, module: str, setting: str, value: str) -> None:
    """Import ``module``, which the ``extra`` installs; without it, the ConfigError naming
    the setting that asked for it and the install command. Called when a plane is set up,
    before anything is built, so that a missing extra is a set-up mistake."""
    try:
        importlib.import_module(module)
    except ImportError as error:
        variables = " / ".join(next(s.variables for s in SETTINGS if s.field == setting))
        raise ConfigError(
            variables,
            value,
            f"needs the {extra} extra, which is not installed ({error}): pip install 'trading-telemetry[{extra}]'",
        ) from error


def require_extras(plane: Plane, config: TelemetryConfig) -> None:
    """Check that the optional packages the configuration asks for are installed: the grpc
    exporters (the ``grpc`` extra) and the asyncio instrumentation (``asyncio``)."""
    if "otlp" in config.metrics_exporters and config.otlp_protocol == "grpc":
        _require("grpc", _OTLP_EXPORTERS[("metrics", "grpc")][0], "otlp_protocol", "grpc")
    if "otlp" in config.traces_exporters and config.otlp_traces_protocol == "grpc":
        _require("grpc", _OTLP_EXPORTERS[("traces", "grpc")][0], "otlp_traces_protocol", "grpc")
    if config.asyncio_plane == plane.value:
        _require("asyncio", "opentelemetry.instrumentation.asyncio", "asyncio_plane", plane.value)


@dataclass
class PlaneSDK:
    """The SDK objects of one plane, and what /health reports about them."""

    plane: Plane
    config: TelemetryConfig
    meter_provider: APIMeterProvider
    # Whether /metrics is served (the `prometheus` exporter): rendered from the handles.
    pull: bool = False
    resource: Resource | None = None
    pushers: list[TrackedExporter] = field(default_factory=list)
    tracer_provider: TracerProvider | None = None
    # Whether an SDK reader exists (push exporters, test readers): then each series is
    # registered with the SDK, and histograms offer exemplars (not where the readers read
    # every process's sum: TRADING_TELEMETRY_MULTIPROCESS_PUSH=sum).
    has_readers: bool = False
    started: float = field(default_factory=time.monotonic)
    stopped: bool = False
    # Whether this plane turned on the asyncio instrumentation (and so turns it off).
    asyncio_instrumented: bool = False
    # The periodic readers of the push exporters.
    readers: list[PeriodicExportingMetricReader] = field(default_factory=list)

    def shutdown(self) -> threading.Thread | None:
        """Stop the plane: undo the asyncio instrumentation now, then flush and shut the
        providers down in a daemon thread, returned for the caller to join with its
        deadline (an exporter blocked on an unanswering Collector cannot hold the
        process: the thread is abandoned, and dies with the interpreter). Idempotent."""
        if self.stopped:
            return None
        self.stopped = True
        if self.asyncio_instrumented:
            from opentelemetry.instrumentation.asyncio import AsyncioInstrumentor

            AsyncioInstrumentor().uninstrument()
            self.asyncio_instrumented = False
        stoppable: list[MeterProvider | TracerProvider] = [p for p in (self.tracer_provider,) if p is not None]
        if isinstance(self.meter_provider, MeterProvider):
            stoppable.append(self.meter_provider)
        if not stoppable:
            return None
        thread = threading.Thread(
            target=_shut_down, args=(stoppable,), name=f"trading-telemetry-{self.plane.value}-shutdown", daemon=True
        )
        thread.start()
        return thread

    def disown(self) -> None:
        """In a forked child: these SDK objects are the parent's. Their exporters send
        nothing from here, their readers' threads (started again by the SDK's own fork
        hooks) stop at once, and they are never shut down from here."""
        self.stopped = True
        for pusher in self.pushers:
            pusher.disown()
        for reader in self.readers:
            disown_reader(reader)

    def exporter_states(self) -> dict[str, dict[str, Any]]:
        states: dict[str, dict[str, Any]] = {}
        if self.pull:
            states["prometheus"] = {"state": "stopped" if self.stopped else "ok"}
        for pusher in self.pushers:
            states[pusher.name] = pusher.state()
        return states


def build_sdk(
    store: SeriesStore,
    config: TelemetryConfig,
    extra_readers: Sequence[MetricReader] = (),
    span_exporters: Sequence[SpanExporter] = (),
    instrument_asyncio: bool = True,
    summed: SeriesReader | None = None,
) -> PlaneSDK:
    """The plane's MeterProvider with a view per catalog metric reading ``store``'s series
    (or ``summed``'s: every process's sum, in multiprocess mode when this process pushes
    it), and the readers the configuration asks for, and its TracerProvider;
    ``extra_readers`` and ``span_exporters`` (tests: in-memory ones) are added.

    The resource's ``service.instance.id`` ends with the pid in a worker process (forked,
    or started by multiprocessing) and in multiprocess mode: each process pushes as an
    instance of its own; not in a process that pushes the sum, the plane's one instance."""
    plane = store.plane
    if config.sdk_disabled:
        return PlaneSDK(plane, config, NoOpMeterProvider())
    require_extras(plane, config)
    pull = False
    pushers: list[TrackedExporter] = []
    readers: list[MetricReader] = list(extra_readers)
    periodic: list[PeriodicExportingMetricReader] = []
    for name in config.metrics_exporters:
        if name == "prometheus":
            pull = True  # rendered from the handles by _exposition, not by an SDK reader
            continue
        if name == "otlp":
            pusher = TrackedExporter("otlp", _otlp_exporter(config, "metrics"), config.otlp_metrics_url)
        else:
            pusher = TrackedExporter("console", ConsoleMetricExporter())
        pushers.append(pusher)
        periodic.append(
            PeriodicExportingMetricReader(
                pusher,
                export_interval_millis=config.metric_export_interval_ms,
                export_timeout_millis=config.metric_export_timeout_ms,
            )
        )
    readers += periodic
    own = bool(config.multiprocess_dir) and summed is None  # a process pushing the sum is the plane's instance
    resource = build_resource(plane, config, per_process=own or child_process())
    # No atexit handler of the SDK's own: an unbounded one waits out an unanswering
    # Collector; _state registers one bounded by TRADING_TELEMETRY_SHUTDOWN_TIMEOUT.
    provider = MeterProvider(
        exemplar_filter=_EXEMPLAR_FILTERS[config.exemplar_filter](),
        metric_readers=readers,
        resource=resource,
        views=build_views(store.specs, store if summed is None else summed),
        shutdown_on_exit=False,
    )
    tracer_provider = build_tracer_provider(config, resource, span_exporters)
    instrumented = False
    if config.asyncio_plane == plane.value and instrument_asyncio:
        from opentelemetry.instrumentation.asyncio import AsyncioInstrumentor

        instrumentor = AsyncioInstrumentor()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=provider)
            instrumented = True
        else:
            logger.warning(
                "TRADING_TELEMETRY_ASYNCIO_PLANE=%s has no effect: asyncio is already instrumented (by "
                "opentelemetry-instrument or the application), so coroutine spans and metrics go to the global "
                "providers, not the plane's",
                plane.value,
            )
    has_readers = bool(pushers) or bool(extra_readers)
    return PlaneSDK(
        plane,
        config,
        provider,
        pull,
        resource,
        pushers,
        tracer_provider,
        has_readers,
        asyncio_instrumented=instrumented,
        readers=periodic,
    )
