"""The planes and the configuration, and :func:`reset`.

The configuration is read from the environment on first use; tests and embedders can
pass their own configuration and readers instead. Every piece of the package's module
state is a field of ``_globals.STATE``; :func:`reset` shuts the planes down and puts
all of it back as it was at import (its docstring names the one exception)."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from trading_telemetry import _exporter_logs, _fork
from trading_telemetry._globals import DESK_CATALOG, STATE, State, renew_locks, reset_state
from trading_telemetry._recorder import PlaneMetrics
from trading_telemetry.catalog import Plane, freeze, load_file
from trading_telemetry.config import TelemetryConfig
from trading_telemetry.errors import TradingTelemetryError

if TYPE_CHECKING:  # the SDK is imported when the first plane is set up, not with the package
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace.export import SpanExporter

logger = logging.getLogger("trading_telemetry")
planes: dict[Plane, PlaneMetrics] = STATE.planes
"""The initialised planes (``STATE.planes``); cleared, never replaced, so callers may keep it."""


def current_config() -> TelemetryConfig:
    """The configuration from the environment, read on first use and then kept."""
    with STATE.lock:
        config: TelemetryConfig | None = STATE.config
        if config is None:
            config = STATE.config = TelemetryConfig.from_env()
        return config


def init_metrics_exporter(
    plane: str | Plane,
    *,
    config: TelemetryConfig | None = None,
    metric_readers: Sequence[MetricReader] = (),
    span_exporters: Sequence[SpanExporter] = (),
) -> PlaneMetrics:
    """Set up the plane's MeterProvider and exporters and return its metrics object.

    Called again for the same plane, it returns the same object. ``config`` replaces
    the configuration read from the environment; ``metric_readers`` and
    ``span_exporters`` are added to the configured ones (for tests: in-memory ones).

    Example::

        >>> from trading_telemetry import TelemetryConfig, init_metrics_exporter, reset
        >>> metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=()))
        >>> metrics.inc("ticks_received", source="ibkr_rt", symbol="SPY")
        >>> reset()
    """
    from trading_telemetry._plane import build_plane

    p = Plane.parse(plane)
    cfg = config or current_config()
    with STATE.lock:
        existing = planes.get(p)
        if existing is not None:
            if config is not None or metric_readers or span_exporters:
                raise TradingTelemetryError(f"{p.value} is already initialised; call reset() before re-configuring it")
            return existing
        if not planes:
            if cfg.catalog_path:
                load_file(cfg.catalog_path)
            freeze()  # the catalog is fixed while planes exist
            _warn_about_auto_instrumentation(cfg)
        metrics = build_plane(p, cfg, metric_readers, span_exporters)
        if p is Plane.DATA and cfg.catalog_path and not cfg.sdk_disabled:
            _start_session_gauges(metrics, cfg.catalog_path)
        planes[p] = metrics
        return metrics


def _start_session_gauges(metrics: PlaneMetrics, path: str) -> None:
    """The data plane's session gauges, started with it when its catalog file declares
    calendars (on a thread of their own); a file that cannot be read shuts the plane."""
    from trading_telemetry._sessions import gauges_from_file

    try:
        gauges = gauges_from_file(metrics, path)
    except BaseException:
        metrics.shutdown(0)
        raise
    if gauges is not None:
        previous, STATE.session_gauges = STATE.session_gauges, gauges
        if previous is not None:
            previous.stop(0)


def load_configured_catalog() -> None:
    """Add the desk's catalog file (TRADING_TELEMETRY_CATALOG) now, if one is set and no
    plane exists yet: for ``timed`` decorators that name a desk's metric at import time."""
    path = current_config().catalog_path
    with STATE.lock:
        if path and not planes:
            load_file(path)


