from __future__ import annotations

import trading_telemetry


def test_public_surface_is_pinned() -> None:
    """The package root exports exactly this sorted list; changing it is a decision."""
    assert trading_telemetry.__all__ == [
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
    for name in trading_telemetry.__all__:
        assert hasattr(trading_telemetry, name), name


def test_errors_share_one_base() -> None:
    """Every exception the package defines derives from TradingTelemetryError."""
    errors = [getattr(trading_telemetry, n) for n in trading_telemetry.__all__ if n.endswith("Error")]
    assert all(issubclass(e, trading_telemetry.TradingTelemetryError) for e in errors)
