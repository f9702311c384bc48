"""Building a plane: the one place where its parts are made and joined.

``build_plane`` makes, from the plane's specs and the configuration: the drop policy, the
multiprocess files (when TRADING_TELEMETRY_MULTIPROCESS_DIR is set), the series store, the
SDK (providers, views reading the store, readers, exporters: ``_sdk``), an instrument per
spec (the self-metrics' among them), the /metrics exposition and the tracer; and hands
them to the recording API, ``PlaneMetrics``. A forked child joins the same store to an SDK
of its own (``rebuild_after_fork``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from trading_telemetry import _self_metrics
from trading_telemetry._drops import DropPolicy
from trading_telemetry._recorder import PlaneMetrics
from trading_telemetry._sdk import METER_NAME, PlaneSDK, build_resource, build_sdk
from trading_telemetry._self_metrics import SelfMetric
from trading_telemetry._series import SeriesStore
from trading_telemetry._version import __version__
from trading_telemetry.catalog import SERVICE_LABEL, Kind, MetricSpec, Plane, plane_specs
from trading_telemetry.config import TelemetryConfig
from trading_telemetry.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace.export import SpanExporter

    from trading_telemetry._exposition import PlaneExposition
    from trading_telemetry._multiprocess import PlaneFiles, SummedSeries

__all__ = ["build_plane", "rebuild_after_fork"]


def build_plane(
    plane: Plane,
    config: TelemetryConfig,
    metric_readers: Sequence[MetricReader] = (),
    span_exporters: Sequence[SpanExporter] = (),
) -> PlaneMetrics:
    """The plane's recording API with everything behind it, set up from ``config``;
    ``metric_readers`` and ``span_exporters`` are added to the configured ones."""
    specs = _native(plane_specs(plane), config)
    policy = DropPolicy(strict=config.strict, service=plane.value, keys=specs)
    files = None
    if config.multiprocess_dir and not config.sdk_disabled:
        from trading_telemetry import _multiprocess  # here: one process needs none of it

        directory = _multiprocess.prepare_directory(config)
        files = _multiprocess.PlaneFiles(directory, plane.value, specs, config.multiprocess_gauge)
        policy.sink = files.count_drop
    store = SeriesStore(plane, specs, policy, config.cardinality_limit, files)
    try:
        summed = _summed(files, specs, config)
        sdk = build_sdk(store, config, metric_readers, span_exporters, summed=summed)
    except BaseException:
        if files is not None:
            files.close()
        raise
    metrics = PlaneMetrics(sdk, store, policy, files)
    _join(metrics, summed)
    return metrics


def _native(specs: Mapping[str, MetricSpec], config: TelemetryConfig) -> Mapping[str, MetricSpec]:
    """The plane's specs, every histogram with native buckets when the configuration asks
    for all; refused in multiprocess mode, whose files keep classic buckets only."""
    if config.all_native:
        specs = {k: replace(s, native=True) if s.kind is Kind.HISTOGRAM else s for k, s in specs.items()}
    native = [s.key for s in specs.values() if s.native]
    if native and config.multiprocess_dir:
        raise ConfigError(
            "TRADING_TELEMETRY_MULTIPROCESS_DIR", config.multiprocess_dir,
            f"multiprocess mode keeps classic buckets only, and {native[0]} has native buckets "
            "(TRADING_TELEMETRY_NATIVE_HISTOGRAMS, OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION or the "
            "catalog's native: true): turn them off for this plane, or record in one process",
        )  # fmt: skip
    return specs


def _summed(files: PlaneFiles | None, specs: Mapping[str, MetricSpec], config: TelemetryConfig) -> SummedSeries | None:
    """Every process's sum, for the SDK's views, when this process pushes it
    (TRADING_TELEMETRY_MULTIPROCESS_PUSH=sum); else None."""
    if files is None or config.multiprocess_push != "sum":
        return None
    if config.multiprocess_gauge == "liveall":
        raise ConfigError(
            "TRADING_TELEMETRY_MULTIPROCESS_PUSH", "sum",
            "pushes one series per label set, and TRADING_TELEMETRY_MULTIPROCESS_GAUGE=liveall keeps one per "
            "process: choose mostrecent, livesum, livemax or livemin, or push each process's own (own)",
        )  # fmt: skip
    from trading_telemetry._multiprocess import SummedSeries

    return SummedSeries(files, specs)


def rebuild_after_fork(metrics: PlaneMetrics) -> None:
    """In a forked child: the plane's counts start from zero here, with new locks; in
    multiprocess mode they go to a file of this process; the SDK is built anew (exporters,
    reader threads, a resource with this process's pid) and joined to the same store."""
    from trading_telemetry._aggregation import renew_provider_lock

    metrics.policy.after_fork()
    metrics.after_fork()
    if metrics.multiprocess is not None:
        metrics.multiprocess.after_fork()
    metrics.store.after_fork()
    inherited = metrics.sdk
    inherited.disown()
    renew_provider_lock()
    # A forked child pushes what it records, as an instance of its own, even where its
    # parent pushed every process's sum: the parent still does.
    metrics.sdk = build_sdk(metrics.store, inherited.config, instrument_asyncio=False)
    _join(metrics)


def _join(metrics: PlaneMetrics, summed: SummedSeries | None = None) -> None:
    """Join the plane's store and self-metrics to its SDK: an instrument per spec, the
    series registered with the readers (with ``summed``, those of every process's sum,
    found at the start of each collection), the exposition (when /metrics is served) and
    the tracer."""
    from trading_telemetry._aggregation import forget_series, register_series

    sdk, store = metrics.sdk, metrics.store
    meter = sdk.meter_provider.get_meter(METER_NAME, __version__)
    instruments = {s.key: _instrument(meter, s) for s in store.specs.values()}
    dropped = _self_metrics.dropped(metrics.plane, metrics.policy.counts)
    if summed is not None:

        def refresh() -> None:
            """At the start of a collection (observable callbacks run first): merge the
            files, and register the series seen for the first time."""
            for key, cell in summed.refresh():
                register_series(instruments[key], cell.attributes)

        dropped = _self_metrics.dropped(metrics.plane, lambda: summed.drops, before=refresh)
    self_metrics = [dropped, _self_metrics.uptime(metrics.plane, metrics.uptime)]
    for self_metric in self_metrics:
        _observable(meter, self_metric, metrics.plane.value)
    register = register_series if sdk.has_readers and summed is None else None  # summed: the files' series
    # /metrics served from this process's handles carries their exemplars, when any can be made.
    keep = sdk.pull and metrics.multiprocess is None and _exemplars_possible(sdk)
    store.connect(instruments, register, sdk.config.exemplar_filter, keep_exemplars=keep, forget=forget_series)
    metrics.exposition = _exposition(metrics, sdk, self_metrics) if sdk.pull else None
    provider = sdk.tracer_provider
    metrics.tracer = provider.get_tracer(METER_NAME, __version__) if provider else None


def _exemplars_possible(sdk: PlaneSDK) -> bool:
    """Whether an observation can be offered as an exemplar: always (always_on), or inside a
    recording span, which needs a TracerProvider: the plane's (OTEL_TRACES_EXPORTER) or the
    application's global one, set before the plane is made. Without one, histograms skip the
    span check on every observation."""
    from opentelemetry import trace

    if sdk.config.exemplar_filter == "always_on" or sdk.tracer_provider is not None:
        return True
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def _instrument(meter: Meter, s: MetricSpec) -> Any:
    """The metric's synchronous instrument. Its view's aggregation reads the handles; the
    instrument itself sees one measurement per series (``register_series``) and, for
    histograms, the observations that offer exemplars."""
    if s.kind is Kind.COUNTER:
        return meter.create_counter(s.name, unit=s.unit, description=s.description)
    if s.kind is Kind.GAUGE:
        return meter.create_gauge(s.name, unit=s.unit, description=s.description)
    return meter.create_histogram(s.name, unit=s.unit, description=s.description)


def _observable(meter: Meter, self_metric: SelfMetric, service: str) -> None:
    """A self-metric's observable instrument, read at each collection."""
    s = self_metric.spec

    def observations(options: CallbackOptions) -> list[Observation]:
        if self_metric.before is not None:
            self_metric.before()
        return [
            Observation(value, {**dict(zip(s.labels, labels, strict=True)), SERVICE_LABEL: service})
            for labels, value in self_metric.read().items()
        ]

    if s.kind is Kind.COUNTER:
        meter.create_observable_counter(s.name, callbacks=[observations], unit=s.unit, description=s.description)
    else:
        meter.create_observable_gauge(s.name, callbacks=[observations], unit=s.unit, description=s.description)


def _exposition(metrics: PlaneMetrics, sdk: PlaneSDK, self_metrics: list[SelfMetric]) -> PlaneExposition:
    from trading_telemetry._exposition import PlaneExposition

    files = metrics.multiprocess
    resource = sdk.resource
    if files is not None:  # the sum of the processes: the plane's own instance, no pid
        resource = build_resource(metrics.plane, sdk.config)
    return PlaneExposition(
        metrics.store.specs,
        metrics.store,
        resource=dict(resource.attributes) if resource is not None else {},
        self_metrics=self_metrics,
        service=metrics.plane.value,
        source=files.merged if files is not None else None,
    )
