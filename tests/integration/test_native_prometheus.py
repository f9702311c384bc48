"""Native histograms on the pull path, with a real Prometheus 3 as the oracle: it scrapes a
plane's /metrics with the repository's prometheus.yml (scrape_native_histograms, the default
scrape protocols: protobuf first), and what its HTTP API returns is what the handles hold,
native buckets, classic ``_bucket`` series and exemplars alike; ``histogram_quantile`` on the
native series of a lognormal latency workload is within 5 % of the sample's exact quantiles."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from servers import Prometheus
from trading_telemetry import MetricsServer, PlaneMetrics, TelemetryConfig, init_metrics_exporter, reset, serve_metrics
from trading_telemetry._native import NativeSnapshot

pytestmark = pytest.mark.integration

LATENCY = "intent_to_submit_latency"
NAME = "orders_intent_to_submit_latency_seconds"
SLIPPAGE = "slippage_bps"
SLIPPAGE_NAME = "orders_slippage_bps"
SPY = {"strategy": "s1", "symbol": "SPY", "order_type": "LIMIT"}
TRACED = {"strategy": "s1", "symbol": "QQQ", "order_type": "LIMIT"}
SLIP = {"strategy": "s1", "symbol": "SPY", "direction": "BUY"}
OBSERVATIONS = 100_000
MEDIAN, SIGMA, SEED = 0.002, 0.9, 20_231_207  # lognormal latencies: median 2 ms
QUANTILES = (0.5, 0.99, 0.999)
TOLERANCE = 0.05


@pytest.fixture(autouse=True)
def _fresh_state() -> None:
    """Overrides the unit tests' reset-per-test: the plane here lives for the module."""


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[PlaneMetrics, np.ndarray[Any, Any], str, MetricsServer]]:
    """The order plane with every histogram native: the lognormal workload on SPY, slippage with negative,
    zero and positive values, and one latency observed inside a span (QQQ); served on a free port."""
    reset()
    config = TelemetryConfig(strict=True, metrics_exporters=("prometheus",), native_histograms="all")
    metrics = init_metrics_exporter("order_plane", config=config, span_exporters=[InMemorySpanExporter()])
    sample = np.random.default_rng(SEED).lognormal(math.log(MEDIAN), SIGMA, OBSERVATIONS)
    spy = metrics.bind(LATENCY, **SPY)
    for value in sample.tolist():
        spy.observe(value)
    slippage = metrics.bind(SLIPPAGE, **SLIP)
    for value in (-12.5, -3.0, -0.25, 0.0, 0.0, 0.5, 1.0, 2.0, 7.5, 40.0, -1000.0):
        slippage.observe(value)
    metrics.inc("orders_received", 3, strategy="s1", symbol="SPY", direction="BUY", order_type="LIMIT")
    assert metrics.tracer is not None
    with metrics.tracer.start_as_current_span("submit") as span:
        metrics.observe(LATENCY, 0.0042, **TRACED)
        trace_id = f"{span.get_span_context().trace_id:032x}"
    server = serve_metrics(metrics, port=0)
    yield metrics, sample, trace_id, server
    server.close()
    reset()


@pytest.fixture(scope="module")
def prom(recorded: tuple[PlaneMetrics, Any, str, MetricsServer], prometheus_factory: Any) -> Prometheus:
    server: Prometheus = prometheus_factory({"planes": [f"127.0.0.1:{recorded[3].port}"]})
    server.wait_for_scrapes(targets=1, samples=2)
    return server


def _snapshot(metrics: PlaneMetrics, key: str, labels: dict[str, str]) -> tuple[list[int], float, NativeSnapshot]:
    spec = metrics.store.specs[key]
    handle = metrics.store.series(key)[tuple(labels[name] for name in spec.labels)]
    counts, total, _, _, native = handle.snapshot_native()
    assert native is not None
    return counts, total, native


def expected_buckets(native: NativeSnapshot) -> list[tuple[float, float, int]]:
    """(lower, upper, count) of each non-empty bucket, ascending, as Prometheus lists them: bucket i of
    schema s holds (base**(i-1), base**i], base = 2**(2**-s), mirrored for negative values; the zero
    bucket [0, 0] with a zero threshold of 0."""
    base = 2 ** (2**-native.scale)
    negative = [
        (-(base ** (native.negative_offset + i + 1)), -(base ** (native.negative_offset + i)), n)
        for i, n in enumerate(native.negative)
        if n
    ]
    positive = [
        (base ** (native.positive_offset + i), base ** (native.positive_offset + i + 1), n)
        for i, n in enumerate(native.positive)
        if n
    ]
    zero = [(0.0, 0.0, native.zero_count)] if native.zero_count else []
    return [*reversed(negative), *zero, *positive]


def stored_histogram(prom: Prometheus, selector: str) -> dict[str, Any]:
    (result,) = prom.query(selector)
    assert "histogram" in result, f"{selector} is not stored as a native histogram: {result}"
    histogram: dict[str, Any] = result["histogram"][1]
    return histogram


