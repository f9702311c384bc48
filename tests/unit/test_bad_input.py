from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from test_recording import points

from trading_telemetry import (
    InvalidValueError,
    LabelError,
    MeasurementError,
    TelemetryConfig,
    UnknownMetricError,
    init_metrics_exporter,
)
from trading_telemetry._drops import UNKNOWN_METRIC
from trading_telemetry.catalog import Plane

SPY = {"source": "ibkr_rt", "symbol": "SPY"}

# (plane, method, key, value, labels, error class, reason, words the message must contain)
CASES: list[tuple[str, str, str, Any, dict[str, Any], type[MeasurementError], str, tuple[str, ...]]] = [
    ("data_plane", "inc", "tick_received", 1, SPY, UnknownMetricError, "unknown_metric",
     ("tick_received", "did you mean", "'ticks_received'")),
    ("data_plane", "inc", "ticks_received", 1, {**SPY, "venue": "ARCA"}, LabelError, "unknown_label",
     ("ticks_received", "venue", "'ARCA'", "allowed labels: source, symbol")),
    ("data_plane", "inc", "ticks_received", 1, {**SPY, "service": "x"}, LabelError, "unknown_label",
     ("ticks_received", "service", "set by the SDK")),
    ("data_plane", "inc", "ticks_received", 1, {"source": "ibkr_rt"}, LabelError, "missing_label",
     ("ticks_received", "'symbol'", "missing")),
    ("data_plane", "inc", "ticks_received", 1, {**SPY, "symbol": 5}, LabelError, "invalid_label_value",
     ("ticks_received", "symbol=5", "non-empty string")),
    ("data_plane", "inc", "ticks_received", 1, {**SPY, "symbol": ""}, LabelError, "invalid_label_value",
     ("ticks_received", "symbol=''",)),
    ("data_plane", "inc", "ticks_received", -1, SPY, InvalidValueError, "negative_increment",
     ("ticks_received", "-1", "negative")),
    ("data_plane", "inc", "ticks_received", float("nan"), SPY, InvalidValueError, "non_finite",
     ("ticks_received", "nan")),
    ("data_plane", "observe", "data_freshness", float("inf"), SPY, InvalidValueError, "non_finite",
     ("data_freshness", "inf")),
    ("data_plane", "observe", "data_freshness", -0.2, SPY, InvalidValueError, "out_of_range",
     ("data_freshness", "-0.2")),
    ("data_plane", "inc", "ticks_received", "3", SPY, InvalidValueError, "non_numeric",
     ("ticks_received", "'3'", "not a number")),
    ("data_plane", "inc", "ticks_received", None, SPY, InvalidValueError, "non_numeric", ("ticks_received", "None")),
    ("data_plane", "inc", "ticks_received", True, SPY, InvalidValueError, "non_numeric", ("ticks_received", "True")),
    ("data_plane", "inc", "ticks_received", 10**400, SPY, InvalidValueError, "non_numeric", ("ticks_received",)),
    ("data_plane", "set", "completeness_score", 1.5, {"symbol": "SPY"}, InvalidValueError, "out_of_range",
     ("completeness_score", "1.5", "[0.0, 1.0]")),
    ("strategy_plane", "set", "regime_state", 1.5, {}, InvalidValueError, "out_of_range",
     ("regime_state", "1.5", "[0, 1, 2]")),
    ("strategy_plane", "set", "regime_state", 3, {}, InvalidValueError, "out_of_range", ("regime_state", "3")),
    ("strategy_plane", "set", "kill_switch_active", 2, {"switch_type": "pnl"}, InvalidValueError, "out_of_range",
     ("kill_switch_active", "2", "[0, 1]")),
    ("data_plane", "observe", "ticks_received", 1.0, SPY, InvalidValueError, "wrong_kind",
     ("ticks_received", "counter", "inc()", "observe()")),
    ("data_plane", "inc", "completeness_score", 1, {"symbol": "SPY"}, InvalidValueError, "wrong_kind",
     ("completeness_score", "gauge", "set()")),
]  # fmt: skip
IDS = [f"{c[6]}:{c[2]}={c[3]!r}"[:60] for c in CASES]