def _warn_about_auto_instrumentation(config: TelemetryConfig) -> None:
    """Under ``opentelemetry-instrument`` a distro sets OTEL_METRICS_EXPORTER=otlp unless the
    user did: say so once when that turns the planes' /metrics off. The global providers
    stay the tool's; the planes have their own and never replace them."""
    if "opentelemetry.instrumentation.auto_instrumentation" in sys.modules and "prometheus" not in (
        config.metrics_exporters
    ):
        logger.warning(
            "running under opentelemetry-instrument with OTEL_METRICS_EXPORTER=%s (a distro sets otlp unless you "
            "set it): the planes push OTLP and serve no /metrics; set OTEL_METRICS_EXPORTER=prometheus,otlp to "
            "keep /metrics. The global providers stay the tool's; each plane has its own",
            ",".join(config.metrics_exporters) or "none",
        )


def plane_metrics(plane: Plane) -> PlaneMetrics:
    """The plane's metrics object, initialised from the environment if need be: what
    decorators use at call time. Never raises for a plane (the config may, once)."""
    metrics = planes.get(plane)
    return metrics if metrics is not None else init_metrics_exporter(plane)


def initialised_planes() -> list[PlaneMetrics]:
    return list(planes.values())


def get_metrics(plane: str | Plane) -> PlaneMetrics:
    """The plane's metrics object; raises if :func:`init_metrics_exporter` was not called."""
    p = Plane.parse(plane)
    with STATE.lock:
        try:
            return planes[p]
        except KeyError:
            raise TradingTelemetryError(f"{p.value} is not initialised; call init_metrics_exporter() first") from None


def reset(timeout: float | None = None) -> bool:
    """Return the package to its state at import, and shut down the planes it had.

    At once, every piece of module state (``_globals.STATE``) is put back as it was at
    import: no plane (one set up from now on is a new one), the configuration read from
    the environment again at next use, the built-in catalog (the desk's extensions and
    catalog files forgotten, extend() allowed again), the once-only warnings logged
    again, the caches empty. Only the running /metrics servers stay: each is its
    owner's until its ``close()``.

    Then the planes' last exports are attempted once, all at the same time, and waited
    for at most ``timeout`` seconds (default: TRADING_TELEMETRY_SHUTDOWN_TIMEOUT, 5 s),
    even when a Collector accepts and never answers; what did not finish is abandoned
    (its thread dies with the interpreter). The exporter-log filter, which held back
    those exports' retry lines, is taken off the loggers after them. Returns whether
    the last exports finished within the bound."""
    return _stop(reset_state(), timeout)


def reset_keeping_the_desk_catalog(timeout: float | None = None) -> bool:
    """:func:`reset`, with the desk's catalog (what extend() and catalog files added) left
    as it is: the pytest fixture's reset, for a desk that extends when its modules are
    imported."""
    return _stop(reset_state(keep=DESK_CATALOG), timeout)


def _stop(previous: State, timeout: float | None) -> bool:
    """The planes ``previous`` held, shut down within ``timeout`` (see :func:`reset`)."""
    stopping, config = list(previous.planes.values()), previous.config
    if timeout is None:
        configs = [m.sdk.config for m in stopping] or [config or TelemetryConfig()]
        timeout = max(c.shutdown_timeout_ms for c in configs) / 1000
    deadline = time.monotonic() + timeout
    if previous.session_gauges is not None:
        previous.session_gauges.stop(timeout)  # a refresh takes microseconds
    for m in stopping:
        if m.multiprocess is not None:
            m.multiprocess.close()
    threads = [t for t in (m.sdk.shutdown() for m in stopping) if t is not None]
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    finished = not any(t.is_alive() for t in threads)
    _exporter_logs.unthrottle(previous.exporter_log_filter)
    if not finished:
        logger.warning("shutdown: the last export did not finish within %.1f s; abandoned", timeout)
    return finished


def _at_exit() -> None:
    """Interpreter exit: the planes' last exports, bounded like reset()."""
    with contextlib.suppress(Exception):
        reset()


atexit.register(_at_exit)


def _after_fork_in_child() -> None:
    """A forked child's locks and planes: see ``_fork``."""
    renew_locks()
    gauges, STATE.session_gauges = STATE.session_gauges, None  # their thread is the parent's
    if gauges is not None:
        gauges.after_fork()
    from trading_telemetry._plane import rebuild_after_fork

    _fork.after_fork_in_child(list(planes.values()), rebuild_after_fork)


os.register_at_fork(after_in_child=_after_fork_in_child)
