"""Recording and export cost against prometheus_client, measured in one run.

    .venv/bin/python benchmarks/bench_recording.py [--quick]

Prints the median per-call cost of each operation and its ratio to prometheus_client's
same operation (the machine's noise cancels in the ratios): the keyed call, the bound
handle's inc/set/observe, the raw OTel SDK instruments, an empty call, a `timed`
function; the same with 4 threads at once; then the time to render /metrics for
3 planes x 500 symbols and the memory per active series.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import threading
import time
import timeit
import tracemalloc
from collections.abc import Callable
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from trading_telemetry import TelemetryConfig, init_metrics_exporter, reset, timed
from trading_telemetry.catalog import CATALOG, Kind, Plane, spec

LATENCY = spec("order_plane", "total_fill_latency")
LABELS = {"source": "ibkr_rt", "symbol": "SPY"}
HIST_LABELS = {"strategy": "OFI", "symbol": "SPY", "order_type": "LIMIT"}


def median_us(fn: Callable[[], object], calls: int, repeats: int) -> float:
    return statistics.median(timeit.repeat(fn, number=calls, repeat=repeats)) / calls * 1e6


def threaded_us(fn: Callable[[], object], calls: int, threads: int = 4) -> float:
    """Wall time per call with ``threads`` threads each making ``calls`` calls."""
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        barrier.wait()
        for _ in range(calls):
            fn()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in pool:
        t.join()
    return (time.perf_counter() - start) / (calls * threads) * 1e6


def hot_path(calls: int, repeats: int) -> None:
    reset()
    ours = init_metrics_exporter("data_plane", config=TelemetryConfig())  # Prometheus pull reader, production mode
    order = init_metrics_exporter("order_plane", config=TelemetryConfig())
    strategy = init_metrics_exporter("strategy_plane", config=TelemetryConfig())
    bound_inc = ours.bind("ticks_received", **LABELS)
    bound_set = ours.bind("completeness_score", symbol="SPY")
    bound_obs = order.bind("total_fill_latency", **HIST_LABELS)

    reg = CollectorRegistry()
    p_counter = Counter("p_ticks", "x", ["source", "symbol"], registry=reg)
    p_gauge = Gauge("p_complete", "x", ["symbol"], registry=reg)
    p_hist = Histogram("p_fill", "x", ["strategy", "symbol", "order_type"], buckets=LATENCY.buckets, registry=reg)
    child_inc, child_set = p_counter.labels("ibkr_rt", "SPY"), p_gauge.labels("SPY")
    child_obs = p_hist.labels("OFI", "SPY", "LIMIT")

    # The raw OTel SDK, with a Prometheus reader as the plane has, and the same labels.
    provider = MeterProvider(
        metric_readers=[PrometheusMetricReader(registry=CollectorRegistry())],
        views=[View(instrument_name="raw_fill", aggregation=ExplicitBucketHistogramAggregation(LATENCY.buckets))],
    )
    meter = provider.get_meter("bench")
    raw_counter, raw_hist = meter.create_counter("raw_ticks"), meter.create_histogram("raw_fill")
    attrs, hist_attrs = {**LABELS, "service": "data_plane"}, {**HIST_LABELS, "service": "order_plane"}

    @timed("qp_solve_time")
    def solve() -> None:
        pass

    def bare() -> None:
        pass

    ops: list[tuple[str, Callable[[], object], Callable[[], object] | None]] = [
        ("metrics.inc(key, **labels)", lambda: ours.inc("ticks_received", source="ibkr_rt", symbol="SPY"),
         lambda: p_counter.labels("ibkr_rt", "SPY").inc()),
        ("bound inc()", bound_inc.inc, child_inc.inc),
        ("bound set()", lambda: bound_set.set(0.97), lambda: child_set.set(0.97)),
        ("bound observe()", lambda: bound_obs.observe(0.012), lambda: child_obs.observe(0.012)),
        ("raw OTel counter.add", lambda: raw_counter.add(1, attrs), lambda: p_counter.labels("ibkr_rt", "SPY").inc()),
        ("raw OTel histogram.record", lambda: raw_hist.record(0.012, hist_attrs), lambda: child_obs.observe(0.012)),
        ("empty call", bare, None),
    ]  # fmt: skip
    print(f"{'operation':34} {'ours µs':>9} {'prometheus_client µs':>21} {'ratio':>7}")
    results: dict[str, float] = {}
    for name, fn, baseline in ops:
        ours_us = median_us(fn, calls, repeats)
        results[name] = ours_us
        if baseline is None:
            print(f"{name:34} {ours_us:9.3f}")
            continue
        base_us = median_us(baseline, calls, repeats)
        print(f"{name:34} {ours_us:9.3f} {base_us:21.3f} {ours_us / base_us:7.2f}")

    bare_us = median_us(bare, calls, repeats)
    timed_added = median_us(solve, calls, repeats) - bare_us
    observe_us = results["bound observe()"]
    ratio = timed_added / observe_us
    print(f"{'timed function, tracing off':34} adds {timed_added:.3f} µs = {ratio:.2f}x bound observe()")

    print("\n4 threads recording at once (wall time per call):")
    for name, fn, baseline in ops[:4]:
        assert baseline is not None
        ours_us, base_us = threaded_us(fn, calls // 2), threaded_us(baseline, calls // 2)
        print(f"{name:34} {ours_us:9.3f} {base_us:21.3f} {ours_us / base_us:7.2f}")
    del strategy
    reset()


def export_side(symbols: int, repeats: int) -> None:
    """Render /metrics for 3 planes x ``symbols`` symbols, against prometheus_client."""
    reset()
    planes = {p: init_metrics_exporter(p, config=TelemetryConfig(cardinality_limit=100_000)) for p in Plane}
    reg = CollectorRegistry()
    ours_series = 0
    tracemalloc.start()
    gc.collect()
    before = tracemalloc.take_snapshot()
    for s in CATALOG:
        names = [f"S{i:04d}" for i in range(symbols)] if "symbol" in s.labels else ["-"]
        for sym in names:
            labels = {label: ("x" if label != "symbol" else sym) for label in s.labels}
            handle = planes[s.plane].bind(s.key, **labels)
            getattr(handle, s.kind.method)(1 if s.integral else 0.01)
            ours_series += 1
    for m in planes.values():  # the SDK's collection state is part of the series' cost
        m.exposition.render()  # type: ignore[union-attr]
    gc.collect()
    ours_bytes = sum(d.size_diff for d in tracemalloc.take_snapshot().compare_to(before, "filename"))

    before = tracemalloc.take_snapshot()
    families: dict[str, Any] = {}
    for s in CATALOG:
        label_names = [*s.labels, "service"]
        if s.kind is Kind.COUNTER:
            families[s.key] = Counter(
                s.prometheus_name.removesuffix("_total"), s.description, label_names, registry=reg
            )
        elif s.kind is Kind.GAUGE:
            families[s.key] = Gauge(s.prometheus_name, s.description, label_names, registry=reg)
        else:
            families[s.key] = Histogram(s.prometheus_name, s.description, label_names, buckets=s.buckets or (),
                                        registry=reg)  # fmt: skip
        names = [f"S{i:04d}" for i in range(symbols)] if "symbol" in s.labels else ["-"]
        for sym in names:
            values = [("x" if label != "symbol" else sym) for label in s.labels] + [s.plane.value]
            child = families[s.key].labels(*values)
            getattr(child, s.kind.method)(1 if s.integral else 0.01)
    generate_latest(reg)
    gc.collect()
    prom_bytes = sum(d.size_diff for d in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()

    ours_s = statistics.median(
        timeit.repeat(lambda: [m.exposition.render() for m in planes.values()], number=1, repeat=repeats)  # type: ignore[union-attr]
    )
    prom_s = statistics.median(timeit.repeat(lambda: generate_latest(reg), number=1, repeat=repeats))
    print(f"\nrender /metrics, 3 planes x {symbols} symbols ({ours_series} series):")
    print(f"  ours {ours_s * 1000:.1f} ms, prometheus_client {prom_s * 1000:.1f} ms, ratio {ours_s / prom_s:.2f}")
    print(f"  memory per active series: ours {ours_bytes / ours_series:.0f} B, "
          f"prometheus_client {prom_bytes / ours_series:.0f} B")  # fmt: skip
    reset()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer calls, for a smoke run")
    args = parser.parse_args()
    calls, repeats = (5_000, 3) if args.quick else (100_000, 9)
    hot_path(calls, repeats)
    export_side(50 if args.quick else 500, 3 if args.quick else 7)


if __name__ == "__main__":
    main()
