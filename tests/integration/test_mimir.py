"""Past one machine: planes push OTLP to our Collector in the gateway role
(otel_collector/gateway.yaml), which remote-writes into a real Grafana Mimir; every
catalog metric arrives with its name, type and labels, values equal what was recorded,
every dashboard query returns data from Mimir, and our rules run in Mimir's ruler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import dashboard_queries, labels_for, record_everything, sample_value, wait_for, with_all_variables
from servers import COLLECTOR_DIR, RULE_FILES, Collector, Mimir
from trading_telemetry import TelemetryConfig, init_metrics_exporter, reset
from trading_telemetry.catalog import CATALOG, SERVICE_LABEL, Kind, MetricSpec, Plane

pytestmark = pytest.mark.integration

TIMES = 3
WORKLOAD = 'job=~"workload/.+"'  # the deterministic workload's planes (service.namespace=workload)
BIN = Path(sys.executable).parent
# otel_scope_*: the instrumentation scope, added by the Collector on both paths (as test_collector finds)
IGNORED_LABELS = {"__name__", "job", "instance", "le", "otel_scope_name", "otel_scope_version", "otel_scope_schema_url"}


@pytest.fixture(autouse=True)
def _fresh_state() -> None:
    """Overrides the unit tests' reset-per-test: the planes here live for the module."""


@pytest.fixture(scope="module")
def stack(
    collector_factory: Callable[..., Collector], mimir_factory: Callable[..., Mimir]
) -> Iterator[tuple[Mimir, subprocess.Popen[bytes]]]:
    """Mimir behind a gateway Collector, fed a deterministic workload and the demo session."""
    reset()
    mimir = mimir_factory()
    gateway = collector_factory(config=COLLECTOR_DIR / "gateway.yaml", env={"OTELCOL_REMOTE_WRITE_URL": mimir.push_url})
    config = TelemetryConfig.from_env({
        "OTEL_METRICS_EXPORTER": "otlp",
        **gateway.sdk_env(),
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_RESOURCE_ATTRIBUTES": "service.namespace=workload",
        "TRADING_TELEMETRY_STRICT": "true",
    })  # fmt: skip
    planes = {p: init_metrics_exporter(p, config=config) for p in Plane}
    record_everything(planes, times=TIMES)
    env = {
        **os.environ,
        "OTEL_METRICS_EXPORTER": "otlp",
        **gateway.sdk_env(),
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
    }
    argv = [str(BIN / "trading-telemetry"), "demo", "--base-port", "0", "--rate", "1000", "--seed", "3"]
    demo = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(
            "the workload's three planes in Mimir",
            lambda: len(mimir.query(f'count by (job) ({{{WORKLOAD}, service!=""}})')) == 3,
            timeout=120,
            interval=1.0,
        )
        yield mimir, demo
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGKILL)
            demo.wait(timeout=30)
        reset()


def _series(mimir: Mimir, spec: MetricSpec) -> list[dict[str, str]]:
    return mimir.series(f'{{__name__=~"{spec.prometheus_name}(_bucket|_sum|_count)?", {WORKLOAD}}}')


@pytest.mark.parametrize("spec", CATALOG, ids=lambda s: s.prometheus_name)
def test_names_and_labels_arrive_as_on_the_prometheus_path(stack: tuple[Mimir, Any], spec: MetricSpec) -> None:
    """Each metric's series names (with _total, unit suffixes, _bucket) and label keys in Mimir."""
    series = wait_for(f"{spec.prometheus_name} in Mimir", lambda: _series(stack[0], spec), timeout=30)
    names = {s["__name__"] for s in series}
    if spec.kind is Kind.HISTOGRAM:
        parts = ("_bucket", "_count", "_sum") if spec.has_sum_and_count else ("_bucket",)
        assert names >= {spec.prometheus_name + p for p in parts}
        les = sorted(float(s["le"]) for s in series if s["__name__"].endswith("_bucket"))
        assert les == [*(spec.buckets or ()), float("inf")]
    else:
        assert names == {spec.prometheus_name}
    assert {frozenset(set(s) - IGNORED_LABELS) for s in series} == {frozenset({*spec.labels, SERVICE_LABEL})}


def test_types_in_mimirs_metadata(stack: tuple[Mimir, Any]) -> None:
    """Mimir's metadata API gives every catalog metric its type (remote write sends metadata)."""
    mimir = stack[0]
    missing: list[list[str]] = []

    def entries(found: dict[str, Any], spec: MetricSpec) -> list[dict[str, Any]]:
        # A counter's metadata is under its full name (remote write), or its family (scrapes).
        return found.get(spec.prometheus_name) or found.get(spec.prometheus_name.removesuffix("_total")) or []

    def complete() -> dict[str, Any] | None:
        found = mimir.api("metadata")
        missing.append([s.prometheus_name for s in CATALOG if not entries(found, s)])
        return found if not missing[-1] else None

    try:
        metadata = wait_for("metadata of every metric", complete, timeout=60, interval=1.0)
    except AssertionError:
        raise AssertionError(f"no metadata for {missing[-1]}") from None
    for spec in CATALOG:
        assert {entry["type"] for entry in entries(metadata, spec)} == {spec.prometheus_type}, spec.prometheus_name


