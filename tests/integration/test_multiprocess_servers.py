"""Pre-forked workers seen by a real Prometheus: on the pull path it scrapes the parent's
/metrics, summed over every worker's file; on the push path each worker exports to our
Collector build as an instance of its own, and Prometheus sums the instances."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import free_port, http_get, wait_for
from mp_workers import TICK_LABELS, Worker
from servers import Collector, Prometheus
from trading_telemetry import TelemetryConfig, init_metrics_exporter, reset, serve_metrics

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:.*multi-threaded.*:DeprecationWarning"),  # fork with threads, 3.12+
]


@contextlib.contextmanager
def server_process(cmd: list[str], **settings: str) -> Iterator[list[str]]:
    """``cmd`` (one of the package's servers) running while the block runs, with ``settings`` as its only OTEL_*
    and TRADING_TELEMETRY_* variables; then SIGTERM, on which it must exit 0. Its output is appended to the
    list yielded. The planes of this process are reset after."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRADING_TELEMETRY_"))} | settings
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    output: list[str] = []
    try:
        yield output
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=20)
        output.append(out)
        assert server.returncode == 0, err
    finally:
        server.kill()
        reset()


def test_prometheus_scrapes_the_exact_sum_of_pre_forked_workers_one_killed_and_replaced(
    tmp_path: Path, prometheus_factory: Callable[..., Prometheus]
) -> None:
    """The parent serves /metrics, three forked workers record, one is killed and replaced: Prometheus stores
    the sum of what every process recorded, the killed worker's ticks included, and keeps it once all ended."""
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(multiprocess_dir=str(tmp_path / "mp")))
    with serve_metrics(metrics, port=0) as server:
        prom = prometheus_factory({"planes": [f"127.0.0.1:{server.port}"]})
        metrics.inc("ticks_received", 2, **TICK_LABELS)
        workers = [Worker(metrics) for _ in range(3)]
        for n, worker in enumerate(workers):
            worker.ask(f"ticks {100 + n}")
        workers[1].kill()
        workers[1] = Worker(metrics)
        workers[1].ask("ticks 1000")
        expected = 2 + 100 + 101 + 102 + 1000
        query = 'sum(data_ticks_received_total{job="trading-planes"})'
        wait_for(f"Prometheus to store {expected}", lambda: prom.value(query) == expected, timeout=60)
        assert prom.value('sum(data_freshness_seconds_count{job="trading-planes"})') == 4
        assert len(prom.query('data_ticks_received_total{job="trading-planes"}')) == 1  # one series, summed
        for worker in workers:
            worker.stop()
        metrics.inc("ticks_received", **TICK_LABELS)
        wait_for("the total after every worker ended", lambda: prom.value(query) == expected + 1, timeout=60)
    reset()


def test_workers_push_as_instances_of_their_own_that_prometheus_sums(
    collector_factory: Callable[[], Collector], prometheus_factory: Callable[..., Prometheus]
) -> None:
    """Push only (OTLP to our Collector): the parent and three forked workers each export under a
    service.instance.id of their own; Prometheus, scraping the Collector, holds four series that sum to
    what they recorded."""
    collector = collector_factory()
    prom = prometheus_factory({"collector": [collector.prometheus_target]})
    config = TelemetryConfig.from_env(
        {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_METRIC_EXPORT_INTERVAL": "300", **collector.sdk_env()}
    )
    metrics = init_metrics_exporter("data_plane", config=config)
    metrics.inc("ticks_received", 5, **TICK_LABELS)
    workers = [Worker(metrics) for _ in range(3)]
    for worker, ticks in zip(workers, (7, 11, 13), strict=True):
        worker.ask(f"ticks {ticks}")
    query = 'data_ticks_received_total{job="trading/data_plane"}'
    expected = 5 + 7 + 11 + 13
    wait_for(f"four instances summing to {expected}", lambda: prom.value(f"sum({query})") == expected, timeout=60)
    host = socket.gethostname()
    instances = {s["metric"]["instance"]: float(s["value"][1]) for s in prom.query(query)}
    assert instances == {
        f"{host}/data_plane": 5,
        **{f"{host}/data_plane/{w.pid}": t for w, t in zip(workers, (7, 11, 13), strict=True)},
    }
    workers[0].ask("ticks 100")
    workers[0].stop()  # a clean exit: its last export carries the 100
    wait_for("an ended worker's last export", lambda: prom.value(f"sum({query})") == expected + 100, timeout=60)
    for worker in workers[1:]:
        worker.stop()
    assert reset(timeout=10)


def test_a_standalone_server_on_the_directory_serves_what_other_processes_record(tmp_path: Path) -> None:
    """`python -m trading_telemetry.metrics_server` with the directory set serves the sum of the processes
    writing there, this one and its forked worker included, and says so; it ends on SIGTERM."""
    directory = str(tmp_path / "mp")
    port = free_port()
    cmd = [sys.executable, "-m", "trading_telemetry.metrics_server", "data_plane", str(port)]
    with server_process(cmd, TRADING_TELEMETRY_MULTIPROCESS_DIR=directory) as output:
        metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(multiprocess_dir=directory))
        metrics.inc("ticks_received", 4, **TICK_LABELS)
        worker = Worker(metrics)
        worker.ask("ticks 6")
        line = 'data_ticks_received_total{service="data_plane",source="ibkr_rt",symbol="SPY"} 10.0'

        def served() -> bool:
            status, _, body = http_get(f"http://127.0.0.1:{port}/metrics")
            return status == 200 and line in body.decode().splitlines()

        wait_for("the standalone server to serve both processes' ticks", served, timeout=30)
        worker.stop()
    (out,) = output
    assert f"serving the sum of what every process writing to {directory}" in out


def test_an_export_process_pushes_the_sum_of_the_processes_as_the_planes_one_instance(
    tmp_path: Path, collector_factory: Callable[[], Collector], prometheus_factory: Callable[..., Prometheus]
) -> None:
    """`trading-telemetry serve` with TRADING_TELEMETRY_MULTIPROCESS_PUSH=sum pushes by OTLP to our Collector what
    this process and its forked worker record, neither of which exports: Prometheus, scraping the Collector, holds
    one series under the plane's instance (no pid), equal to the sum, and follows it as it grows."""
    collector = collector_factory()
    prom = prometheus_factory({"collector": [collector.prometheus_target]})
    directory = str(tmp_path / "mp")
    cmd = [sys.executable, "-m", "trading_telemetry.cli", "serve", "data_plane", "--port", str(free_port())]
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(multiprocess_dir=directory,
                                                                         metrics_exporters=()))  # fmt: skip
    with server_process(
        cmd, **collector.sdk_env(), TRADING_TELEMETRY_MULTIPROCESS_DIR=directory,
        TRADING_TELEMETRY_MULTIPROCESS_PUSH="sum", OTEL_METRICS_EXPORTER="otlp", OTEL_METRIC_EXPORT_INTERVAL="300",
    ):  # fmt: skip
        metrics.inc("ticks_received", 4, **TICK_LABELS)
        worker = Worker(metrics)
        worker.ask("ticks 6")
        query = 'data_ticks_received_total{job="trading/data_plane"}'
        wait_for("the sum of both processes", lambda: prom.value(f"sum({query})") == 10, timeout=60)
        instances = {s["metric"]["instance"]: float(s["value"][1]) for s in prom.query(query)}
        assert instances == {f"{socket.gethostname()}/data_plane": 10}
        worker.ask("ticks 5")
        worker.stop()
        wait_for("the sum after the worker ended", lambda: prom.value(f"sum({query})") == 15, timeout=60)
