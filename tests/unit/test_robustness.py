"""The failures of the trading process's first promise, each pinned by a test: data that
broke a plane's render, totals that overflowed, memory that bad input grew, state that
reset() left behind, secrets in error messages, a Makefile that killed by name."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client.parser import text_string_to_metric_families
from test_recording import points

from helpers import http_get
from trading_telemetry import ConfigError, TelemetryConfig, init_metrics_exporter, reset, serve_metrics, timed
from trading_telemetry._checks import _SUGGESTIONS_KEPT, did_you_mean
from trading_telemetry._drops import UNKNOWN_KEYS_LOGGED, UNKNOWN_METRIC
from trading_telemetry._globals import STATE
from trading_telemetry._series import REJECTED_KEPT
from trading_telemetry.timing import HANDLES_KEPT

ROOT = Path(__file__).resolve().parents[2]
SPY = {"source": "ibkr_rt", "symbol": "SPY"}
PRODUCTION = TelemetryConfig(metrics_exporters=("prometheus",))


def scrape(metrics: object) -> str:
    with serve_metrics(metrics, port=0) as server:  # type: ignore[arg-type]
        status, _, body = http_get(f"{server.url}/metrics")
    assert status == 200
    return body.decode()


def test_a_lone_surrogate_is_refused_and_the_plane_keeps_rendering() -> None:
    """'bad\\ud800' cannot encode as UTF-8: it is dropped as invalid_label_value, /metrics stays 200."""
    metrics = init_metrics_exporter("data_plane", config=PRODUCTION)
    metrics.inc("ticks_received", source="ibkr_rt", symbol="bad\ud800")
    metrics.inc("ticks_received", **SPY)
    (family,) = [f for f in text_string_to_metric_families(scrape(metrics)) if f.name == "data_ticks_received"]
    assert [(s.labels["symbol"], s.value) for s in family.samples] == [("SPY", 1.0)]
    assert metrics.policy.counts() == {("ticks_received", "invalid_label_value"): 1}


def test_counter_increments_that_would_overflow_are_dropped_as_overflow() -> None:
    """Two inc(10**308): the second would take the total past a float; it is dropped, the series stays."""
    reader = InMemoryMetricReader()
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=()), metric_readers=[reader])
    metrics.inc("ticks_received", 10**308, **SPY)
    metrics.inc("ticks_received", 10**308, **SPY)
    metrics.inc("ticks_received", 1e308, **SPY)
    metrics.inc("bars_received", 1e308, **SPY, duration="1m")
    metrics.inc("bars_received", 1e308, **SPY, duration="1m")
    got = points(reader)
    (ticks,) = got["data_ticks_received"]
    assert ticks.value == 10**308
    (bars,) = got["data_bars_received"]
    assert bars.value == 1e308
    assert metrics.policy.counts() == {("ticks_received", "overflow"): 2, ("bars_received", "overflow"): 1}


def test_a_histogram_sum_stays_finite() -> None:
    """An observation that would make the sum infinite is dropped whole: count and sum stay consistent."""
    metrics = init_metrics_exporter("order_plane", config=TelemetryConfig(metrics_exporters=()))
    slippage = metrics.bind("slippage_bps", strategy="OFI", symbol="SPY", direction="BUY")
    slippage.observe(1.5e308)
    slippage.observe(1.5e308)
    slippage.observe(-1.5e308)
    counts, total, _, _ = slippage.snapshot()  # type: ignore[attr-defined]
    assert sum(counts) == 2
    assert math.isfinite(total)
    assert total == 0.0
    assert metrics.policy.counts() == {("slippage_bps", "overflow"): 1}


def test_bad_keys_share_one_self_metric_series_and_the_caches_stay_bounded() -> None:
    """100k distinct unknown keys: one dropped-measurements series, a bounded rejected-call cache, a
    bounded suggestion cache, and no suggestion computed for a megabyte key."""
    metrics = init_metrics_exporter("data_plane", config=PRODUCTION)
    for i in range(100_000):
        metrics.inc(f"no_such_metric_{i}", **SPY)
    metrics.inc("x" * (1 << 20), **SPY)
    assert metrics.policy.counts() == {(UNKNOWN_METRIC, "unknown_metric"): 100_001}
    assert len(metrics.policy._unknown_logged) == UNKNOWN_KEYS_LOGGED
    assert len(metrics.policy._last_logged) == 1
    assert metrics.store._rejected_kept == REJECTED_KEPT
    assert len(metrics.store.calls) == REJECTED_KEPT
    assert len(STATE.suggestions) <= _SUGGESTIONS_KEPT
    assert did_you_mean("x" * (1 << 20), ["ticks_received"]) == ""
    families = {f.name: f for f in text_string_to_metric_families(scrape(metrics))}
    assert len(families["trading_telemetry_dropped_measurements"].samples) == 1


def test_new_label_sets_past_the_cardinality_limit_grow_nothing() -> None:
    """Past the limit, new label sets are dropped; what they touch (series, cache) stays bounded."""
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=(), cardinality_limit=10))
    for i in range(20_000):
        metrics.inc("ticks_received", source="ibkr_rt", symbol=f"S{i}")
    assert metrics.series_count("ticks_received") == 10
    assert len(metrics.store.calls) <= 10 + REJECTED_KEPT
    assert metrics.policy.counts() == {("ticks_received", "cardinality_limit"): 19_990}


def test_timed_caches_at_most_handles_kept_argument_tuples() -> None:
    """A labels_from argument with ever-new values (each a new series, or a drop) grows no cache past the cap."""
    init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=(), cardinality_limit=10))

    timing = timed("data_freshness", labels_from=("symbol",), labels={"source": "ibkr_rt"})

    @timing
    def handle(symbol: str) -> None:
        pass

    for i in range(HANDLES_KEPT + 500):
        handle(f"S{i}")
    assert len(timing._handles) == HANDLES_KEPT


def test_a_family_that_fails_to_render_is_left_out_and_health_says_so() -> None:
    """Defence in depth: if one family still fails to render, the rest is served and /health is degraded."""
    metrics = init_metrics_exporter("data_plane", config=PRODUCTION)
    metrics.inc("ticks_received", **SPY)
    handle = metrics.bind("storage_writes", event_type="bar")
    handle.inc()
    handle.key = ("bad\ud800",)  # type: ignore[attr-defined]  # what validation refuses, planted behind its back
    with serve_metrics(metrics, port=0) as server:
        status, _, body = http_get(f"{server.url}/metrics")
        assert status == 200
        names = {f.name for f in text_string_to_metric_families(body.decode())}
        assert "data_ticks_received" in names
        assert "data_storage_writes" not in names
        _, _, health = http_get(f"{server.url}/health")
    assert b'"status": "degraded"' in health
    assert b"UnicodeEncodeError" in health


def test_reset_undoes_the_asyncio_instrumentation() -> None:
    """reset() turns off the asyncio instrumentation the plane turned on; initialising again turns it on again."""
    from opentelemetry.instrumentation.asyncio import AsyncioInstrumentor

    config = TelemetryConfig(metrics_exporters=(), asyncio_plane="strategy_plane")
    init_metrics_exporter("strategy_plane", config=config)
    assert AsyncioInstrumentor().is_instrumented_by_opentelemetry
    reset()
    assert not AsyncioInstrumentor().is_instrumented_by_opentelemetry
    init_metrics_exporter("strategy_plane", config=config)
    assert AsyncioInstrumentor().is_instrumented_by_opentelemetry
    reset()
    assert not AsyncioInstrumentor().is_instrumented_by_opentelemetry


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_METRICS_HEADERS"])
def test_a_malformed_header_list_never_echoes_its_values(variable: str, caplog: pytest.LogCaptureFixture) -> None:
    """A malformed headers value is warned about naming the variable and the entry's position, never a
    token, and ignored (the specification's rule for invalid OTEL_* values)."""
    from trading_telemetry import config

    with caplog.at_level(logging.WARNING, logger="trading_telemetry"):
        cfg = TelemetryConfig.from_env({variable: "authorization=Bearer s3cr3t-token,oops-no-equals-s3cr3t"})
    assert dict(cfg.otlp_headers) == {}
    text = " ".join(r.getMessage() for r in caplog.records)
    assert variable in text
    assert "entry 2" in text
    assert "s3cr3t" not in text
    with pytest.raises(ConfigError) as caught:  # the parser's own error, for code that calls it
        config._headers(variable, "authorization=Bearer s3cr3t-token,oops-no-equals-s3cr3t")
    assert "s3cr3t" not in str(caught.value) + repr(caught.value.value)
