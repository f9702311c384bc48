"""What native histograms cost, against prometheus_client's classic histogram, measured in one run.

    .venv/bin/python benchmarks/bench_native.py [--quick]

Every figure has its baseline measured in the same run (interleaved rounds; the ratio's
median, min and max), on lognormal latencies (median 2 ms, sigma 1) unless said:

1. observe: a histogram with native buckets (``native: true``), keyed ``metrics.observe``
   and a bound handle's ``observe()``, against prometheus_client's classic
   ``Histogram(...).labels(...).observe()`` with the same buckets; our classic histogram
   beside it for reference;
2. memory per series after 1,000 observations on each of 2,000 series and a scrape of
   each format (tracemalloc): ours with native buckets against prometheus_client's classic
   child, and against ours classic;
3. the bucket count for workloads of growing range: the scale reached, the buckets used
   (at most 160 per side: resolution is halved as OpenTelemetry's ``max_size`` does) and
   the OpenTelemetry SDK's scale for the same observations;
4. a scrape of 20k series with native buckets, against prometheus_client's text render
   (``generate_latest``) of the same 20k classic series (thread CPU time): our protobuf
   exposition (the one format that carries native buckets), and our text and OpenMetrics
   renders of the same series (their classic buckets).

Goals: observe <= 1.0x; memory per native series <= prometheus_client's classic series;
buckets <= 160 per side; the scrape <= 0.2x.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import math
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from prometheus_client import CollectorRegistry, Histogram, generate_latest

import trading_telemetry._protobuf  # noqa: F401 - its varint tables, built at import, are no series' memory
from trading_telemetry import PlaneMetrics, TelemetryConfig, init_metrics_exporter, reset
from trading_telemetry._exposition import OPENMETRICS, PROTOBUF, TEXT, PlaneExposition
from trading_telemetry._native import MAX_BUCKETS, MAX_SCALE, NativeBuckets
from trading_telemetry.catalog import extend, spec

LATENCY = spec("order_plane", "total_fill_latency")
NATIVE = dataclasses.replace(LATENCY, key="native_fill_latency", name="native_fill_latency", documented=None,
                             native=True)  # fmt: skip
LABELS = {"strategy": "OFI", "symbol": "SPY", "order_type": "LIMIT"}
MEDIAN, SIGMA = 0.002, 1.0


def latencies(n: int, seed: int, median: float = MEDIAN, sigma: float = SIGMA) -> list[float]:
    rng = random.Random(seed)
    mu = math.log(median)
    return [rng.lognormvariate(mu, sigma) for _ in range(n)]


def order_plane(**config: Any) -> PlaneMetrics:
    """A fresh Order plane (/metrics only) whose catalog also has NATIVE: the same metric, opted in."""
    reset()
    extend([NATIVE])
    return init_metrics_exporter(
        "order_plane", config=TelemetryConfig(metrics_exporters=("prometheus",), cardinality_limit=100_000, **config)
    )


def prometheus_histogram(registry: CollectorRegistry) -> Histogram:
    """prometheus_client's classic histogram of the same name, help, labels and buckets."""
    return Histogram(LATENCY.prometheus_name, LATENCY.description, [*LABELS, "service"], buckets=LATENCY.buckets or (),
                     registry=registry)  # fmt: skip


def ratios(values: list[float], base: list[float]) -> str:
    r = [a / b for a, b in zip(values, base, strict=True)]
    return f"{statistics.median(r):5.2f}x  (min {min(r):.2f}, max {max(r):.2f})"


