"""OTLP through our real Collector build into a real Prometheus, against the direct path."""

from __future__ import annotations

import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from test_prometheus import normalised, stored_les

from helpers import http_get, labels_for, record_everything, sample_value, wait_for
from servers import Collector, Prometheus
from trading_telemetry import MetricsServer, TelemetryConfig, init_metrics_exporter, reset, serve_metrics, traced
from trading_telemetry.catalog import CATALOG, Kind, MetricSpec, Plane

pytestmark = pytest.mark.integration

TIMES = 3
DIRECT = 'job="trading-planes"'
VIA_COLLECTOR = 'job=~"trading/.+"'
IGNORED_LABELS = {"__name__", "job", "instance", "otel_scope_name", "otel_scope_version", "otel_scope_schema_url"}


def push_config(collector: Collector, *, pull: bool, interval_ms: int = 300) -> TelemetryConfig:
    return TelemetryConfig.from_env({
        "OTEL_METRICS_EXPORTER": "prometheus,otlp" if pull else "otlp",
        **collector.sdk_env(),
        "OTEL_METRIC_EXPORT_INTERVAL": str(interval_ms),
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1000",
        "TRADING_TELEMETRY_STRICT": "true",
    })  # fmt: skip


@pytest.fixture(autouse=True)
def _fresh_state() -> None:
    """Overrides the unit tests' reset-per-test: the planes here live for the module."""


@pytest.fixture(scope="module")
def both_paths(
    collector_factory: Callable[[], Collector], prometheus_factory: Callable[..., Prometheus]
) -> Iterator[Prometheus]:
    """One workload, exported by the planes' endpoints and through the Collector, in one Prometheus."""
    reset()
    collector = collector_factory()
    config = push_config(collector, pull=True)
    planes = {p: init_metrics_exporter(p, config=config) for p in Plane}
    record_everything(planes, times=TIMES)
    servers: list[MetricsServer] = [serve_metrics(planes[p], port=0) for p in Plane]
    prom = prometheus_factory(
        {"planes": [f"127.0.0.1:{s.port}" for s in servers], "collector": [collector.prometheus_target]}
    )
    prom.wait_for_scrapes(targets=4)
    wait_for(
        "every plane's series through the Collector",
        lambda: len(prom.query(f'count by (job) ({{{VIA_COLLECTOR}, service!=""}})')) == 3,
        timeout=60,
    )
    yield prom
    for server in servers:
        server.close()
    reset()


def _names(prom: Prometheus, spec: MetricSpec, where: str) -> set[str]:
    return {
        s["__name__"] for s in prom.series(f'{{__name__=~"{spec.prometheus_name}(_bucket|_sum|_count)?", {where}}}')
    }


def _label_keys(prom: Prometheus, spec: MetricSpec, where: str) -> set[frozenset[str]]:
    series = prom.series(f'{{__name__=~"{spec.prometheus_name}(_bucket|_sum|_count)?", {where}}}')
    return {frozenset(set(s) - IGNORED_LABELS) for s in series}


def _types(prom: Prometheus, job_match: str) -> dict[str, str]:
    metadata = prom.api("targets/metadata", match_target=f"{{{job_match}}}")
    return {m["metric"]: m["type"] for m in metadata}


@pytest.mark.parametrize("spec", CATALOG, ids=lambda s: s.prometheus_name)
def test_parity_of_names_labels_and_buckets(both_paths: Prometheus, spec: MetricSpec) -> None:
    """Both paths give the same series names, label keys and `le` values for the metric: the
    catalog's bounds as Prometheus 3 stores them, le="1.0" from either path."""
    prom = both_paths
    direct, collected = _names(prom, spec, DIRECT), _names(prom, spec, VIA_COLLECTOR)
    assert direct, f"{spec.prometheus_name} missing on the direct path"
    assert collected == direct
    assert _label_keys(prom, spec, VIA_COLLECTOR) == _label_keys(prom, spec, DIRECT)
    if spec.kind is Kind.HISTOGRAM:
        les = [
            stored_les(prom.series(f'{{__name__="{spec.prometheus_name}_bucket", {where}}}'))
            for where in (DIRECT, VIA_COLLECTOR)
        ]
        assert les[0] == les[1] == [normalised(b) for b in (*(spec.buckets or ()), float("inf"))]


def test_the_collector_writes_le_1_and_prometheus_stores_1_0(both_paths: Prometheus) -> None:
    """The Collector's exporter writes the bound 1 as le="1" (the planes write le="1.0"); Prometheus 3
    stores le="1.0" for both, so one `le` value selects the bucket on either path."""
    (target,) = [t for t in both_paths.api("targets")["activeTargets"] if t["labels"]["job"] == "otel-collector"]
    _, _, body = http_get(target["scrapeUrl"])
    name = "orders_total_fill_latency_seconds_bucket"
    exposed = {line.split('le="')[1].split('"')[0] for line in body.decode().splitlines() if line.startswith(name)}
    assert "1" in exposed, sorted(exposed)
    assert "1.0" not in exposed, sorted(exposed)
    for where in (DIRECT, VIA_COLLECTOR):
        assert both_paths.query(f'{name}{{{where}, le="1.0"}}'), where
        assert both_paths.query(f'{name}{{{where}, le="1"}}') == [], where


def test_parity_of_types(both_paths: Prometheus) -> None:
    """Prometheus records the same type for every catalog metric from both paths. The planes' job scrapes
    protobuf, which names a counter's family by its series (``_total``); the Collector's OpenMetrics names it
    without the suffix."""
    direct = _types(both_paths, 'job="trading-planes"')
    collected = _types(both_paths, 'job="otel-collector"')
    for spec in CATALOG:
        family = spec.prometheus_name.removesuffix("_total")
        assert direct.get(spec.prometheus_name) == collected.get(family) == spec.prometheus_type, family


