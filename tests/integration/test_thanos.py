"""Past one machine: planes push OTLP to our Collector in the gateway role
(otel_collector/gateway.yaml), which remote-writes into a real Thanos Receive; through
Thanos Query every catalog metric arrives with its name, type and labels, values equal
what was recorded, every dashboard query returns data, our rules run in Thanos Ruler and
alert Alertmanager, and a Prometheus HA pair beside it gives one series per plane."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import (
    dashboard_queries,
    free_port,
    labels_for,
    record_everything,
    sample_value,
    wait_for,
    with_all_variables,
)
from servers import (
    COLLECTOR_DIR,
    RULE_FILES,
    Alertmanager,
    Collector,
    PrometheusReplica,
    ThanosQuery,
    ThanosReceive,
    ThanosRule,
    ThanosSidecar,
)
from trading_telemetry import MetricsServer, TelemetryConfig, init_metrics_exporter, reset, serve_metrics
from trading_telemetry.catalog import CATALOG, SERVICE_LABEL, Kind, MetricSpec, Plane

pytestmark = pytest.mark.integration

TIMES = 3
WORKLOAD = 'job=~"workload/.+"'  # the deterministic workload's planes (service.namespace=workload)
HA_PAIR = 'job="trading-planes"'  # the same planes, scraped by both Prometheus replicas
BIN = Path(sys.executable).parent
# otel_scope_*: the instrumentation scope, added by the Collector on both paths (as test_collector finds);
# tenant_id: Receive's tenant (the gateway's X-Scope-OrgID), an external label of its store
IGNORED_LABELS = {"__name__", "job", "instance", "le", "otel_scope_name", "otel_scope_version", "otel_scope_schema_url",
                  "tenant_id"}  # fmt: skip


@dataclass
class Stack:
    query: ThanosQuery
    receive: ThanosReceive
    alertmanager: Alertmanager
    demo: subprocess.Popen[bytes]


@pytest.fixture(autouse=True)
def _fresh_state() -> None:
    """Overrides the unit tests' reset-per-test: the planes here live for the module."""


@pytest.fixture(scope="module")
def stack(collector_factory: Callable[..., Collector], thanos_factory: Callable[..., Any]) -> Iterator[Stack]:
    """Receive behind a gateway Collector, fed a deterministic workload and the demo session;
    the workload's planes also scraped by a Prometheus HA pair with a Sidecar each; Query
    over Receive, the Ruler and the Sidecars; the Ruler alerting a real Alertmanager."""
    reset()
    alertmanager = thanos_factory(Alertmanager, env={})
    receive = thanos_factory(ThanosReceive)
    gateway = collector_factory(
        config=COLLECTOR_DIR / "gateway.yaml", env={"OTELCOL_REMOTE_WRITE_URL": receive.push_url}
    )
    config = TelemetryConfig.from_env({
        "OTEL_METRICS_EXPORTER": "otlp,prometheus",
        **gateway.sdk_env(),
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_RESOURCE_ATTRIBUTES": "service.namespace=workload",
        "TRADING_TELEMETRY_STRICT": "true",
    })  # fmt: skip
    planes = {p: init_metrics_exporter(p, config=config) for p in Plane}
    record_everything(planes, times=TIMES)
    endpoints: list[MetricsServer] = [serve_metrics(planes[p], port=0) for p in Plane]
    demo: subprocess.Popen[bytes] | None = None
    try:
        targets = {"planes": [f"127.0.0.1:{s.port}" for s in endpoints]}
        replicas = [thanos_factory(PrometheusReplica, replica=r, targets=targets) for r in ("a", "b")]
        sidecars = [thanos_factory(ThanosSidecar, prometheus=r) for r in replicas]
        query_port = free_port()  # the Ruler queries through Query, which reads the Ruler's series
        rule = thanos_factory(
            ThanosRule, query=f"127.0.0.1:{query_port}", alertmanager=f"127.0.0.1:{alertmanager.port}"
        )
        stores = [receive.grpc, rule.grpc, *(s.grpc for s in sidecars)]
        query = thanos_factory(ThanosQuery, endpoints=stores, port=query_port)
        env = {
            **os.environ,
            "OTEL_METRICS_EXPORTER": "otlp",
            **gateway.sdk_env(),
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        }
        argv = [str(BIN / "trading-telemetry"), "demo", "--base-port", "0", "--rate", "1000", "--seed", "3"]
        demo = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(
            "the workload's three planes in Thanos",
            lambda: len(query.query(f'count by (job) ({{{WORKLOAD}, service!=""}})')) == 3,
            timeout=120,
            interval=1.0,
        )
        yield Stack(query, receive, alertmanager, demo)
    finally:
        if demo is not None and demo.poll() is None:
            demo.send_signal(signal.SIGKILL)
            demo.wait(timeout=30)
        for server in endpoints:
            server.close()
        reset()


