"""The three plane endpoints scraped by a real Prometheus 3, checked through its HTTP API."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.utils import floatToGoString

from helpers import STRICT_PROMETHEUS, http_get, labels_for, record_everything, sample_value
from servers import Exposition, Prometheus, require_binary
from trading_telemetry import MetricsServer, init_metrics_exporter, reset, serve_metrics
from trading_telemetry.catalog import CATALOG, Kind, MetricSpec, Plane

pytestmark = pytest.mark.integration

PAGE = Path(__file__).resolve().parents[2] / "docs" / "dashboards-and-alerts.md"
TIMES = 3
# Labels Prometheus or the OTel exporter add to every series.
ADDED_LABELS = {
    "__name__",
    "job",
    "instance",
    "service",
    "otel_scope_name",
    "otel_scope_version",
    "otel_scope_schema_url",
}


@pytest.fixture(scope="module")
def servers() -> Iterator[list[MetricsServer]]:
    reset()
    planes = {p: init_metrics_exporter(p, config=STRICT_PROMETHEUS) for p in Plane}
    record_everything(planes, times=TIMES)
    started = [serve_metrics(planes[p], port=0) for p in Plane]
    yield started
    for server in started:
        server.close()
    reset()


@pytest.fixture(autouse=True)
def _fresh_state() -> None:
    """Overrides the unit tests' reset-per-test: the planes here live for the module."""


@pytest.fixture(scope="module")
def prom(servers: list[MetricsServer], prometheus_factory: Any) -> Prometheus:
    server = prometheus_factory({"planes": [f"127.0.0.1:{s.port}" for s in servers]})
    server.wait_for_scrapes(targets=3)
    return server


def _series(prom: Prometheus, name: str) -> list[dict[str, str]]:
    series = prom.api("series", **{"match[]": name})
    assert isinstance(series, list)
    return series


@pytest.mark.parametrize("spec", CATALOG, ids=lambda s: s.prometheus_name)
def test_metric_has_its_documented_name_and_type(prom: Prometheus, spec: MetricSpec) -> None:
    """/api/v1/metadata lists the metric with its catalog type (counters under their family name)."""
    metadata = prom.api("metadata")
    names = [spec.prometheus_name, spec.prometheus_name.removesuffix("_total")]
    entries = next((metadata[n] for n in names if n in metadata), None)
    assert entries, f"{spec.prometheus_name} not in Prometheus metadata"
    assert {e["type"] for e in entries} == {spec.prometheus_type}


@pytest.mark.parametrize("spec", CATALOG, ids=lambda s: s.prometheus_name)
def test_series_have_exactly_the_catalog_labels_and_values(prom: Prometheus, spec: MetricSpec) -> None:
    """Each series carries the catalog's labels plus service (and Prometheus' own), with the recorded values."""
    if spec.kind is Kind.HISTOGRAM:
        name = spec.prometheus_name + ("_count" if spec.has_sum_and_count else '_bucket{le="+Inf"}')
    else:
        name = spec.prometheus_name
    (series,) = _series(prom, name)
    assert set(series) - ADDED_LABELS - {"le"} == set(spec.labels)
    assert series["service"] == spec.plane.value
    for label, value in labels_for(spec).items():
        assert series[label] == value
    (result,) = prom.query(name)
    value = float(result["value"][1])
    if spec.kind is Kind.HISTOGRAM:
        assert value == TIMES
    elif spec.kind is Kind.COUNTER:
        assert value == pytest.approx(TIMES * sample_value(spec))
    else:
        assert value == pytest.approx(sample_value(spec))


def normalised(bound: float) -> str:
    """A bucket bound as Prometheus 3 stores it from a scrape: Go's shortest float, with ".0"
    when it would have neither a point nor an exponent ("1.0", "0.005", "+Inf")."""
    return str(floatToGoString(bound))  # type: ignore[no-untyped-call]


def stored_les(series: list[dict[str, str]]) -> list[str]:
    """The `le` values of bucket series, in the order of their bounds."""
    return sorted((s["le"] for s in series), key=float)


@pytest.mark.parametrize("spec", [s for s in CATALOG if s.kind is Kind.HISTOGRAM], ids=lambda s: s.prometheus_name)
def test_histograms_have_the_catalog_buckets(prom: Prometheus, spec: MetricSpec) -> None:
    """The `le` values in Prometheus are the catalog's boundaries plus +Inf, written as Prometheus 3
    normalises them (le="1.0" for the bound 1)."""
    buckets = _series(prom, spec.prometheus_name + "_bucket")
    assert stored_les(buckets) == [normalised(b) for b in (*(spec.buckets or ()), float("inf"))]
    sums = _series(prom, spec.prometheus_name + "_sum")
    assert len(sums) == (1 if spec.has_sum_and_count else 0)


def _readme_queries() -> list[str]:
    blocks = re.findall(r"```promql\n(.*?)```", PAGE.read_text(), flags=re.S)
    queries = [line.strip() for block in blocks for line in block.splitlines()]
    return [q for q in queries if q and not q.startswith("#")]


def test_readme_has_promql_examples() -> None:
    """docs/dashboards-and-alerts.md carries the original monitoring specification's PromQL examples (corrected)."""
    assert len(_readme_queries()) >= 5


@pytest.mark.parametrize("query", _readme_queries())
def test_readme_promql_returns_data(prom: Prometheus, query: str) -> None:
    """Every PromQL query in docs/dashboards-and-alerts.md parses and returns at least one series."""
    assert prom.query(query), f"no data for {query}"


def test_promtool_check_metrics_is_silent(servers: list[MetricsServer]) -> None:
    """`promtool check metrics` reports no problem on any endpoint's output."""
    promtool = require_binary("promtool")
    for server in servers:
        _, _, body = http_get(f"{server.url}/metrics")
        done = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30, check=False)
        assert (done.returncode, done.stdout + done.stderr) == (0, b""), server.metrics.plane


PROBE = """# TYPE probe_seconds histogram
probe_seconds_bucket{le="1"} 1
probe_seconds_bucket{le="+Inf"} 2
probe_seconds_sum 3
probe_seconds_count 2
# TYPE probe_ratio summary
probe_ratio{quantile="0"} 0.25
probe_ratio{quantile="1"} 0.75
probe_ratio_sum 1
probe_ratio_count 2
"""


def test_prometheus_3_normalises_le_and_quantile(prometheus_factory: Any) -> None:
    """A bucket exposed as le="1" is stored as le="1.0" and a quantile="0" as quantile="0.0": a
    matcher written le="1" finds nothing, le="1.0" and histogram_quantile find the bucket."""
    target = Exposition(PROBE)
    try:
        prom = prometheus_factory({"planes": [target.target]})
        prom.wait_for_scrapes(targets=1, samples=1)
        assert stored_les(_series(prom, "probe_seconds_bucket")) == ["1.0", "+Inf"]
        assert sorted(s["quantile"] for s in _series(prom, "probe_ratio")) == ["0.0", "1.0"]
        assert prom.query('probe_seconds_bucket{le="1"}') == []
        assert prom.value('probe_seconds_bucket{le="1.0"}') == 1
        assert prom.value('probe_ratio{quantile="1.0"}') == 0.75
        assert prom.value("histogram_quantile(0.5, probe_seconds_bucket)") == 1
    finally:
        target.close()
