"""What exporting costs the trading process, against its baselines, measured in one run.

    .venv/bin/python benchmarks/bench_export.py [--quick] [--sizes 1000,5000,20000] [--only-loop]

For planes of 1k / 5k / 20k series (counters, gauges and histograms, as a desk has them)
it prints, each as a ratio to a baseline measured in the same run over interleaved
rounds (min / median / max):

- render CPU: one /metrics body, ours vs prometheus_client's ``generate_latest`` over the
  same series (thread CPU time);
- OTLP collect + encode: our plane's SDK collection and protobuf encoding vs the raw OTel
  SDK's with the same instruments and series (thread CPU time);
- the trading loop: a thread doing 20 µs iterations, with a real HTTP scrape of the plane
  once a second vs without: p99.9 and worst iteration;
- OTLP exports every second (1 s collection deadline) while recording: how many carried
  every series;
- memory per active series, ours vs prometheus_client (tracemalloc), counters and gauges
  and histograms apart;
- an ``OrderLifecycle`` order vs the same records on bound handles: thread CPU time, and
  (full runs, when valgrind is installed) instructions counted by callgrind, which do not
  move with the machine's load.

Goals (issue 10): render <= 0.2x at 20k; p99.9 with scraping <= 1.5x without; OTLP
collect+encode <= 1.0x; memory per counter/gauge series <= 1.0x; lifecycle <= 1.5x.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from collections.abc import Callable
from typing import Any

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from trading_telemetry import OrderLifecycle, PlaneMetrics, TelemetryConfig, init_metrics_exporter, reset, serve_metrics
from trading_telemetry.catalog import Plane, spec

# A desk's mix on the Data plane: per symbol, two counters, a gauge and a histogram.
TICKS = spec("data_plane", "ticks_received")
OFI = spec("data_plane", "ofi_events_generated")
COMPLETE = spec("data_plane", "completeness_score")
FRESH = spec("data_plane", "data_freshness")
PER_SYMBOL = 4


def symbols(series: int) -> list[str]:
    return [f"S{i:05d}" for i in range(series // PER_SYMBOL)]


def fill_ours(metrics: PlaneMetrics, names: list[str], created: list[int] | None = None) -> None:
    """Record once on each symbol's four series; ``created`` gets, per symbol, the time
    (``time.time_ns``, the clock of OTel points) by which its four series existed."""
    for i, sym in enumerate(names):
        metrics.inc("ticks_received", i + 1, source="ibkr_rt", symbol=sym)
        metrics.inc("ofi_events_generated", source="ibkr_rt", symbol=sym)
        metrics.set("completeness_score", 0.5, symbol=sym)
        metrics.observe("data_freshness", 0.01 * (i % 50), source="ibkr_rt", symbol=sym)
        if created is not None:
            created.append(time.time_ns())


def existing(created: list[int], collection_start: int) -> int:
    """How many series existed when a collection began at ``collection_start`` (ns)."""
    return PER_SYMBOL * bisect.bisect_right(created, collection_start)


def short_exports(points: dict[int, int], created: list[int]) -> tuple[int, int, int]:
    """(exports short of the series that existed at their collection's start, exports,
    exports whose collection began while the series were still being created), from
    the points each export carried by collection start time (all of an export's points
    carry its collection's start as their time)."""
    short = sum(1 for start, n in points.items() if n < existing(created, start))
    during = sum(1 for start in points if start < created[-1])
    return short, len(points), during


def fill_prometheus_client(names: list[str]) -> CollectorRegistry:
    reg = CollectorRegistry()
    ticks = Counter(TICKS.prometheus_name.removesuffix("_total"), TICKS.description, ["source", "symbol", "service"],
                    registry=reg)  # fmt: skip
    ofi = Counter(OFI.prometheus_name.removesuffix("_total"), OFI.description, ["source", "symbol", "service"],
                  registry=reg)  # fmt: skip
    complete = Gauge(COMPLETE.prometheus_name, COMPLETE.description, ["symbol", "service"], registry=reg)
    fresh = Histogram(FRESH.prometheus_name, FRESH.description, ["source", "symbol", "service"],
                      buckets=FRESH.buckets or (), registry=reg)  # fmt: skip
    for i, sym in enumerate(names):
        ticks.labels("ibkr_rt", sym, "data_plane").inc(i + 1)
        ofi.labels("ibkr_rt", sym, "data_plane").inc()
        complete.labels(sym, "data_plane").set(0.5)
        fresh.labels("ibkr_rt", sym, "data_plane").observe(0.01 * (i % 50))
    return reg


def raw_sdk(names: list[str]) -> InMemoryMetricReader:
    """The raw OTel SDK with the same instruments, views and series."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        views=[View(instrument_name=FRESH.name, aggregation=ExplicitBucketHistogramAggregation(FRESH.buckets))],
    )
    meter = provider.get_meter("raw")
    ticks = meter.create_counter(TICKS.name)
    ofi = meter.create_counter(OFI.name)
    complete = meter.create_gauge(COMPLETE.name)
    fresh = meter.create_histogram(FRESH.name, unit="s")
    for i, sym in enumerate(names):
        ticks.add(i + 1, {"source": "ibkr_rt", "symbol": sym, "service": "data_plane"})
        ofi.add(1, {"source": "ibkr_rt", "symbol": sym, "service": "data_plane"})
        complete.set(0.5, {"symbol": sym, "service": "data_plane"})
        fresh.record(0.01 * (i % 50), {"source": "ibkr_rt", "symbol": sym, "service": "data_plane"})
    return reader


def cpu(fn: Callable[[], object]) -> float:
    start = time.thread_time()
    fn()
    return time.thread_time() - start


def spread(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):5.3f}x (min {min(ratios):.3f}, max {max(ratios):.3f})"


def collect_encode(reader: InMemoryMetricReader) -> Callable[[], object]:
    def run() -> object:
        data = reader.get_metrics_data()
        assert data is not None
        return encode_metrics(data).SerializeToString()

    return run


def render_and_otlp(size: int, rounds: int) -> None:
    reset()
    names = symbols(size)
    reader = InMemoryMetricReader()
    ours = init_metrics_exporter("data_plane", config=TelemetryConfig(cardinality_limit=10**7), metric_readers=[reader])
    fill_ours(ours, names)
    reg = fill_prometheus_client(names)
    raw = raw_sdk(names)
    assert ours.exposition is not None
    exposition = ours.exposition
    render: list[float] = []
    otlp: list[float] = []
    ours_render = prom_render = ours_otlp = raw_otlp = 0.0
    for _ in range(rounds):
        a, b = cpu(exposition.render), cpu(lambda: generate_latest(reg))
        render.append(a / b)
        ours_render, prom_render = a, b
        c, d = cpu(collect_encode(reader)), cpu(collect_encode(raw))
        otlp.append(c / d)
        ours_otlp, raw_otlp = c, d
    body, prom_body = exposition.render(), generate_latest(reg)
    last = f"{ours_render * 1000:7.1f} vs {prom_render * 1000:7.1f} ms"
    size = f"bytes {len(body) / len(prom_body):.2f}x ({len(body) / 1e6:.1f} vs {len(prom_body) / 1e6:.1f} MB)"
    print(f"  render /metrics          {spread(render)}   last: {last}   {size}")
    print(f"  OTLP collect + encode    {spread(otlp)}   last: {ours_otlp * 1000:7.1f} vs {raw_otlp * 1000:7.1f} ms")
    reset()


class CountingExporter(MetricExporter):
    """Encodes each export as the OTLP exporters do and counts its data points."""

    def __init__(self) -> None:
        super().__init__()
        self.points: dict[int, int] = {}  # collection start (ns) -> data points

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        encode_metrics(metrics_data).SerializeToString()
        metrics = [m for rm in metrics_data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
        for point in (p for m in metrics for p in m.data.data_points):
            self.points[point.time_unix_nano] = self.points.get(point.time_unix_nano, 0) + 1
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def otlp_interval(size: int, seconds: float) -> None:
    """Periodic OTLP exports every second (collection deadline 1 s) while the plane records:
    how many exports carried every series."""
    reset()
    exporter = CountingExporter()
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=1000, export_timeout_millis=1000)
    ours = init_metrics_exporter("data_plane", config=TelemetryConfig(cardinality_limit=10**7), metric_readers=[reader])
    names = symbols(size)
    created: list[int] = []
    fill_ours(ours, names, created)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        fill_ours(ours, names[:100])  # the desk keeps trading
    reset()
    short, exports, during = short_exports(exporter.points, created)
    print(
        f"  OTLP every 1 s for {seconds:.0f} s: {short} of {exports} exports short of the series that existed at "
        f"their collection's start ({during} began while the {len(names) * PER_SYMBOL} series were being created)"
    )


def loop_iterations(seconds: float, scrape_url: str | None, cpus: set[int] | None = None) -> list[float]:
    """Iteration times of a trading loop doing 20 µs of work per iteration, for ``seconds``,
    while another process scrapes ``scrape_url`` once a second, asking for gzip as
    Prometheus does."""
    scraper = None
    if scrape_url:
        code = (
            "import sys, time, urllib.request\n"
            "print('ready', flush=True)\n"
            "while True:\n"
            "    time.sleep(1.0)\n"
            f"    request = urllib.request.Request({scrape_url!r}, headers={{'Accept-Encoding': 'gzip'}})\n"
            "    urllib.request.urlopen(request, timeout=60).read()\n"
        )
        scraper = subprocess.Popen(pinned([*NICE, sys.executable, "-c", code], cpus), stdout=subprocess.PIPE, text=True)
        assert scraper.stdout is not None
        scraper.stdout.readline()  # started (its fork and start-up are not the exports' doing)
    times: list[float] = []
    clock = time.perf_counter
    end = clock() + seconds
    while True:
        start = clock()
        if start > end:
            break
        while clock() - start < 20e-6:
            pass
        times.append(clock() - start)
    if scraper is not None:
        scraper.terminate()
        scraper.wait()
    return times


def trading_loop(size: int, rounds: int, seconds: float) -> None:
    reset()
    ours = init_metrics_exporter("data_plane", config=TelemetryConfig(cardinality_limit=10**7))
    fill_ours(ours, symbols(size))
    p999: list[float] = []
    worst: list[float] = []
    last = (0.0, 0.0, 0.0, 0.0)
    with serve_metrics(ours, port=0) as server:
        for _ in range(rounds):
            quiet = sorted(loop_iterations(seconds, None))
            busy = sorted(loop_iterations(seconds, f"{server.url}/metrics"))
            q, b = quiet[int(len(quiet) * 0.999)], busy[int(len(busy) * 0.999)]
            p999.append(b / q)
            worst.append(busy[-1] / quiet[-1])
            last = (b, q, busy[-1], quiet[-1])
    print(f"  loop p99.9 scraped/quiet {spread(p999)}   last: {last[0] * 1e6:7.1f} vs {last[1] * 1e6:7.1f} us")
    print(f"  loop worst scraped/quiet {spread(worst)}   last: {last[2] * 1e3:7.2f} vs {last[3] * 1e3:7.2f} ms")
    reset()


RECEIVER = """
import gzip, json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest, ExportMetricsServiceResponse)