def _series(query: ThanosQuery, spec: MetricSpec) -> list[dict[str, str]]:
    return query.series(f'{{__name__=~"{spec.prometheus_name}(_bucket|_sum|_count)?", {WORKLOAD}}}')


@pytest.mark.parametrize("spec", CATALOG, ids=lambda s: s.prometheus_name)
def test_names_and_labels_arrive_as_on_the_prometheus_path(stack: Stack, spec: MetricSpec) -> None:
    """Each metric's series names (with _total, unit suffixes, _bucket) and label keys in Thanos."""
    series = wait_for(f"{spec.prometheus_name} in Thanos", lambda: _series(stack.query, spec), timeout=30)
    names = {s["__name__"] for s in series}
    if spec.kind is Kind.HISTOGRAM:
        parts = ("_bucket", "_count", "_sum") if spec.has_sum_and_count else ("_bucket",)
        assert names >= {spec.prometheus_name + p for p in parts}
        les = sorted(float(s["le"]) for s in series if s["__name__"].endswith("_bucket"))
        assert les == [*(spec.buckets or ()), float("inf")]
    else:
        assert names == {spec.prometheus_name}
    assert {frozenset(set(s) - IGNORED_LABELS) for s in series} == {frozenset({*spec.labels, SERVICE_LABEL})}


def _metadata_entries(found: dict[str, Any], spec: MetricSpec) -> list[dict[str, Any]]:
    # A counter's metadata is under its full name (remote write), or its family (scrapes).
    return found.get(spec.prometheus_name) or found.get(spec.prometheus_name.removesuffix("_total")) or []


def test_types_in_thanos_metadata(stack: Stack, thanos_factory: Callable[..., Any]) -> None:
    """Query's metadata API gives every catalog metric its type, served by the HA pair's
    Sidecars; Receive keeps none of the metadata the gateway remote-writes (Thanos v0.42
    drops it), so a Query over Receive alone answers with none."""
    missing: list[list[str]] = []

    def complete() -> dict[str, Any] | None:
        found = stack.query.api("metadata")
        missing.append([s.prometheus_name for s in CATALOG if not _metadata_entries(found, s)])
        return found if not missing[-1] else None

    try:
        metadata = wait_for("metadata of every metric", complete, timeout=60, interval=1.0)
    except AssertionError:
        raise AssertionError(f"no metadata for {missing[-1]}") from None
    for spec in CATALOG:
        assert {e["type"] for e in _metadata_entries(metadata, spec)} == {spec.prometheus_type}, spec.prometheus_name

    receive_only = thanos_factory(ThanosQuery, endpoints=[stack.receive.grpc])
    assert receive_only.value(f"count({{{WORKLOAD}}})"), "Receive holds the gateway's series"
    assert receive_only.api("metadata") == {}
    receive_only.stop()


@pytest.mark.parametrize("spec", CATALOG, ids=lambda s: s.prometheus_name)
def test_values_equal_the_workload(stack: Stack, spec: MetricSpec) -> None:
    """Counter totals, histogram counts and gauge values in Thanos equal what was recorded."""
    selector = ", ".join([WORKLOAD, *(f'{k}="{v}"' for k, v in labels_for(spec).items())])
    if spec.kind is Kind.HISTOGRAM:
        query, expected = f'{spec.prometheus_name}_bucket{{{selector}, le="+Inf"}}', float(TIMES)
    elif spec.kind is Kind.COUNTER:
        query, expected = f"{spec.prometheus_name}{{{selector}}}", TIMES * sample_value(spec)
    else:
        query, expected = f"{spec.prometheus_name}{{{selector}}}", sample_value(spec)
    got = wait_for(f"{query} in Thanos", lambda: stack.query.value(query), timeout=30)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(("board", "title", "expr"), dashboard_queries(), ids=lambda x: str(x)[:60])
def test_every_dashboard_query_returns_data_from_thanos(stack: Stack, board: str, title: str, expr: str) -> None:
    """Each query of each panel returns at least one series from Thanos Query on the demo's data."""
    query = with_all_variables(expr)
    assert wait_for(f"data for {board} / {title}", lambda: stack.query.query(query), timeout=120, interval=2.0)


