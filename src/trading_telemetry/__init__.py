"""OpenTelemetry metrics for a three-plane algorithmic trading system.

The seed README's API, from the package root::

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

from trading_telemetry._recorder import BoundMetric, PlaneMetrics
from trading_telemetry._state import get_metrics, init_metrics_exporter, reset
from trading_telemetry._version import __version__
from trading_telemetry.catalog import CATALOG, Kind, MetricSpec, Plane
from trading_telemetry.config import TelemetryConfig
from trading_telemetry.errors import (
    CardinalityLimitError,
    CatalogError,
    ConfigError,
    InvalidValueError,
    LabelError,
    MeasurementError,
    TradingTelemetryError,
    UnknownMetricError,
    UnknownPlaneError,
)
from trading_telemetry.metrics_server import MetricsServer, serve_metrics, start_metrics_server

__all__ = [
    "CATALOG",
    "BoundMetric",
    "CardinalityLimitError",
    "CatalogError",
    "ConfigError",
    "InvalidValueError",
    "Kind",
    "LabelError",
    "MeasurementError",
    "MetricSpec",
    "MetricsServer",
    "Plane",
    "PlaneMetrics",
    "TelemetryConfig",
    "TradingTelemetryError",
    "UnknownMetricError",
    "UnknownPlaneError",
    "__version__",
    "get_metrics",
    "init_metrics_exporter",
    "reset",
    "serve_metrics",
    "start_metrics_server",
]