def observe(calls: int, rounds: int) -> None:
    """Per-call cost of observe, interleaved rounds, each against prometheus_client's in the same round."""
    metrics = order_plane()
    values = latencies(1000, seed=1)
    bound_native = metrics.bind("native_fill_latency", **LABELS)
    bound_classic = metrics.bind("total_fill_latency", **LABELS)
    family = prometheus_histogram(CollectorRegistry())
    child = family.labels(*LABELS.values(), "order_plane")
    keyed = metrics.observe

    def loop(fn: Callable[[float], object]) -> Callable[[], None]:
        def run() -> None:
            for value in values:
                fn(value)

        return run

    ops: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {
        "native: metrics.observe(key, v, **labels)": (
            loop(lambda v: keyed("native_fill_latency", v, **LABELS)),
            loop(lambda v: family.labels("OFI", "SPY", "LIMIT", "order_plane").observe(v)),
        ),
        "native: bound observe(v)": (loop(bound_native.observe), loop(child.observe)),
        "classic: metrics.observe(key, v, **labels)": (
            loop(lambda v: keyed("total_fill_latency", v, **LABELS)),
            loop(lambda v: family.labels("OFI", "SPY", "LIMIT", "order_plane").observe(v)),
        ),
        "classic: bound observe(v)": (loop(bound_classic.observe), loop(child.observe)),
    }
    repeat = max(1, calls // len(values))
    ours: dict[str, list[float]] = {name: [] for name in ops}
    theirs: dict[str, list[float]] = {name: [] for name in ops}
    for _ in range(rounds):
        for name, (fn, baseline) in ops.items():
            for costs, f in ((ours, fn), (theirs, baseline)):
                start = time.perf_counter()
                for _ in range(repeat):
                    f()
                costs[name].append((time.perf_counter() - start) / (repeat * len(values)) * 1e6)
    print(f"1. observe, lognormal latencies ({rounds} interleaved rounds of {repeat * len(values)} calls)")
    print(f"   {'':44} {'ours µs':>8} {'prometheus_client µs':>21}  ratio")
    for name in ops:
        print(f"   {name:44} {statistics.median(ours[name]):8.3f} {statistics.median(theirs[name]):21.3f}  "
              f"{ratios(ours[name], theirs[name])}")  # fmt: skip
    added = [n - c for n, c in zip(ours["native: bound observe(v)"], ours["classic: bound observe(v)"], strict=True)]
    print(f"   native buckets add {statistics.median(added):.3f} µs to a bound observe")
    reset()


def allocated(make: Callable[[], object]) -> tuple[int, object]:
    """Bytes still allocated after ``make()`` (tracemalloc), and what it made (kept alive)."""
    gc.collect()
    before = tracemalloc.take_snapshot()
    made = make()
    gc.collect()
    after = tracemalloc.take_snapshot()
    return sum(d.size_diff for d in after.compare_to(before, "filename")), made


def memory(series: int, per_series: int) -> None:
    """Bytes per series after the same workload: ours native, ours classic, prometheus_client classic."""
    pool = latencies(50_000, seed=2)
    symbols = [f"S{i:05d}" for i in range(series)]

    def workload(i: int) -> list[float]:  # each symbol its own median: 0.5x .. 2x the pool's
        start, factor = (i * 997) % (len(pool) - per_series), 2.0 ** ((i % 41) / 20 - 1)
        return [v * factor for v in pool[start : start + per_series]]

    def ours(metrics: PlaneMetrics, key: str) -> Callable[[], object]:
        def make() -> object:
            handles = []
            for i, symbol in enumerate(symbols):
                handle = metrics.bind(key, strategy="OFI", symbol=symbol, order_type="LIMIT")
                for value in workload(i):
                    handle.observe(value)
                handles.append(handle)
            for form in (TEXT, PROTOBUF):  # each series' labels, encoded at its first scrape and kept
                metrics.exposition.render(form)  # type: ignore[union-attr]
            return handles

        return make

    def theirs(registry: CollectorRegistry, family: Histogram) -> Callable[[], object]:
        def make() -> object:
            for i, symbol in enumerate(symbols):
                child = family.labels("OFI", symbol, "LIMIT", "order_plane")
                for value in workload(i):
                    child.observe(value)
            generate_latest(registry)  # as ours renders once; the body is not kept
            return family

        return make

    tracemalloc.start()
    sizes: dict[str, float] = {}
    buckets: list[int] = []
    for name, key in (("ours, native", "native_fill_latency"), ("ours, classic", "total_fill_latency")):
        metrics = order_plane()
        size, handles = allocated(ours(metrics, key))
        sizes[name] = size / series
        if key == "native_fill_latency":
            for handle in handles:  # type: ignore[attr-defined]
                snap = handle.snapshot_native()[4]
                buckets.append(len(snap.positive) + len(snap.negative))
        del handles, metrics
        reset()
    registry = CollectorRegistry()
    size, _ = allocated(theirs(registry, prometheus_histogram(registry)))
    sizes["prometheus_client, classic"] = size / series
    del registry
    tracemalloc.stop()
    base, classic = sizes["prometheus_client, classic"], sizes["ours, classic"]
    print(f"\n2. memory per series, {series} series x {per_series} lognormal observations (tracemalloc)")
    for name, per_series_bytes in sizes.items():
        print(f"   {name:28} {per_series_bytes:7.0f} B")
    native = sizes["ours, native"]
    print(f"   ours native / prometheus_client classic: {native / base:.2f}x;  ours native / ours classic: "
          f"{native / classic:.2f}x")  # fmt: skip
    print(f"   native buckets per series: {statistics.mean(buckets):.0f} on average, {max(buckets)} at most; "
          f"they add {native - classic:.0f} B")  # fmt: skip


def sdk_scale(values: list[float]) -> int:
    reader = InMemoryMetricReader()
    aggregation = ExponentialBucketHistogramAggregation(max_size=MAX_BUCKETS, max_scale=MAX_SCALE)
    provider = MeterProvider(metric_readers=[reader], views=[View(instrument_name="h", aggregation=aggregation)])
    histogram = provider.get_meter("bench").create_histogram("h")
    for value in values:
        histogram.record(value)
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    return data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0].scale  # type: ignore[union-attr]