@pytest.mark.parametrize(("key", "name", "labels"), [(LATENCY, NAME, SPY), (SLIPPAGE, SLIPPAGE_NAME, SLIP)])
def test_prometheus_stores_the_native_histogram_the_handle_holds(
    recorded: tuple[PlaneMetrics, Any, str, MetricsServer],
    prom: Prometheus,
    key: str,
    name: str,
    labels: dict[str, str],
) -> None:
    """/api/v1/query returns the series as a native histogram with the handle's count, sum and buckets
    (boundaries and counts), negative and zero buckets included."""
    counts, total, native = _snapshot(recorded[0], key, labels)
    matchers = ",".join(f'{k}="{v}"' for k, v in labels.items())
    histogram = stored_histogram(prom, f"{name}{{{matchers}}}")
    assert float(histogram["count"]) == sum(counts)
    assert math.isclose(float(histogram["sum"]), total, rel_tol=1e-12)
    stored = [(float(lower), float(upper), int(count)) for _, lower, upper, count in histogram["buckets"]]
    expected = expected_buckets(native)
    assert [count for _, _, count in stored] == [count for _, _, count in expected]
    for (lower, upper, _), (want_lower, want_upper, _) in zip(stored, expected, strict=True):
        assert math.isclose(lower, want_lower, rel_tol=1e-9)
        assert math.isclose(upper, want_upper, rel_tol=1e-9)


def test_the_classic_buckets_are_stored_beside_the_native_ones(
    recorded: tuple[PlaneMetrics, Any, str, MetricsServer], prom: Prometheus
) -> None:
    """always_scrape_classic_histograms: the documented _bucket, _count and _sum series hold the handle's
    cumulative counts, count and sum."""
    metrics = recorded[0]
    counts, total, _ = _snapshot(metrics, LATENCY, SPY)
    bounds = [*(metrics.store.specs[LATENCY].buckets or ()), math.inf]
    stored = {float(s["metric"]["le"]): float(s["value"][1]) for s in prom.query(f'{NAME}_bucket{{symbol="SPY"}}')}
    assert stored == {bound: float(sum(counts[: i + 1])) for i, bound in enumerate(bounds)}
    assert prom.value(f'{NAME}_count{{symbol="SPY"}}') == sum(counts)
    assert math.isclose(prom.value(f'{NAME}_sum{{symbol="SPY"}}') or 0, total, rel_tol=1e-12)
    assert prom.query(f"{SLIPPAGE_NAME}_sum") == []  # dropped as the text formats leave it out


def test_an_observation_in_a_span_is_stored_as_an_exemplar(
    recorded: tuple[PlaneMetrics, Any, str, MetricsServer], prom: Prometheus
) -> None:
    """/api/v1/query_exemplars finds the span's trace id and the observed value, on the classic bucket and
    the native series."""
    trace_id = recorded[2]
    now = time.time()
    for selector in (f'{NAME}_bucket{{symbol="QQQ"}}', f'{NAME}{{symbol="QQQ"}}'):
        found = prom.api("query_exemplars", query=selector, start=str(now - 600), end=str(now + 60))
        exemplars = [e for series in found for e in series["exemplars"]]
        assert [(e["labels"].get("trace_id"), float(e["value"])) for e in exemplars][-1:] == [(trace_id, 0.0042)], (
            selector,
            found,
        )


def test_histogram_quantile_on_the_native_series_is_within_5_percent(
    recorded: tuple[PlaneMetrics, Any, str, MetricsServer], prom: Prometheus
) -> None:
    """100,000 lognormal latencies (median 2 ms, sigma 0.9): histogram_quantile at 0.5, 0.99 and 0.999 on the
    native series is within 5 % of the sample's exact quantile; the classic series' error is printed beside."""
    sample = recorded[1]
    rows = []
    for q in QUANTILES:
        exact = float(np.quantile(sample, q))
        native = prom.value(f'histogram_quantile({q}, {NAME}{{symbol="SPY"}})')
        classic = prom.value(f'histogram_quantile({q}, {NAME}_bucket{{symbol="SPY"}})')
        assert native is not None
        assert classic is not None
        rows.append((q, exact, native, classic))
    print(f"\n{OBSERVATIONS:,} lognormal observations (median {MEDIAN * 1e3:g} ms, sigma {SIGMA}, seed {SEED})")
    print("| quantile | exact (ms) | native (ms) | native error | classic (ms) | classic error |")
    print("|---|---|---|---|---|---|")
    for q, exact, native, classic in rows:
        print(
            f"| {q} | {exact * 1e3:.4f} | {native * 1e3:.4f} | {(native - exact) / exact:+.2%} "
            f"| {classic * 1e3:.4f} | {(classic - exact) / exact:+.2%} |"
        )
    for q, exact, native, _ in rows:
        assert abs(native - exact) <= TOLERANCE * exact, (q, exact, native)


def test_counters_gauges_self_metrics_and_target_info_arrive_over_protobuf(
    recorded: tuple[PlaneMetrics, Any, str, MetricsServer], prom: Prometheus
) -> None:
    """The same scrape stores target_info (a gauge of 1 with the Resource's labels), a counter and the
    uptime gauge under their text-format names and types, the counter's family named with _total."""
    (info,) = prom.query('target_info{job="trading-planes"}')
    assert float(info["value"][1]) == 1
    assert info["metric"]["service_name"] == "order_plane"
    metadata = {m["metric"]: m["type"] for m in prom.api("targets/metadata", match_target='{job="trading-planes"}')}
    assert metadata["target_info"] == "gauge"
    assert metadata["trading_telemetry_uptime_seconds"] == "gauge"
    assert metadata[NAME] == "histogram"
    assert metadata["orders_received_total"] == "counter"
    assert prom.value('orders_received_total{symbol="SPY",direction="BUY"}') == 3
    uptime = prom.value('trading_telemetry_uptime_seconds{job="trading-planes"}')
    assert uptime is not None
    assert uptime > 0
