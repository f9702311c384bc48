"""OpenTelemetry metrics for a three-plane algorithmic trading system.

The original monitoring specification's API, from the package root::

    from trading_telemetry import init_metrics_exporter, start_metrics_server

    metrics = init_metrics_exporter("data_plane")
    metrics.inc("ticks_received", source="ibkr_rt", symbol="SPY")
    metrics.observe("data_freshness", 0.150, source="ibkr_rt", symbol="SPY")
    metrics.set("completeness_score", 0.95, symbol="SPY")
    server = await start_metrics_server(metrics, port=8000)

Exporters are chosen by environment variables (``OTEL_METRICS_EXPORTER`` and friends),
never by code: see :mod:`trading_telemetry.config`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trading_telemetry._recorder import BoundMetric, PlaneMetrics
from trading_telemetry._state import get_metrics, init_metrics_exporter, reset
from trading_telemetry._version import __version__
from trading_telemetry.catalog import CATALOG, Kind, MetricSpec, Plane
from trading_telemetry.config import TelemetryConfig
from trading_telemetry.errors import (
    CardinalityLimitError,
    CatalogError,
    ConfigError,
    InstrumentationError,
    InvalidInputError,
    InvalidValueError,
    LabelError,
    MeasurementError,
    ServerAddressError,
    TradingTelemetryError,
    UnknownMetricError,
    UnknownPlaneError,
)
from trading_telemetry.lifecycle import OrderLifecycle
from trading_telemetry.timing import timed
from trading_telemetry.tracing import continue_trace, extract_trace_context, inject_trace_context, traced

if TYPE_CHECKING:
    from trading_telemetry.metrics_server import MetricsServer, serve_metrics, start_metrics_server

# The HTTP server is imported when first used, not with the package: so that
# `python -m trading_telemetry.metrics_server` runs the module once, without the
# interpreter's warning about a module imported before it is run as __main__.
_LAZY = {"MetricsServer", "serve_metrics", "start_metrics_server"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from trading_telemetry import metrics_server

        return getattr(metrics_server, name)
    raise AttributeError(f"module 'trading_telemetry' has no attribute {name!r}")


__all__ = [
    "CATALOG",
    "BoundMetric",
    "CardinalityLimitError",
    "CatalogError",
    "ConfigError",
    "InstrumentationError",
    "InvalidInputError",
    "InvalidValueError",
    "Kind",
    "LabelError",
    "MeasurementError",
    "MetricSpec",
    "MetricsServer",
    "OrderLifecycle",
    "Plane",
    "PlaneMetrics",
    "ServerAddressError",
    "TelemetryConfig",
    "TradingTelemetryError",
    "UnknownMetricError",
    "UnknownPlaneError",
    "__version__",
    "continue_trace",
    "extract_trace_context",
    "get_metrics",
    "init_metrics_exporter",
    "inject_trace_context",
    "reset",
    "serve_metrics",
    "start_metrics_server",
    "timed",
    "traced",
]