points = {}  # collection start (ns) -> data points received
last = {}  # collection start (ns) -> when its last request arrived (ns)
requests = [0]

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps the connection, as a Collector does

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportMetricsServiceRequest.FromString(body)
        requests[0] += 1
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    for p in getattr(m, m.WhichOneof("data")).data_points:
                        points[p.time_unix_nano] = points.get(p.time_unix_nano, 0) + 1
                        last[p.time_unix_nano] = time.time_ns()
        self._answer(ExportMetricsServiceResponse().SerializeToString(), "application/x-protobuf")

    def do_GET(self):
        self._answer(json.dumps({"points": points, "last": last, "requests": requests[0]}).encode(), "application/json")

    def _answer(self, body, kind):
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def percentile_999(times: list[float]) -> float:
    return sorted(times)[int(len(times) * 0.999)]


class GCPauses:
    """The interpreter's garbage collections while active: (generation, seconds) each."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self.active = False
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if not self.active:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._started))


NICE = ("nice", "-n", "10")
"""The scraper and the OTLP receiver stand for Prometheus and the Collector, which run elsewhere; on this
machine's cores they run at a lower priority, as the export process is advised to (docs/processes.md)."""
TRADING_CPU = 0
"""With an export process, the trading process runs on this CPU and the export process, the scraper and the
receiver on the others, as a desk pins its trading process to a core of its own (docs/processes.md)."""