def bucket_count(n: int) -> None:
    """Scale and buckets reached by workloads of growing range, and the SDK's scale for the same values."""
    rng = random.Random(3)
    workloads: list[tuple[str, list[float]]] = [
        (f"lognormal sigma {sigma}", latencies(n, seed=4, sigma=sigma)) for sigma in (0.1, 0.5, 1.0, 2.0, 5.0)
    ]
    workloads.append(("uniform 1e-6 .. 1e3", [rng.uniform(1e-6, 1e3) for _ in range(n)]))
    workloads.append(("log-uniform 1e-6 .. 1e3", [10 ** rng.uniform(-6, 3) for _ in range(n)]))
    print(f"\n3. buckets of one series, {n} observations (at most {MAX_BUCKETS} per side)")
    print(f"   {'workload':26} {'max/min':>9} {'scale':>6} {'SDK scale':>10} {'buckets':>8} {'bucket width':>13}")
    for name, values in workloads:
        native = NativeBuckets()
        for value in values:
            native.add(value)
        snap = native.snapshot()
        used = len(snap.positive)
        width = 2.0 ** (2.0**-snap.scale) - 1
        print(f"   {name:26} {max(values) / min(values):9.1e} {snap.scale:6d} {sdk_scale(values):10d} {used:8d} "
              f"{width * 100:12.2f}%")  # fmt: skip
        assert used <= MAX_BUCKETS


def renders(exposition: PlaneExposition) -> dict[str, Callable[[], bytes]]:
    """The plane's /metrics body in each format it serves."""
    forms = {"protobuf": PROTOBUF, "text": TEXT, "OpenMetrics": OPENMETRICS}
    return {name: functools.partial(exposition.render, form) for name, form in forms.items()}


def cpu_ms(fn: Callable[[], object]) -> float:
    start = time.thread_time()
    fn()
    return (time.thread_time() - start) * 1000


def scrape(series: int, per_series: int, rounds: int) -> None:
    """Render CPU of a scrape of ``series`` native series against generate_latest of the same classic ones."""
    metrics = order_plane(native_histograms="all")
    registry = CollectorRegistry()
    family = prometheus_histogram(registry)
    pool = latencies(50_000, seed=5)
    for i in range(series):
        symbol = f"S{i:05d}"
        handle = metrics.bind("total_fill_latency", strategy="OFI", symbol=symbol, order_type="LIMIT")
        child = family.labels("OFI", symbol, "LIMIT", "order_plane")
        start = (i * 997) % (len(pool) - per_series)
        for value in pool[start : start + per_series]:
            handle.observe(value)
            child.observe(value)
    assert metrics.exposition is not None
    bodies = renders(metrics.exposition)

    def baseline() -> bytes:
        return generate_latest(registry)

    sizes = {name: len(render()) for name, render in bodies.items()}  # also renders each series' labels once
    base_size = len(baseline())
    ours: dict[str, list[float]] = {name: [] for name in bodies}
    theirs: list[float] = []
    for _ in range(rounds):
        theirs.append(cpu_ms(baseline))
        for name, render in bodies.items():
            ours[name].append(cpu_ms(render))
    print(f"\n4. a scrape of {series} series, {per_series} lognormal observations each, with native buckets "
          f"(render CPU, {rounds} interleaved rounds)")  # fmt: skip
    print(f"   prometheus_client generate_latest, same series classic: {statistics.median(theirs):7.1f} ms, "
          f"{base_size / 1e6:.1f} MB")  # fmt: skip
    for name, costs in ours.items():
        print(f"   ours, {name + ':':12} {statistics.median(costs):7.1f} ms, {sizes[name] / 1e6:5.1f} MB   "
              f"{ratios(costs, theirs)}")  # fmt: skip
    reset()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and series: a smoke run")
    parser.add_argument("--parts", default="1,2,3,4", help="which parts to run, e.g. 1,4 (default: all)")
    args = parser.parse_args()
    parts = {int(part) for part in args.parts.split(",")}
    quick = args.quick
    if 1 in parts:
        observe(calls=5_000 if quick else 100_000, rounds=3 if quick else 9)
    if 2 in parts:
        memory(series=200 if quick else 2_000, per_series=1000)
    if 3 in parts:
        bucket_count(5_000 if quick else 100_000)
    if 4 in parts:
        scrape(series=1_000 if quick else 20_000, per_series=50 if quick else 200, rounds=2 if quick else 5)


if __name__ == "__main__":
    main()
