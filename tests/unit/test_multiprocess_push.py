"""TRADING_TELEMETRY_MULTIPROCESS_PUSH=sum: a process of its own pushes every process's sum by OTLP, so that
the trading process neither renders nor pushes."""

from __future__ import annotations

import io
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from mp_workers import FRESHNESS, TICK_LABELS, fork, wait_exit
from trading_telemetry import TelemetryConfig, init_metrics_exporter
from trading_telemetry.errors import ConfigError

pytestmark = pytest.mark.filterwarnings("ignore:.*multi-threaded.*:DeprecationWarning")  # fork with threads, 3.12+


def _points(reader: InMemoryMetricReader) -> tuple[dict[str, dict[tuple[tuple[str, str], ...], Any]], Any]:
    """Each metric's points by sorted attributes, and the resource, from one collection."""
    data = reader.get_metrics_data()
    assert data is not None
    (resource_metrics,) = data.resource_metrics
    points: dict[str, dict[tuple[tuple[str, str], ...], Any]] = {}
    for scope in resource_metrics.scope_metrics:
        for metric in scope.metrics:
            for point in metric.data.data_points:
                points.setdefault(metric.name, {})[tuple(sorted(point.attributes.items()))] = point
    return points, resource_metrics.resource


SPY = tuple(sorted({**TICK_LABELS, "service": "data_plane"}.items()))
QQQ = tuple(sorted({**TICK_LABELS, "symbol": "QQQ", "service": "data_plane"}.items()))


def test_the_pushing_process_exports_every_processs_sum_as_the_planes_instance(tmp_path: Path) -> None:
    """Parent 5 ticks, children 7, 11 and 13 (one of them a symbol of its own): each collection carries the sums,
    growing from one to the next, with histograms and drops, under an instance id without a pid."""
    reader = InMemoryMetricReader()
    config = TelemetryConfig(multiprocess_dir=str(tmp_path / "mp"), multiprocess_push="sum", metrics_exporters=())
    metrics = init_metrics_exporter("data_plane", config=config, metric_readers=[reader])
    for _ in range(5):
        metrics.inc("ticks_received", **TICK_LABELS)

    def child(ticks: int) -> None:
        for _ in range(ticks):
            metrics.inc("ticks_received", **TICK_LABELS)
        metrics.observe("data_freshness", FRESHNESS[2], **TICK_LABELS)
        metrics.inc("ticks_received", -1, **TICK_LABELS)
        if ticks == 13:
            metrics.inc("ticks_received", 2, **{**TICK_LABELS, "symbol": "QQQ"})

    for pid in [fork(lambda n=n: child(n)) for n in (7, 11)]:
        assert wait_exit(pid) == 0
    points, resource = _points(reader)
    assert points["data_ticks_received"][SPY].value == 5 + 7 + 11
    assert points["data_freshness"][SPY].count == 2
    assert resource.attributes["service.instance.id"] == f"{socket.gethostname()}/data_plane"
    assert wait_exit(fork(lambda: child(13))) == 0
    points, _ = _points(reader)
    assert points["data_ticks_received"][SPY].value == 5 + 7 + 11 + 13
    assert points["data_ticks_received"][QQQ].value == 2
    assert points["data_freshness"][SPY].count == 3
    assert points["data_freshness"][SPY].sum == pytest.approx(3 * FRESHNESS[2])
    drops = points["trading_telemetry_dropped_measurements"]
    assert [p.value for p in drops.values()] == [3]


def test_one_series_per_process_cannot_be_pushed_as_the_sum(tmp_path: Path) -> None:
    """TRADING_TELEMETRY_MULTIPROCESS_GAUGE=liveall with PUSH=sum is refused, naming both settings."""
    config = TelemetryConfig(
        multiprocess_dir=str(tmp_path / "mp"), multiprocess_push="sum", multiprocess_gauge="liveall",
        metrics_exporters=(),
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"MULTIPROCESS_PUSH.*liveall"):
        init_metrics_exporter("data_plane", config=config, metric_readers=[InMemoryMetricReader()])


def test_a_live_gauge_of_processes_that_all_ended_is_no_longer_pushed(tmp_path: Path) -> None:
    """With livesum gauges, a worker's gauge is pushed while it runs, and no longer once it ended (as /metrics
    drops it), instead of its last value forever."""
    from mp_workers import Worker

    reader = InMemoryMetricReader()
    config = TelemetryConfig(
        multiprocess_dir=str(tmp_path / "mp"), multiprocess_push="sum", multiprocess_gauge="livesum",
        metrics_exporters=(),
    )  # fmt: skip
    metrics = init_metrics_exporter("data_plane", config=config, metric_readers=[reader])
    worker = Worker(metrics)
    worker.ask("gauge 0.75")
    points, _ = _points(reader)
    spy = (("service", "data_plane"), ("symbol", "SPY"))
    assert points["data_completeness_score"][spy].value == 0.75
    worker.stop()
    points, _ = _points(reader)
    assert spy not in points.get("data_completeness_score", {})


def test_a_forked_child_of_the_pushing_process_pushes_its_own(tmp_path: Path) -> None:
    """A child forked from the process that pushes the sum pushes only what it records, under an instance of its
    own (its console export shows its 2 ticks, not the sum of 7): the sum is pushed once, by the parent."""
    reader = InMemoryMetricReader()
    config = TelemetryConfig(
        multiprocess_dir=str(tmp_path / "mp"), multiprocess_push="sum", metrics_exporters=("console",),
        metric_export_interval_ms=3_600_000,
    )  # fmt: skip
    metrics = init_metrics_exporter("data_plane", config=config, metric_readers=[reader])
    metrics.inc("ticks_received", 5, **TICK_LABELS)

    def child() -> None:
        metrics.inc("ticks_received", 2, **TICK_LABELS)
        printed = io.StringIO()
        (console,) = metrics.sdk.pushers
        console._inner.out = printed  # type: ignore[attr-defined]  # the SDK's ConsoleMetricExporter, this process's
        assert metrics.force_flush()
        text = printed.getvalue()
        exported = json.loads(text[text.index("{") : text.rindex("}") + 1])
        (resource_metrics,) = exported["resource_metrics"]
        assert resource_metrics["resource"]["attributes"]["service.instance.id"].endswith(f"/{os.getpid()}")
        values = [
            point["value"]
            for scope in resource_metrics["scope_metrics"]
            for metric in scope["metrics"]
            if metric["name"] == "data_ticks_received"
            for point in metric["data"]["data_points"]
        ]
        assert values == [2]

    assert wait_exit(fork(child)) == 0
    points, _ = _points(reader)
    assert points["data_ticks_received"][SPY].value == 7