def test_an_ha_pair_gives_one_series_per_plane_through_query(stack: Stack) -> None:
    """Two Prometheus replicas scraping the same planes give two series of each (replica a
    and b) without deduplication, and one, without the replica label and with the recorded
    value, through Query's deduplication on `replica`."""
    spec = next(s for s in CATALOG if s.kind is Kind.COUNTER)
    selector = ", ".join([HA_PAIR, *(f'{k}="{v}"' for k, v in labels_for(spec).items())])
    promql = f"{spec.prometheus_name}{{{selector}}}"

    def both() -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = stack.query.api("query", query=promql, dedup="false")["result"]
        return result if len(result) == 2 else []

    replicas = wait_for(f"{promql} from both replicas", both, timeout=60, interval=1.0)
    assert sorted(r["metric"]["replica"] for r in replicas) == ["a", "b"]
    (merged,) = stack.query.query(promql)
    assert "replica" not in merged["metric"]
    assert merged["metric"]["cluster"] == "desk"
    assert float(merged["value"][1]) == pytest.approx(TIMES * sample_value(spec))

    ups = stack.query.api("query", query=f"up{{{HA_PAIR}}}", dedup="false")["result"]
    merged_ups = stack.query.query(f"up{{{HA_PAIR}}}")
    assert len(merged_ups) == len(Plane)
    assert all("replica" not in u["metric"] for u in merged_ups)
    assert sorted((u["metric"]["instance"], u["metric"]["replica"]) for u in ups) == sorted(
        (u["metric"]["instance"], r) for u in merged_ups for r in ("a", "b")
    )


def test_our_rules_run_in_thanos_ruler_and_a_dead_plane_fires(stack: Stack) -> None:
    """prometheus/rules/*.yml load into Thanos Ruler unchanged and evaluate without error; when
    the demo's process is killed its series leave instant queries within 90 s, and PlaneStopped
    fires in the Ruler within two minutes and reaches Alertmanager with its password."""
    query, demo = stack.query, stack.demo
    expected = sum(len(g["rules"]) for f in RULE_FILES
                   for g in yaml.safe_load(f.read_text())["groups"])  # fmt: skip

    def evaluated() -> list[dict[str, Any]]:
        groups = query.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if len(rules) == expected and all(r.get("lastEvaluation", "").startswith("20") for r in rules) \
            else []  # fmt: skip

    rules = wait_for("every rule evaluated by Thanos Ruler", evaluated, timeout=120, interval=2.0)
    assert [r["name"] for r in rules if r["health"] != "ok"] == []
    recorded = wait_for(
        "a recording rule's output", lambda: query.value("count(source_symbol:data_freshness_seconds:p95_5m)")
    )
    assert recorded

    demo.send_signal(signal.SIGKILL)
    demo.wait(timeout=30)
    killed = time.monotonic()

    def firing() -> list[dict[str, Any]]:
        alerts = query.api("alerts")["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "PlaneStopped" and a["state"] == "firing"
                and a["labels"]["job"].startswith("trading/")]  # fmt: skip

    def gone() -> bool:
        return not query.query('orders_received_total{job="trading/order_plane"}')

    # The deadlines count from the kill: the series gone within 90 s, the alert firing within 120 s.
    wait_for("the dead plane's series gone from instant queries within 90 s of the kill", gone,
             timeout=killed + 90 - time.monotonic(), interval=1.0)  # fmt: skip
    stale_after = time.monotonic() - killed

    def three_firing() -> list[dict[str, Any]]:
        found = firing()
        return found if len(found) == 3 else []

    fired = wait_for("PlaneStopped firing in Thanos Ruler within 120 s of the kill", three_firing,
                     timeout=killed + 120 - time.monotonic(), interval=2.0)  # fmt: skip
    after = time.monotonic() - killed
    assert {a["labels"]["service"] for a in fired} == {p.value for p in Plane}

    def in_alertmanager() -> bool:
        labels = [a["labels"] for a in stack.alertmanager.alerts()]
        stopped = [x for x in labels if x["alertname"] == "PlaneStopped" and x["job"].startswith("trading/")]
        services = {x["service"] for x in stopped}
        return services == {p.value for p in Plane}

    wait_for("PlaneStopped for the three planes in Alertmanager", in_alertmanager, timeout=60)
    print(f"series gone after {stale_after:.0f}s, PlaneStopped firing in Thanos Ruler {after:.0f}s after the kill")


def test_the_gateway_benchmark_runs_and_loses_nothing() -> None:
    """benchmarks/bench_gateway.py --quick (3 planes for 20 s) prints its figures, with no loss."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gateway.py"
    done = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=600,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loss: none" in done.stdout, done.stdout
    for line in ("series in Thanos", "samples per second", "peak RSS, gateway Collector", "peak RSS, Thanos Receive"):
        assert line in done.stdout, done.stdout
