"""OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: read into the configuration and given to
the OTLP metrics exporters, with the specification's temporality per instrument kind."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader

from trading_telemetry import ConfigError, TelemetryConfig, init_metrics_exporter
from trading_telemetry import config as config_module
from trading_telemetry._aggregation import exporter_preferences
from trading_telemetry._sdk import TrackedExporter, _otlp_exporter, otlp_temporality
from trading_telemetry.config import TEMPORALITY_PREFERENCES

VARIABLE = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"
DELTA, CUMULATIVE = AggregationTemporality.DELTA, AggregationTemporality.CUMULATIVE
KINDS = (Counter, UpDownCounter, Histogram, ObservableCounter, ObservableUpDownCounter, ObservableGauge)
# The specification's table (OTLP exporter, OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE).
SPEC = {
    "cumulative": dict.fromkeys(KINDS, CUMULATIVE),
    "delta": {Counter: DELTA, UpDownCounter: CUMULATIVE, Histogram: DELTA, ObservableCounter: DELTA,
              ObservableUpDownCounter: CUMULATIVE, ObservableGauge: CUMULATIVE},
    "lowmemory": {Counter: DELTA, UpDownCounter: CUMULATIVE, Histogram: DELTA, ObservableCounter: CUMULATIVE,
                  ObservableUpDownCounter: CUMULATIVE, ObservableGauge: CUMULATIVE},
}  # fmt: skip
SPY = {"source": "ibkr_rt", "symbol": "SPY"}


def test_unset_is_cumulative() -> None:
    """With nothing set, the preference is cumulative."""
    assert TelemetryConfig.from_env({}).otlp_temporality == "cumulative"


@settings(max_examples=200, deadline=None)
@given(raw=st.text(max_size=20))
def test_any_value_is_a_preference_or_refused_naming_the_variable_and_the_choices(raw: str) -> None:
    """Any text: the three names in any case and spacing are taken; anything else is a ConfigError naming the
    variable and the allowed values (which from_env turns into a warning and the default, as for every OTEL_*)."""
    (setting,) = [s for s in config_module.SETTINGS if s.field == "otlp_temporality"]
    if raw.strip().lower() in TEMPORALITY_PREFERENCES:
        assert setting.parse(VARIABLE, raw) == raw.strip().lower()
        return
    with pytest.raises(ConfigError) as raised:
        setting.parse(VARIABLE, raw)
    assert raised.value.variable == VARIABLE
    assert str(raised.value).endswith("expected one of cumulative, delta, lowmemory")


def test_an_invalid_value_is_warned_about_naming_the_choices_and_cumulative_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The value `sometimes`: one warning naming the variable and the choices, and cumulative is used."""
    with caplog.at_level(logging.WARNING, logger="trading_telemetry"):
        cfg = TelemetryConfig.from_env({VARIABLE: "sometimes"})
    assert cfg.otlp_temporality == "cumulative"
    (message,) = [r.getMessage() for r in caplog.records]
    assert message == f"{VARIABLE}='sometimes' is invalid (expected one of cumulative, delta, lowmemory); ignored"


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
@pytest.mark.parametrize("preference", TEMPORALITY_PREFERENCES)
def test_the_otlp_exporter_prefers_the_specifications_temporality(preference: str, protocol: str) -> None:
    """Each preference gives the SDK's OTLP exporter, and so its periodic reader, the specification's temporality
    per instrument kind, over http/protobuf and grpc."""
    cfg = TelemetryConfig.from_env(
        {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": protocol, VARIABLE: preference.upper()}
    )
    inner = _otlp_exporter(cfg, "metrics")
    try:
        assert type(inner).__module__.startswith(f"opentelemetry.exporter.otlp.proto.{protocol.split('/')[0]}")
        for exporter in (inner, TrackedExporter("otlp", inner)):  # the reader is given the TrackedExporter
            preferred = exporter_preferences(exporter)["preferred_temporality"]
            assert {kind: preferred[kind] for kind in KINDS} == SPEC[preference], type(exporter).__name__
    finally:
        inner.shutdown()


def test_the_configuration_wins_over_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A TelemetryConfig saying cumulative is obeyed even where the SDK's exporter would read delta from os.environ."""
    monkeypatch.setenv(VARIABLE, "delta")
    inner = _otlp_exporter(TelemetryConfig(metrics_exporters=("otlp",)), "metrics")
    try:
        assert exporter_preferences(inner)["preferred_temporality"][Counter] is CUMULATIVE
    finally:
        inner.shutdown()


def test_a_plane_pushing_otlp_has_a_reader_of_that_temporality() -> None:
    """The plane's periodic reader exports with the exporter's temporality (delta here)."""
    cfg = TelemetryConfig(metrics_exporters=("otlp",), otlp_temporality="delta", metric_export_interval_ms=3_600_000)
    (pusher,) = init_metrics_exporter("data_plane", config=cfg).sdk.pushers
    assert {kind: exporter_preferences(pusher)["preferred_temporality"][kind] for kind in KINDS} == SPEC["delta"]
    pusher._inner.shutdown()  # no last export at reset(): nothing listens on the default endpoint


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        m.name: list(m.data.data_points) for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }


def test_delta_exports_what_changed_since_the_last_collection() -> None:
    """Under delta, a counter and a histogram export only what was recorded since the last export; a gauge its value;
    under lowmemory the dropped-measurements self-metric (an asynchronous counter) stays cumulative."""
    delta = InMemoryMetricReader(preferred_temporality=otlp_temporality("delta"))
    low = InMemoryMetricReader(preferred_temporality=otlp_temporality("lowmemory"))
    metrics = init_metrics_exporter(
        "data_plane", config=TelemetryConfig(metrics_exporters=()), metric_readers=[delta, low]
    )
    metrics.inc("ticks_received", 3, **SPY)
    metrics.observe("data_freshness", 0.2, **SPY)
    metrics.set("completeness_score", 0.5, symbol="SPY")
    metrics.inc("tick_recieved", **SPY)  # a drop
    first, first_low = _points(delta), _points(low)
    metrics.inc("ticks_received", 2, **SPY)
    metrics.observe("data_freshness", 0.3, **SPY)
    metrics.observe("data_freshness", 0.4, **SPY)
    metrics.inc("tick_recieved", **SPY)
    second, second_low = _points(delta), _points(low)
    assert [p.value for p in first["data_ticks_received"]] == [3]
    assert [p.value for p in second["data_ticks_received"]] == [2]
    assert [p.count for p in second["data_freshness"]] == [2]
    assert [p.value for p in second["data_completeness_score"]] == [0.5]
    assert [p.value for p in first["trading_telemetry_dropped_measurements"]] == [1]
    assert [p.value for p in second["trading_telemetry_dropped_measurements"]] == [1]
    assert [p.value for p in first_low["trading_telemetry_dropped_measurements"]] == [1]
    assert [p.value for p in second_low["trading_telemetry_dropped_measurements"]] == [2]
    assert [p.value for p in second_low["data_ticks_received"]] == [2]


def test_under_delta_every_series_is_exported_at_each_collection_not_only_the_first() -> None:
    """Each series is measured once by the SDK and read from its handle after that: under delta (where SDK 1.45.2
    forgets a synchronous instrument's series at each collection) every later collection still has it, with what
    changed since the one before."""
    delta = InMemoryMetricReader(preferred_temporality=otlp_temporality("delta"))
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=()), metric_readers=[delta])
    ticks, freshness = metrics.bind("ticks_received", **SPY), metrics.bind("data_freshness", **SPY)
    seen = []
    for n in range(1, 6):
        ticks.inc(n)
        for _ in range(n):
            freshness.observe(0.1)
        points = _points(delta)
        seen.append(([p.value for p in points["data_ticks_received"]], [p.count for p in points["data_freshness"]]))
    assert seen == [([n], [n]) for n in range(1, 6)]


@pytest.mark.parametrize("temporality", ["cumulative", "delta"])
def test_past_the_sdks_default_cardinality_limit_every_live_series_is_exported(temporality: str) -> None:
    """The plane's own limit governs (3,000 here): more label sets than the SDK's default limit of 2,000 (1.45.2),
    and more than that again after retiring some and recording new ones, are each exported as themselves, with no
    otel.metric.overflow point."""
    reader = InMemoryMetricReader(preferred_temporality=otlp_temporality(temporality))
    config = TelemetryConfig(metrics_exporters=(), cardinality_limit=3_000)
    metrics = init_metrics_exporter("data_plane", config=config, metric_readers=[reader])
    for i in range(2_500):
        metrics.inc("ticks_received", source="ibkr_rt", symbol=f"S{i}")
    assert metrics.retire("ticks_received", symbol="S7") == 1
    for i in range(2_500, 3_000):
        metrics.inc("ticks_received", source="ibkr_rt", symbol=f"S{i}")
    symbols = sorted(str(p.attributes.get("symbol")) for p in _points(reader)["data_ticks_received"])
    assert symbols == sorted(f"S{i}" for i in range(3_000) if i != 7)