@pytest.mark.parametrize("spec", CATALOG, ids=lambda s: s.prometheus_name)
def test_values_equal_the_workload(stack: tuple[Mimir, Any], spec: MetricSpec) -> None:
    """Counter totals, histogram counts and gauge values in Mimir equal what was recorded."""
    mimir = stack[0]
    selector = ", ".join([WORKLOAD, *(f'{k}="{v}"' for k, v in labels_for(spec).items())])
    if spec.kind is Kind.HISTOGRAM:
        query, expected = f'{spec.prometheus_name}_bucket{{{selector}, le="+Inf"}}', float(TIMES)
    elif spec.kind is Kind.COUNTER:
        query, expected = f"{spec.prometheus_name}{{{selector}}}", TIMES * sample_value(spec)
    else:
        query, expected = f"{spec.prometheus_name}{{{selector}}}", sample_value(spec)
    got = wait_for(f"{query} in Mimir", lambda: mimir.value(query), timeout=30)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(("board", "title", "expr"), dashboard_queries(), ids=lambda x: str(x)[:60])
def test_every_dashboard_query_returns_data_from_mimir(stack: tuple[Mimir, Any], board: str, title: str,
                                                       expr: str) -> None:  # fmt: skip
    """Each query of each panel returns at least one series from Mimir on the demo's data."""
    mimir = stack[0]
    query = with_all_variables(expr)
    assert wait_for(f"data for {board} / {title}", lambda: mimir.query(query), timeout=120, interval=2.0)


def _post_rules(mimir: Mimir, namespace: str, group: dict[str, Any]) -> None:
    request = urllib.request.Request(f"{mimir.url}/prometheus/config/v1/rules/{namespace}", method="POST",
                                     data=yaml.safe_dump(group).encode(),
                                     headers={"Content-Type": "application/yaml"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202


def test_our_rules_run_in_mimirs_ruler_and_a_dead_plane_fires(stack: tuple[Mimir, subprocess.Popen[bytes]]) -> None:
    """prometheus/rules/*.yml load into Mimir's ruler unchanged and evaluate without error; when the
    demo's process is killed, PlaneStopped fires there within two minutes."""
    mimir, demo = stack
    for rules in RULE_FILES:
        for group in yaml.safe_load(rules.read_text())["groups"]:
            _post_rules(mimir, rules.stem, group)
    expected = sum(len(g["rules"]) for f in RULE_FILES
                   for g in yaml.safe_load(f.read_text())["groups"])  # fmt: skip

    def evaluated() -> list[dict[str, Any]]:
        groups = mimir.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if len(rules) == expected and all(r.get("lastEvaluation", "").startswith("20") for r in rules) \
            else []  # fmt: skip

    rules = wait_for("every rule evaluated by Mimir's ruler", evaluated, timeout=120, interval=2.0)
    assert [r["name"] for r in rules if r["health"] != "ok"] == []
    recorded = wait_for(
        "a recording rule's output", lambda: mimir.value("count(source_symbol:data_freshness_seconds:p95_5m)")
    )
    assert recorded

    demo.send_signal(signal.SIGKILL)
    demo.wait(timeout=30)
    killed = time.monotonic()

    def firing() -> list[dict[str, Any]]:
        alerts = mimir.api("alerts")["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "PlaneStopped" and a["state"] == "firing"
                and a["labels"]["job"].startswith("trading/")]  # fmt: skip

    def gone() -> bool:
        return not mimir.query('orders_received_total{job="trading/order_plane"}')

    wait_for("the dead plane's series gone from instant queries", gone, timeout=120, interval=1.0)
    stale_after = time.monotonic() - killed
    fired = wait_for("PlaneStopped firing in Mimir", lambda: len(firing()) == 3 and firing(), timeout=180, interval=2.0)
    after = time.monotonic() - killed
    assert stale_after <= 90, f"the dead plane's series stayed {stale_after:.0f}s"
    assert {a["labels"]["service"] for a in fired} == {p.value for p in Plane}
    assert after <= 120, f"PlaneStopped fired in Mimir {after:.0f}s after the kill"
    print(f"series gone after {stale_after:.0f}s, PlaneStopped firing in Mimir {after:.0f}s after the kill")


def test_the_gateway_benchmark_runs_and_loses_nothing() -> None:
    """benchmarks/bench_gateway.py --quick (3 planes for 20 s) prints its figures, with no loss."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gateway.py"
    done = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=600,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loss: none" in done.stdout, done.stdout
    for line in ("series in Mimir", "samples per second", "peak RSS, gateway Collector", "peak RSS, Mimir"):
        assert line in done.stdout, done.stdout