def bad_calls(test: Any) -> Any:
    """Every case, through the keyed call and through a bound handle."""
    test = pytest.mark.parametrize(("plane", "method", "key", "value", "labels", "error", "reason", "words"),
                                   CASES, ids=IDS)(test)  # fmt: skip
    return pytest.mark.parametrize("bound", [False, True], ids=["keyed", "bound"])(test)


def _call(metrics: Any, method: str, key: str, value: Any, labels: dict[str, Any], bound: bool) -> None:
    if bound:
        getattr(metrics.bind(key, **labels), method)(value)
    else:
        getattr(metrics, method)(key, value, **labels)


@bad_calls
def test_strict_mode_raises_naming_metric_label_and_value(
    plane: str, method: str, key: str, value: Any, labels: dict[str, Any],
    error: type[MeasurementError], reason: str, words: tuple[str, ...], bound: bool,
) -> None:  # fmt: skip
    """In strict mode each bad call raises its specific error; the message names metric, label and value."""
    metrics = init_metrics_exporter(plane, config=TelemetryConfig(strict=True, metrics_exporters=()))
    with pytest.raises(error) as caught:
        _call(metrics, method, key, value, labels, bound)
    assert caught.value.reason == reason
    for word in words:
        assert word in str(caught.value)


@bad_calls
def test_production_mode_drops_counts_and_never_raises(
    plane: str, method: str, key: str, value: Any, labels: dict[str, Any],
    error: type[MeasurementError], reason: str, words: tuple[str, ...], bound: bool,
) -> None:  # fmt: skip
    """In production mode a bad call returns quietly, records nothing and counts the drop with its reason."""
    reader = InMemoryMetricReader()
    metrics = init_metrics_exporter(plane, config=TelemetryConfig(metrics_exporters=()), metric_readers=[reader])
    _call(metrics, method, key, value, labels, bound)
    _call(metrics, method, key, value, labels, bound)
    got = points(reader)
    (dropped,) = got.pop("trading_telemetry_dropped_measurements")
    (uptime,) = got.pop("trading_telemetry_uptime")  # the liveness gauge moves by itself
    assert uptime.value >= 0
    assert dropped.value == 2
    metric = UNKNOWN_METRIC if reason == "unknown_metric" else key  # bad keys share one series
    assert dict(dropped.attributes) == {"metric": metric, "reason": reason, "service": Plane(plane).value}
    # A bound counter exists at 0 (as a prometheus_client child does); nothing was recorded.
    recorded = [p for ps in got.values() for p in ps if getattr(p, "value", None) or getattr(p, "count", None)]
    assert recorded == [], "a bad measurement reached an instrument"
    assert metrics.health()["dropped_measurements"] == 2


def test_production_mode_logs_once_per_metric_and_reason_per_minute(caplog: pytest.LogCaptureFixture) -> None:
    """Repeated drops log one warning per (metric, reason) until a minute has passed."""
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=()))
    now = [1000.0]
    metrics.policy._clock = lambda: now[0]
    with caplog.at_level(logging.WARNING, logger="trading_telemetry"):
        for _ in range(100):
            metrics.inc("ticks_received", -1, **SPY)
        metrics.set("completeness_score", 7, symbol="SPY")
        now[0] += 61
        metrics.inc("ticks_received", -1, **SPY)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert "negative_increment" in messages[0]
    assert "ticks_received" in messages[0]
    assert "out_of_range" in messages[1]


def test_production_mode_survives_a_broken_log_handler(caplog: pytest.LogCaptureFixture) -> None:
    """Even a logging handler that raises does not reach the caller."""

    class Exploding(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise RuntimeError("disk full")

        def handleError(self, record: logging.LogRecord) -> None:
            raise RuntimeError("still full")

    logger = logging.getLogger("trading_telemetry")
    handler = Exploding()
    logger.addHandler(handler)
    try:
        metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=()))
        metrics.inc("ticks_received", float("nan"), **SPY)
    finally:
        logger.removeHandler(handler)
    assert metrics.health()["dropped_measurements"] == 1