@pytest.mark.parametrize("spec", CATALOG, ids=lambda s: s.prometheus_name)
def test_collector_path_values_equal_the_workload(both_paths: Prometheus, spec: MetricSpec) -> None:
    """Counter totals, histogram counts and gauge values through the Collector equal what was recorded."""
    selector = ", ".join(f'{k}="{v}"' for k, v in labels_for(spec).items())
    where = f"{VIA_COLLECTOR}{', ' + selector if selector else ''}"
    if spec.kind is Kind.HISTOGRAM:
        got = both_paths.value(f'{spec.prometheus_name}_bucket{{{where}, le="+Inf"}}')
        assert got == TIMES
    elif spec.kind is Kind.COUNTER:
        assert both_paths.value(f"{spec.prometheus_name}{{{where}}}") == pytest.approx(TIMES * sample_value(spec))
    else:
        assert both_paths.value(f"{spec.prometheus_name}{{{where}}}") == pytest.approx(sample_value(spec))


def test_collector_outage_loses_nothing_and_never_blocks(
    collector_factory: Callable[[], Collector], prometheus_factory: Callable[..., Prometheus]
) -> None:
    """With the Collector down, recording neither blocks nor raises and memory stays flat; once it is
    back, Prometheus' totals again equal everything recorded (cumulative temporality)."""
    reset()
    collector = collector_factory()
    metrics = init_metrics_exporter("data_plane", config=push_config(collector, pull=False))
    prom = prometheus_factory({"collector": [collector.prometheus_target]})
    ticks = metrics.bind("ticks_received", source="ibkr_rt", symbol="SPY")
    query = 'data_ticks_received_total{job="trading/data_plane", symbol="SPY"}'

    def recorded(n: int) -> Callable[[], bool]:
        return lambda: prom.value(query) == n

    for _ in range(1000):
        ticks.inc()
    wait_for("1000 ticks in Prometheus", recorded(1000), timeout=30)

    collector.stop()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    failures = lambda: metrics.health()["exporters"]["otlp"]["consecutive_failures"]  # noqa: E731
    deadline = time.monotonic() + 30
    batches = 0
    while failures() < 5:
        assert time.monotonic() < deadline, "the exporter never reported failures"
        for _ in range(500):
            ticks.inc()
        batches += 1
        time.sleep(0.01)  # pace the loop; the exporter works on its own thread
    recorded_during_outage = 500 * batches
    growth = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    assert metrics.health()["status"] == "degraded"
    # Never blocked, counted rather than timed: each failed export is retried up to the 1 s export timeout, 300 ms
    # apart, and recording that waited for the exporter would let about one batch through per export; the loop ran
    # 38 to 54 batches per failed export here (2 cores, loaded), so the guard at 15 keeps a margin of 2.5.
    failed = failures()
    assert batches >= 15 * failed, f"{batches} batches of 500 calls while {failed} exports failed"
    assert growth < 2_000_000, f"memory grew by {growth} bytes during the outage"

    collector.start()
    total = 1000 + recorded_during_outage
    wait_for(f"{total} ticks in Prometheus after the Collector returned", recorded(total), timeout=60)
    assert metrics.health()["status"] == "ok"
    reset()


def test_exemplar_carries_the_trace_id_into_prometheus(
    collector_factory: Callable[[], Collector], prometheus_factory: Callable[..., Prometheus]
) -> None:
    """A fill latency observed inside a span reaches Prometheus' exemplar storage with its trace id.

    The SDK hands each exemplar to one export only, and the Collector serves the latest
    export: Prometheus must scrape within one export interval (here 10 s against a 1 s
    scrape; by default 60 s against 5 s)."""
    reset()
    collector = collector_factory()
    spans = InMemorySpanExporter()
    config = push_config(collector, pull=False, interval_ms=10_000)
    metrics = init_metrics_exporter("order_plane", config=config, span_exporters=[spans])
    prom = prometheus_factory({"collector": [collector.prometheus_target]})
    labels = {"strategy": "OFI", "symbol": "SPY", "order_type": "LIMIT"}

    @traced(plane="order_plane", name="fill")
    def fill() -> None:
        metrics.observe("total_fill_latency", 0.02, **labels)

    fill()
    metrics.force_flush()
    (span,) = spans.get_finished_spans()
    trace_id = format(span.context.trace_id, "032x")  # type: ignore[union-attr]

    def exemplars() -> list[dict[str, Any]]:
        now = time.time()
        data = prom.api("query_exemplars", query="orders_total_fill_latency_seconds_bucket", start=now - 300, end=now)
        return [e for series in data for e in series["exemplars"]]

    found = wait_for("an exemplar in Prometheus", exemplars, timeout=60)
    assert {e["labels"].get("trace_id") for e in found} == {trace_id}
    assert found[0]["value"] == "0.02"
    reset()


def test_recording_threads_keep_exact_totals_through_the_collector(
    collector_factory: Callable[[], Collector], prometheus_factory: Callable[..., Prometheus]
) -> None:
    """Four threads recording at once: the total through the Collector is exact."""
    reset()
    collector = collector_factory()
    metrics = init_metrics_exporter("order_plane", config=push_config(collector, pull=False))
    prom = prometheus_factory({"collector": [collector.prometheus_target]})
    handle = metrics.bind("orders_received", strategy="OFI", symbol="SPY", direction="BUY", order_type="LIMIT")

    def work() -> None:
        for _ in range(5000):
            handle.inc()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for("20000 orders", lambda: prom.value('orders_received_total{job="trading/order_plane"}') == 20000)
    reset()
