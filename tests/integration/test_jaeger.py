"""The demo session's spans through our Collector build into a real Jaeger v2, read back
over Jaeger's query API (/api/v3), and the trace ids of the order-latency exemplars that a
real Prometheus scrapes from the Collector."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import http_get, wait_for
from servers import COMPOSE_FILE, JAEGER_DIR, Collector, Jaeger, Prometheus, require_binary

pytestmark = pytest.mark.integration

PLANES = {"data_plane", "strategy_plane", "order_plane"}
ORDER_LATENCIES = {
    "orders_intent_to_submit_latency_seconds", "orders_submit_to_ack_latency_seconds",
    "orders_ack_to_fill_latency_seconds", "orders_total_fill_latency_seconds",
}  # fmt: skip


@dataclass
class Pipeline:
    jaeger: Jaeger
    collector: Collector
    started: float
    demo: subprocess.Popen[bytes]
    demo_log: Path

    def demo_alive(self) -> bool:
        if self.demo.poll() is not None:
            raise AssertionError(f"the demo exited ({self.demo.returncode}):\n{self.demo_log.read_text()[-2000:]}")
        return True


@pytest.fixture(autouse=True)
def _fresh_state() -> None:
    """Overrides the unit tests' reset-per-test: nothing here records in this process."""


@pytest.fixture(scope="module")
def pipeline(
    jaeger_factory: Callable[[], Jaeger],
    collector_factory: Callable[..., Collector],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    """`trading-telemetry demo` pushing OTLP (metrics and spans, with the token) to our Collector,
    which sends the spans to Jaeger as compose's does (OTELCOL_TRACES_ENDPOINT)."""
    jaeger = jaeger_factory()
    collector = collector_factory(env={"OTELCOL_TRACES_ENDPOINT": jaeger.otlp_grpc})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRADING_TELEMETRY_"))}
    env.update(
        OTEL_METRICS_EXPORTER="otlp",
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_METRIC_EXPORT_INTERVAL="1000",
        **collector.sdk_env(),
    )
    cli = os.path.join(os.path.dirname(sys.executable), "trading-telemetry")
    log_path = tmp_path_factory.mktemp("demo") / "demo.log"
    started = time.time()
    with log_path.open("wb") as log:
        # --duration bounds it should the test not stop it.
        argv = [cli, "demo", "--rate", "200", "--seed", "7", "--base-port", "0", "--duration", "600"]
        demo = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        yield Pipeline(jaeger, collector, started, demo, log_path)
    finally:
        demo.terminate()  # SIGTERM: the demo stops its session and exits
        try:
            demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()


def _by_id(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {span["spanId"]: span for span in spans}


def _chain(spans: list[dict[str, Any]], order_span_id: str) -> list[tuple[str, str]]:
    """(service, name) of the order span and of its ancestors, up to the root."""
    by_id = _by_id(spans)
    chain: list[tuple[str, str]] = []
    span: dict[str, Any] | None = by_id.get(order_span_id)
    while span is not None:
        chain.append((span["service"], span["name"]))
        span = by_id.get(span.get("parentSpanId", ""))
    return chain


EXPECTED_CHAIN = [("order_plane", "execute_order"), ("strategy_plane", "evaluate_move"), ("data_plane", "handle_tick")]


def test_one_trace_spans_the_strategy_order_and_data_planes(pipeline: Pipeline) -> None:
    """Jaeger's trace search finds traces with spans of all three planes' services, in which an
    order's span (order_plane) is the child of the strategies' span (strategy_plane), itself the
    child of the tick's root span (data_plane)."""

    def three_plane_trace() -> tuple[str, list[dict[str, Any]]] | None:
        pipeline.demo_alive()
        for trace_id, spans in pipeline.jaeger.find_traces("order_plane", since=pipeline.started).items():
            if {s["service"] for s in spans} >= PLANES:
                return trace_id, spans
        return None

    trace_id, spans = wait_for("a trace with spans of the three planes in Jaeger", three_plane_trace, 60, 0.5)
    assert set(pipeline.jaeger.services()) >= PLANES
    orders = [s for s in spans if s["service"] == "order_plane" and s["name"] == "execute_order"]
    assert orders, spans
    for order in orders:
        assert _chain(spans, order["spanId"]) == EXPECTED_CHAIN, trace_id
    assert all(s["traceId"] == trace_id for s in spans)


def _order_latency_exemplars(prom: Prometheus, since: float) -> list[tuple[str, str, str]]:
    """(histogram, trace id, span id) of every exemplar Prometheus stored, since ``since``, on
    an order-latency bucket scraped from the Collector."""
    data = prom.api(
        "query_exemplars", query='{__name__=~"orders_.+_latency_seconds_bucket"}', start=since, end=time.time() + 60
    )
    return [
        (series["seriesLabels"]["__name__"].removesuffix("_bucket"), e["labels"]["trace_id"], e["labels"]["span_id"])
        for series in data
        for e in series["exemplars"]
    ]


def test_order_latency_exemplars_name_traces_jaeger_has(
    pipeline: Pipeline, prometheus_factory: Callable[..., Prometheus]
) -> None:
    """Every exemplar Prometheus stores from the Collector on the order-latency histograms names a
    trace Jaeger holds: its span is that trace's order span, which descends from the strategies'
    span and the tick's span, so an exemplar leads to the whole path from tick to order."""
    prom = prometheus_factory({"collector": [pipeline.collector.prometheus_target]})

    def stored() -> list[tuple[str, str, str]]:
        pipeline.demo_alive()
        found = _order_latency_exemplars(prom, pipeline.started)
        return found if len({name for name, _, _ in found}) == len(ORDER_LATENCIES) else []

    exemplars = wait_for("exemplars on the four order latencies in Prometheus", stored, 60, 0.5)
    assert {name for name, _, _ in exemplars} == ORDER_LATENCIES
    pending = {(trace_id, span_id) for _, trace_id, span_id in exemplars}

    def all_in_jaeger() -> bool:
        # An order's span is exported when the order ends, up to seconds after its exemplar.
        for trace_id, span_id in sorted(pending):
            spans = pipeline.jaeger.trace(trace_id)
            if spans is not None and _chain(spans, span_id) == EXPECTED_CHAIN:
                pending.discard((trace_id, span_id))
        return not pending

    wait_for(f"the traces of {len(exemplars)} exemplars in Jaeger", all_in_jaeger, 60, 0.5)
    # Grafana's Jaeger datasource, which the exemplars link to, reads /api/traces/<id>.
    trace_id = exemplars[0][1]
    status, _, body = http_get(f"{pipeline.jaeger.url}/api/traces/{trace_id}")
    assert status == 200, body[:500]
    (trace,) = json.loads(body)["data"]
    assert trace["traceID"] == trace_id
    assert {process["serviceName"] for process in trace["processes"].values()} == PLANES
    assert pipeline.jaeger.trace("0" * 31 + "1") is None  # an id Jaeger does not have: not found


def test_compose_healthcheck_passes_against_jaeger(pipeline: Pipeline) -> None:
    """The compose healthcheck's command, run with busybox (the image's wget is Alpine's busybox)
    against the test's Jaeger health address, succeeds."""
    busybox = require_binary("busybox", "busybox")
    command = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["jaeger"]["healthcheck"]["test"]
    assert command[:2] == ["CMD", "wget"], command
    url = command[-1]
    assert url == "http://127.0.0.1:13133/status", url
    argv = [busybox, *command[1:-1], pipeline.jaeger.health_url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr


def test_compose_runs_the_release_the_tests_build_with_the_same_configuration() -> None:
    """Compose's Jaeger is the image of the release jaeger/build.sh builds, running jaeger/config.yaml
    (copied into its volume by the config service), its UI on 127.0.0.1:16686 and its OTLP/grpc port
    the one the Collector sends to."""
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    release = re.search(r"\brelease=v(\d+\.\d+\.\d+)\b", (JAEGER_DIR / "build.sh").read_text())
    assert release, "jaeger/build.sh names no release"
    jaeger = services["jaeger"]
    assert jaeger["image"] == f"jaegertracing/jaeger:{release.group(1)}"
    assert jaeger["command"] == ["--config=/etc/jaeger/config.yaml"]
    assert "jaeger_config:/etc/jaeger:ro" in jaeger["volumes"]
    assert "jaeger_config:/config/jaeger" in services["config"]["volumes"]
    assert jaeger["ports"] == ["127.0.0.1:16686:16686"]
    config = (JAEGER_DIR / "config.yaml").read_text()
    assert "${env:JAEGER_QUERY_HTTP_ENDPOINT:-0.0.0.0:16686}" in config
    assert "${env:JAEGER_OTLP_GRPC_ENDPOINT:-0.0.0.0:4317}" in config
    assert "${env:JAEGER_HEALTH_ENDPOINT:-0.0.0.0:13133}" in config
    assert services["otel-collector"]["environment"]["OTELCOL_TRACES_ENDPOINT"] == "jaeger:4317"
