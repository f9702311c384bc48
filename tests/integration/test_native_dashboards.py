"""Dashboards and rules on native histograms only: what a desk with native buckets for every
histogram (TRADING_TELEMETRY_NATIVE_HISTOGRAMS=all) sends over OTLP. The OTel SDK pushes every
catalog histogram with its base-2 exponential aggregation into Prometheus 3's OTLP receiver,
which stores each as one native histogram and no `_bucket` series; every histogram panel query
of the generated dashboards and every quantile recording rule answers, with the recorded value
to the native buckets' precision (classic buckets would put it anywhere in theirs)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from test_otlp_prometheus import USER, basic_header

from helpers import dashboard_queries, labels_for, sample_value, wait_for, with_all_variables
from servers import RULE_FILES, TEST_PASSWORD, Prometheus
from trading_telemetry._dashboards import dashboards
from trading_telemetry.catalog import CATALOG, SERVICE_LABEL, Kind, MetricSpec

pytestmark = pytest.mark.integration

HISTOGRAMS = [s for s in CATALOG if s.kind is Kind.HISTOGRAM]
# Within a native bucket at the finest schema Prometheus keeps (8: bounds 2**(1/256), 0.27 %
# apart); the nearest classic bounds are 2 to 2.5 times apart.
PRECISION = 0.005


def observed(spec: MetricSpec) -> float:
    """The value recorded for a histogram: the tests' sample value, made positive (the OTel API's histogram
    takes no negative value; slippage's sample is one)."""
    return abs(sample_value(spec))


def histogram_in(expr: str) -> MetricSpec | None:
    """The catalog histogram whose rate the expression takes (its native histogram or its buckets)."""
    return next((s for s in HISTOGRAMS if re.search(rf"rate\({s.prometheus_name}(_bucket)?[{{\[]", expr)), None)


def _histogram_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, query) of every panel query that reads a catalog histogram."""
    return [q for q in dashboard_queries() if histogram_in(q[2])]


def _histogram_rules() -> dict[str, str]:
    """Recorded name -> expression of every recording rule that reads a histogram."""
    groups = [g for f in RULE_FILES for g in yaml.safe_load(f.read_text())["groups"]]
    return {r["record"]: r["expr"] for g in groups for r in g["rules"] if histogram_in(r.get("expr", ""))}


def _quantile_rules() -> dict[str, str]:
    """Recorded name -> expression of every recording rule that takes a histogram's quantile."""
    return {k: v for k, v in _histogram_rules().items() if "histogram_quantile" in v}


@pytest.fixture(autouse=True)
def _fresh_state() -> None:
    """Overrides the unit tests' reset-per-test: the pushing SDK lives for the module."""


@pytest.fixture(scope="module")
def native_only(prometheus_factory: Callable[..., Prometheus]) -> Iterator[Prometheus]:
    """Prometheus with the OTLP receiver on and our rules, fed every catalog histogram as an exponential
    histogram by the OTel SDK, one observation of each every 100 ms."""
    prom = prometheus_factory({}, rule_files=RULE_FILES, flags=["--web.enable-otlp-receiver"], web_user=USER)
    exporter = OTLPMetricExporter(
        endpoint=f"{prom.url}/api/v1/otlp/v1/metrics", headers={"authorization": basic_header(USER, TEST_PASSWORD)}
    )
    provider = MeterProvider(
        resource=Resource.create({"service.namespace": "native", "service.name": "desk"}),
        metric_readers=[PeriodicExportingMetricReader(exporter, export_interval_millis=300)],
        views=[View(instrument_type=Histogram, aggregation=ExponentialBucketHistogramAggregation())],
        shutdown_on_exit=False,
    )
    meter = provider.get_meter("native-dashboards")
    instruments = [(meter.create_histogram(s.name, unit=s.unit), s) for s in HISTOGRAMS]
    stop = threading.Event()

    def observe() -> None:
        while not stop.is_set():
            for instrument, spec in instruments:
                instrument.record(observed(spec), {**labels_for(spec), SERVICE_LABEL: spec.plane.value})
            stop.wait(0.1)

    thread = threading.Thread(target=observe, daemon=True)
    thread.start()
    try:
        for spec in HISTOGRAMS:
            native = f"histogram_count({spec.prometheus_name})"
            wait_for(f"{spec.prometheus_name} as a native histogram", lambda q=native: prom.query(q), timeout=60)
        yield prom
    finally:
        stop.set()
        thread.join(timeout=10)
        provider.shutdown()


def _close_to(value: float, expected: float) -> bool:
    return abs(value - expected) <= PRECISION * abs(expected)


def test_the_histograms_arrive_native_only(native_only: Prometheus) -> None:
    """Each histogram is stored as a native histogram and nothing else: no _bucket, _sum or _count series."""
    for spec in HISTOGRAMS:
        (series,) = native_only.query(f'{{__name__=~"{spec.prometheus_name}.*"}}')
        assert series["metric"]["__name__"] == spec.prometheus_name
        assert "histogram" in series, series


@pytest.mark.parametrize(("board", "title", "expr"), _histogram_queries(), ids=lambda x: str(x)[:60])
def test_every_histogram_panel_query_answers_on_native_data(
    native_only: Prometheus, board: str, title: str, expr: str
) -> None:
    """Each histogram query of each panel returns the recorded value, to the native buckets' precision."""
    spec = histogram_in(expr)
    assert spec is not None
    query = with_all_variables(expr)

    def answered() -> list[float]:
        values = [float(r["value"][1]) for r in native_only.query(query)]
        return values if values and all(_close_to(v, observed(spec)) for v in values) else []

    assert wait_for(f"{board} / {title} on native data", answered, timeout=60, interval=1.0)


@pytest.mark.parametrize("record", sorted(_quantile_rules()))
def test_every_quantile_rule_records_on_native_data(native_only: Prometheus, record: str) -> None:
    """Each recording rule over a histogram records the recorded value, to the native buckets' precision."""
    spec = histogram_in(_quantile_rules()[record])
    assert spec is not None

    def recorded() -> list[dict[str, Any]]:
        found = native_only.query(record)
        return found if found and all(_close_to(float(r["value"][1]), observed(spec)) for r in found) else []

    assert wait_for(f"{record} on native data", recorded, timeout=60, interval=1.0)


def test_exemplar_queries_accept_the_two_shape_form(native_only: Prometheus) -> None:
    """Prometheus's exemplar API, which Grafana asks with a panel's query when exemplars are on, accepts every
    latency query in its `native or classic` form."""
    now = time.time()
    with_exemplars = [
        target["expr"]
        for board in dashboards().values()
        for panel in board["panels"]
        for target in panel["targets"]
        if target.get("exemplar") and " or " in target["expr"]
    ]
    assert with_exemplars
    for expr in with_exemplars:
        assert isinstance(native_only.api("query_exemplars", query=with_all_variables(expr), start=now - 60, end=now),
                          list)  # fmt: skip


@pytest.mark.parametrize("record", sorted(set(_histogram_rules()) - set(_quantile_rules())))
def test_every_latency_objective_ratio_records_on_native_data(native_only: Prometheus, record: str) -> None:
    """Each latency objective's error-ratio rule records a ratio from the native histogram alone."""

    def recorded() -> list[dict[str, Any]]:
        found = native_only.query(f'{record}{{objective="order_ack_latency"}}')
        return found if found and all(0 <= float(r["value"][1]) <= 1 for r in found) else []

    assert wait_for(f"{record} on native data", recorded, timeout=60, interval=1.0)