ALL_CPUS = set(os.sched_getaffinity(0))
OTHER_CPUS = ALL_CPUS - {TRADING_CPU} or ALL_CPUS


def pinned(command: list[str], cpus: set[int] | None = OTHER_CPUS) -> list[str]:
    """``command`` run on ``cpus`` (None: anywhere). The affinity is set by a small Python
    that then execs the command, not by ``preexec_fn``, which runs between fork and exec of
    this multithreaded process and can hang on a lock another thread held at the fork."""
    if cpus is None:
        return command
    pin = "import os, sys; os.sched_setaffinity(0, {cpus}); os.execvp(sys.argv[1], sys.argv[1:])"
    return [sys.executable, "-c", pin.format(cpus=sorted(cpus)), *command]


def _export_process(directory: str, url: str) -> tuple[subprocess.Popen[bytes], str]:
    """``trading-telemetry serve data_plane`` in a process of its own, serving /metrics from the
    multiprocess directory and pushing every process's sum (TRADING_TELEMETRY_MULTIPROCESS_PUSH=sum) to
    ``url`` every second: started, and its /metrics URL once it answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ, "TRADING_TELEMETRY_MULTIPROCESS_DIR": directory, "TRADING_TELEMETRY_MULTIPROCESS_PUSH": "sum",
        "OTEL_METRICS_EXPORTER": "prometheus,otlp", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{url}/v1/metrics",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000", "OTEL_METRIC_EXPORT_TIMEOUT": "1000",
        "TRADING_TELEMETRY_CARDINALITY_LIMIT": str(10**7),
    }  # fmt: skip
    server = subprocess.Popen(
        pinned([*NICE, sys.executable, "-m", "trading_telemetry.cli", "serve", "data_plane", "--port", str(port)]),
        env=env,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server, f"http://127.0.0.1:{port}/metrics"
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise
            time.sleep(0.05)


def combined_load(size: int, rounds: int, seconds: float, freeze: bool = True, process: bool = False) -> None:
    """The trading loop while the plane is scraped over HTTP once a second and pushed by
    OTLP (http/protobuf, through the plane's own exporter) every second, both during the
    same measured window, against the loop with neither (interleaved rounds). A receiver
    in another process decodes every request and counts the points of each collection;
    an export is short if it carried fewer than the series that existed when its
    collection began.

    With ``freeze`` the plane's set-up objects are moved out of the collector's reach
    (``gc.freeze()``) after set-up, as a latency-minded process does after start-up: a
    full collection of the process's objects stops every thread for as long as it takes
    (tens of milliseconds at 20k series), whatever triggered it. The longest collection
    in the measured windows is printed either way.

    With ``process`` the trading process only records, into a multiprocess directory
    (TRADING_TELEMETRY_MULTIPROCESS_DIR, no exporter of its own), and a process of its own
    (``trading-telemetry serve`` with TRADING_TELEMETRY_MULTIPROCESS_PUSH=sum) is scraped
    and pushes."""
    receiver = subprocess.Popen(pinned([*NICE, sys.executable, "-c", RECEIVER]), stdout=subprocess.PIPE, text=True)
    assert receiver.stdout is not None
    url = f"http://127.0.0.1:{receiver.stdout.readline().strip()}"
    config = TelemetryConfig(
        cardinality_limit=10**7,
        metrics_exporters=("prometheus", "otlp"),
        otlp_metrics_endpoint=f"{url}/v1/metrics",
        metric_export_interval_ms=1000,
        metric_export_timeout_ms=1000,
    )

    def recording(directory: str) -> TelemetryConfig:
        return TelemetryConfig(cardinality_limit=10**7, metrics_exporters=(), multiprocess_dir=directory)

    p999: list[float] = []
    worst: list[float] = []
    worst_ms: list[float] = []
    quiet_ms: list[float] = []
    planes: list[tuple[int, int, list[int]]] = []  # (set up, shut down, series created), ns
    gc_pauses = GCPauses()
    gc.callbacks.append(gc_pauses)
    if process:
        os.sched_setaffinity(0, {TRADING_CPU})
    try:
        for _ in range(rounds):
            reset()
            quiet = loop_iterations(seconds, None)
            began = time.time_ns()
            directory = tempfile.mkdtemp(prefix="bench-export-")
            ours = init_metrics_exporter("data_plane", config=recording(directory) if process else config)
            created: list[int] = []
            fill_ours(ours, symbols(size), created)
            if freeze:
                gc.freeze()
            if process:
                exporter, scrape_url = _export_process(directory, url)
                try:
                    gc_pauses.active = True
                    busy = loop_iterations(seconds, scrape_url, cpus=OTHER_CPUS)
                    gc_pauses.active = False
                finally:
                    exporter.terminate()
                    exporter.wait()
            else:
                with serve_metrics(ours, port=0) as server:
                    gc_pauses.active = True
                    busy = loop_iterations(seconds, f"{server.url}/metrics")
                    gc_pauses.active = False
            reset()
            shutil.rmtree(directory, ignore_errors=True)
            gc.unfreeze()
            planes.append((began, time.time_ns(), created))
            p999.append(percentile_999(busy) / percentile_999(quiet))
            worst.append(max(busy) / max(quiet))
            worst_ms.append(max(busy) * 1e3)
            quiet_ms.append(max(quiet) * 1e3)
        with urllib.request.urlopen(f"{url}/counts", timeout=10) as answer:
            received = json.load(answer)
    finally:
        os.sched_setaffinity(0, ALL_CPUS)
        gc.callbacks.remove(gc_pauses)
        receiver.terminate()
        receiver.wait()
    took = sorted((int(end) - int(start)) / 1e9 for start, end in received["last"].items())
    short = exports = during = 0
    for began, ended, created in planes:
        points = {int(t): n for t, n in received["points"].items() if began <= int(t) <= ended}
        s, e, d = short_exports(points, created)
        short, exports, during = short + s, exports + e, during + d
    where = "in an export process" if process else "in the trading process"
    print(f"  scrape and OTLP {where}:")
    print(f"  loop p99.9 scraped+OTLP/quiet {spread(p999)}")
    print(f"  loop worst scraped+OTLP/quiet {spread(worst)}")
    print(
        f"  loop worst scraped+OTLP  {statistics.median(worst_ms):5.2f} ms (min {min(worst_ms):.2f}, max "
        f"{max(worst_ms):.2f});  quiet {statistics.median(quiet_ms):5.2f} ms (min {min(quiet_ms):.2f}, max "
        f"{max(quiet_ms):.2f})"
    )
    generation, longest = max(gc_pauses.pauses, key=lambda p: p[1], default=(0, 0.0))
    print(
        f"  garbage collections meanwhile ({'gc.freeze() after set-up' if freeze else 'no gc.freeze()'}): "
        f"{len(gc_pauses.pauses)}, longest {longest * 1e3:.2f} ms (generation {generation})"
    )
    print(
        f"  OTLP every 1 s meanwhile: {short} of {exports} exports short of the series that existed at their "
        f"collection's start ({during} began while the series were being created; {received['requests']} requests)"
    )
    print(
        f"  an export, from its collection's start to its last request: median {statistics.median(took):.2f} s "
        f"(max {max(took):.2f} s)"
    )


def memory(size: int) -> None:
    """Bytes per active series, ours (pull only: no SDK reader) vs prometheus_client."""
    names = symbols(size * PER_SYMBOL)  # size series of each kind
    results: dict[str, tuple[float, float]] = {}
    for kind, ours_fill, prom_fill in (
        ("counter", lambda m, s: m.inc("ticks_received", source="ibkr_rt", symbol=s),
         lambda reg: Counter("c", "c", ["source", "symbol", "service"], registry=reg)),
        ("gauge", lambda m, s: m.set("completeness_score", 0.5, symbol=s),
         lambda reg: Gauge("g", "g", ["symbol", "service"], registry=reg)),
        ("histogram", lambda m, s: m.observe("data_freshness", 0.01, source="ibkr_rt", symbol=s),
         lambda reg: Histogram("h", "h", ["source", "symbol", "service"], buckets=FRESH.buckets or (), registry=reg)),
    ):  # fmt: skip
        reset()
        ours = init_metrics_exporter("data_plane", config=TelemetryConfig(cardinality_limit=10**7))
        assert ours.exposition is not None
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for sym in names:
            ours_fill(ours, sym)
        ours.exposition.render()  # what a scrape keeps (the label strings) is part of the cost
        gc.collect()
        ours_bytes = sum(d.size_diff for d in tracemalloc.take_snapshot().compare_to(before, "filename"))
        tracemalloc.stop()
        reg = CollectorRegistry()
        family: Any = prom_fill(reg)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for sym in names:
            child = family.labels("ibkr_rt", sym, "data_plane") if kind != "gauge" else family.labels(sym, "data_plane")
            getattr(child, {"counter": "inc", "gauge": "set", "histogram": "observe"}[kind])(
                *([] if kind == "counter" else [0.5 if kind == "gauge" else 0.01])
            )
        gc.collect()
        prom_bytes = sum(d.size_diff for d in tracemalloc.take_snapshot().compare_to(before, "filename"))
        tracemalloc.stop()
        results[kind] = (ours_bytes / len(names), prom_bytes / len(names))
    for kind, (ours_b, prom_b) in results.items():
        print(f"  memory per {kind:<9} series {ours_b / prom_b:5.2f}x   {ours_b:6.0f} vs {prom_b:6.0f} B")
    reset()


def _lifecycle_workloads(m: Any) -> dict[str, Callable[[int], None]]:
    """An OrderLifecycle order, and the same nine records made on bound handles."""
    base = {"strategy": "OFI", "symbol": "SPY"}
    order = {**base, "direction": "BUY", "order_type": "LIMIT"}
    latency = {**base, "order_type": "LIMIT"}
    handles = {
        "received": m.bind("orders_received", **order), "submitted": m.bind("orders_submitted", **order),
        "filled": m.bind("orders_filled", **base, direction="BUY", status="FILLED"),
        "i2s": m.bind("intent_to_submit_latency", **latency), "s2a": m.bind("submit_to_ack_latency", **latency),
        "a2f": m.bind("ack_to_fill_latency", **latency), "total": m.bind("total_fill_latency", **latency),
        "slippage": m.bind("slippage_bps", **base, direction="BUY"), "commission": m.bind("commission_usd", **base),
    }  # fmt: skip

    def ours(orders: int) -> None:
        for _ in range(orders):
            o = OrderLifecycle(**order, metrics=m)
            o.intent(at=1.0)
            o.submitted(at=1.001)
            o.acked(at=1.002)
            o.filled(at=1.01, slippage_bps=-0.5, commission_usd=0.35)

    def by_hand(orders: int) -> None:
        h = handles
        for _ in range(orders):
            h["received"].inc()
            h["submitted"].inc()
            h["i2s"].observe(0.001)
            h["s2a"].observe(0.001)
            h["filled"].inc()
            h["a2f"].observe(0.008)
            h["total"].observe(0.01)
            h["slippage"].observe(-0.5)
            h["commission"].inc(0.35)

    return {"ours": ours, "by_hand": by_hand}


def lifecycle(orders: int, rounds: int, instructions: bool) -> None:
    reset()
    m = init_metrics_exporter("order_plane", config=TelemetryConfig())
    work = _lifecycle_workloads(m)
    ratios = [cpu(lambda: work["ours"](orders)) / cpu(lambda: work["by_hand"](orders)) for _ in range(rounds)]
    print(f"  OrderLifecycle vs the same 9 records on bound handles   {spread(ratios)}")
    reset()
    if instructions:
        # Instructions, not seconds: repeatable whatever else the machine does. Each
        # workload runs twice under callgrind; the difference is the per-order count.
        per_order = {}
        for name in ("ours", "by_hand"):
            counts = [_callgrind(name, n) for n in (1000, 11000)]
            per_order[name] = (counts[1] - counts[0]) / 10000
        ratio = per_order["ours"] / per_order["by_hand"]
        print(f"  OrderLifecycle vs bound handles, instructions (callgrind)   {ratio:.3f}x   "
              f"{per_order['ours']:,.0f} vs {per_order['by_hand']:,.0f} per order")  # fmt: skip


def _callgrind(workload: str, orders: int) -> int:
    """Instructions of this script running ``workload`` for ``orders`` orders under callgrind."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
         "--lifecycle-workload", workload, str(orders)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    (line,) = [line for line in done.stderr.splitlines() if "Collected :" in line]
    return int(line.split(":")[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few rounds: a smoke run")
    parser.add_argument("--sizes", help="series per plane, comma separated (default 1000,5000,20000; 400 quick)")
    parser.add_argument("--only-loop", action="store_true", help="only the trading loop under scrape and OTLP")
    parser.add_argument("--no-gc-freeze", action="store_true", help="no gc.freeze() after the combined load's set-up")
    parser.add_argument("--lifecycle-workload", nargs=2, metavar=("WORKLOAD", "ORDERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lifecycle_workload:  # one side of the instruction count, run under callgrind
        name, orders = args.lifecycle_workload
        _lifecycle_workloads(init_metrics_exporter("order_plane", config=TelemetryConfig()))[name](int(orders))
        reset()
        return
    sizes = [int(s) for s in (args.sizes or ("400" if args.quick else "1000,5000,20000")).split(",")]
    rounds, seconds = (2, 1.5) if args.quick else (5, 3.0)
    if args.only_loop:
        for size in sizes:
            print(f"{size} series (Data plane: {size // PER_SYMBOL} symbols x ticks, OFI, completeness, freshness)")
            combined_load(size, rounds, seconds, freeze=not args.no_gc_freeze)
            combined_load(size, rounds, seconds, freeze=not args.no_gc_freeze, process=True)
        return
    for size in sizes:
        print(f"{size} series (Data plane: {size // PER_SYMBOL} symbols x ticks, OFI, completeness, freshness)")
        render_and_otlp(size, rounds)
        trading_loop(size, max(1, rounds // 2), seconds)
        combined_load(size, rounds, seconds, freeze=not args.no_gc_freeze)
        combined_load(size, rounds, seconds, freeze=not args.no_gc_freeze, process=True)
        otlp_interval(size, 3 * seconds)
    print(f"memory ({sizes[-1]} series of each kind)")
    memory(sizes[-1])
    print("order lifecycle")
    lifecycle(200 if args.quick else 2000, rounds, instructions=not args.quick and shutil.which("valgrind") is not None)
    reset()


if __name__ == "__main__":
    Plane.parse("data_plane")
    main()
