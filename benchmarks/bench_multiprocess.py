"""Multiprocess mode's cost, against the default mode and prometheus_client's multiprocess
mode, measured in one run.

    .venv/bin/python benchmarks/bench_multiprocess.py [--quick]

Prints the median per-call cost of recording (keyed inc, bound inc/set/observe) with
TRADING_TELEMETRY_MULTIPROCESS_DIR set and without, and the ratio; beside it the same
ratio for prometheus_client (PROMETHEUS_MULTIPROC_DIR's mmap values against its default
values). Then the time to render /metrics summed from the files of N forked workers each
recording the same series, against rendering those series from one process's handles:
while the workers run (every scrape reads their files), and once they have ended (their
files read once); beside it prometheus_client's MultiProcessCollector against its default
registry. The
directories are on /dev/shm when it exists (a tmpfs, as recommended for both).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import timeit
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

from trading_telemetry import TelemetryConfig, init_metrics_exporter, reset
from trading_telemetry.catalog import spec

FRESHNESS = spec("data_plane", "data_freshness")
LABELS = {"source": "ibkr_rt", "symbol": "SPY"}


def median_us(fn: Callable[[], object], calls: int, repeats: int) -> float:
    return statistics.median(timeit.repeat(fn, number=calls, repeat=repeats)) / calls * 1e6


def scratch() -> str:
    return tempfile.mkdtemp(prefix="bench-multiprocess-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)


def prometheus_client_metrics(multiprocess_dir: str | None) -> tuple[Callable[[], object], ...]:
    """prometheus_client's inc, set, observe on pre-bound children: default values, or the
    mmap values of its multiprocess mode (what PROMETHEUS_MULTIPROC_DIR selects at import)."""
    registry = CollectorRegistry()
    saved = values.ValueClass
    if multiprocess_dir is not None:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiprocess_dir
        values.ValueClass = values.MultiProcessValue()
    try:
        counter = Counter("p_ticks", "x", ["source", "symbol"], registry=registry).labels("ibkr_rt", "SPY")
        gauge = Gauge("p_complete", "x", ["symbol"], registry=registry, multiprocess_mode="mostrecent").labels("SPY")
        histogram = Histogram("p_fresh", "x", ["source", "symbol"], buckets=FRESHNESS.buckets, registry=registry)
        child = histogram.labels("ibkr_rt", "SPY")
    finally:
        values.ValueClass = saved
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return counter.inc, lambda: gauge.set(0.97), lambda: child.observe(0.012)


def hot_path(calls: int, repeats: int) -> None:
    directory = scratch()
    try:
        reset()
        one = init_metrics_exporter("data_plane", config=TelemetryConfig())
        one_ops = [
            lambda: one.inc("ticks_received", source="ibkr_rt", symbol="SPY"),
            one.bind("ticks_received", **LABELS).inc,
            (lambda g: lambda: g.set(0.97))(one.bind("completeness_score", symbol="SPY")),
            (lambda h: lambda: h.observe(0.012))(one.bind("data_freshness", **LABELS)),
        ]
        reset()  # the handles and the metrics object go on recording; a new plane takes the name
        many = init_metrics_exporter("data_plane", config=TelemetryConfig(multiprocess_dir=directory))
        many_ops = [
            lambda: many.inc("ticks_received", source="ibkr_rt", symbol="SPY"),
            many.bind("ticks_received", **LABELS).inc,
            (lambda g: lambda: g.set(0.97))(many.bind("completeness_score", symbol="SPY")),
            (lambda h: lambda: h.observe(0.012))(many.bind("data_freshness", **LABELS)),
        ]
        p_one = (None, *prometheus_client_metrics(None))
        p_many = (None, *prometheus_client_metrics(directory))
        names = ["metrics.inc(key, **labels)", "bound inc()", "bound set()", "bound observe()"]
        print(
            f"{'operation':28} {'default µs':>10} {'multiprocess µs':>16} {'ratio':>6}  {'prometheus_client ratio':>23}"
        )
        for i, name in enumerate(names):
            base = median_us(one_ops[i], calls, repeats)
            ours = median_us(many_ops[i], calls, repeats)
            theirs = ""
            p_base, p_mp = p_one[i], p_many[i]
            if p_base is not None and p_mp is not None:
                theirs = f"{median_us(p_mp, calls, repeats) / median_us(p_base, calls, repeats):6.2f}"
            print(f"{name:28} {base:10.3f} {ours:16.3f} {ours / base:6.2f}  {theirs:>23}")
        reset()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def record_symbols(metrics: object, symbols: int) -> None:
    for i in range(symbols):
        labels = {"source": "ibkr_rt", "symbol": f"S{i:04d}"}
        metrics.inc("ticks_received", 3, **labels)  # type: ignore[attr-defined]
        metrics.observe("data_freshness", 0.012 * (i % 7), **labels)  # type: ignore[attr-defined]


def render_side(symbols: int, workers: int, repeats: int) -> None:
    """Render /metrics: ``workers`` forked processes and the parent each recording the same
    ``symbols`` x (a counter and a histogram), summed from their files; against one
    process's handles with the same series."""
    directory, p_directory = scratch(), scratch()
    try:
        reset()
        one = init_metrics_exporter("data_plane", config=TelemetryConfig(cardinality_limit=100_000))
        record_symbols(one, symbols)
        assert one.exposition is not None
        one_render = one.exposition.render
        one_s = statistics.median(timeit.repeat(one_render, number=1, repeat=repeats))
        reset()
        many = init_metrics_exporter(
            "data_plane", config=TelemetryConfig(cardinality_limit=100_000, multiprocess_dir=directory)
        )
        record_symbols(many, symbols)
        release, hold = os.pipe()  # the workers run until the write end closes
        pids = []
        for _ in range(workers):
            ready, done = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(hold)
                    record_symbols(many, symbols)
                    os.write(done, b"x")
                    os.read(release, 1)
                finally:
                    os._exit(0)
            os.read(ready, 1)
            os.close(ready)
            os.close(done)
            pids.append(pid)
        assert many.exposition is not None
        render = many.exposition.render
        total = (
            f'data_ticks_received_total{{service="data_plane",source="ibkr_rt",symbol="S0000"}} {3.0 * (workers + 1)}'
        )
        assert total in render().decode(), "the sum over the processes"
        live_s = statistics.median(timeit.repeat(render, number=1, repeat=repeats))
        os.close(hold)
        for pid in pids:
            os.waitpid(pid, 0)
        os.close(release)
        first = timeit.timeit(render, number=1)  # reads the ended files one last time
        assert total in render().decode(), "the sum over the processes, ended"
        ended_s = statistics.median(timeit.repeat(render, number=1, repeat=repeats))
        reset()

        p_one_registry = CollectorRegistry()
        p_counter = Counter("p_ticks", "x", ["source", "symbol"], registry=p_one_registry)
        p_hist = Histogram("p_fresh", "x", ["source", "symbol"], buckets=FRESHNESS.buckets, registry=p_one_registry)
        for i in range(symbols):
            p_counter.labels("ibkr_rt", f"S{i:04d}").inc(3)
            p_hist.labels("ibkr_rt", f"S{i:04d}").observe(0.012 * (i % 7))
        p_one_s = statistics.median(timeit.repeat(lambda: generate_latest(p_one_registry), number=1, repeat=repeats))
        saved = values.ValueClass
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = p_directory
        try:
            for _ in range(workers + 1):
                pid = os.fork()
                if pid == 0:
                    try:
                        values.ValueClass = values.MultiProcessValue()
                        registry = CollectorRegistry()
                        counter = Counter("p_ticks", "x", ["source", "symbol"], registry=registry)
                        hist = Histogram("p_fresh", "x", ["source", "symbol"], buckets=FRESHNESS.buckets,
                                         registry=registry)  # fmt: skip
                        for i in range(symbols):
                            counter.labels("ibkr_rt", f"S{i:04d}").inc(3)
                            hist.labels("ibkr_rt", f"S{i:04d}").observe(0.012 * (i % 7))
                    finally:
                        os._exit(0)
                os.waitpid(pid, 0)
            p_many_registry = CollectorRegistry()
            MultiProcessCollector(p_many_registry, path=p_directory)
            p_many_s = statistics.median(
                timeit.repeat(lambda: generate_latest(p_many_registry), number=1, repeat=repeats)
            )
        finally:
            values.ValueClass = saved
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        series = symbols * 2
        print(f"\nrender /metrics of {series} series (counter + histogram per symbol), {workers + 1} processes' files:")
        print(f"  ours: one process {one_s * 1000:.1f} ms; summed from the files of {workers + 1} running "
              f"processes {live_s * 1000:.1f} ms, ratio {live_s / one_s:.2f}")  # fmt: skip
        print(f"  ours, the workers ended: first scrape {first * 1000:.1f} ms, then {ended_s * 1000:.1f} ms, "
              f"ratio {ended_s / one_s:.2f}")  # fmt: skip
        print(f"  prometheus_client: one process {p_one_s * 1000:.1f} ms, MultiProcessCollector "
              f"{p_many_s * 1000:.1f} ms, ratio {p_many_s / p_one_s:.2f}")  # fmt: skip
        print(f"  summed from files, ours (running) / prometheus_client's: {live_s / p_many_s:.2f}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(p_directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer calls, for a smoke run")
    args = parser.parse_args()
    calls, repeats = (5_000, 3) if args.quick else (100_000, 9)
    hot_path(calls, repeats)
    render_side(50 if args.quick else 1000, 2 if args.quick else 4, 3 if args.quick else 7)


if __name__ == "__main__":
    main()
