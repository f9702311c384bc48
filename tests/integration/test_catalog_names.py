"""The catalog's model of the Collector's naming (``_naming.collector_name``) against our
Collector build: metric names the catalog refuses and names it accepts, pushed over OTLP
with the raw OTel SDK, are exposed by the Collector's ``prometheus`` exporter exactly as
the model says; for the names the catalog accepts, that is the name /metrics shows."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client.parser import text_string_to_metric_families

from helpers import http_get, wait_for
from servers import Collector
from trading_telemetry import CatalogError, reset
from trading_telemetry import catalog as cat
from trading_telemetry._naming import collector_name
from trading_telemetry.catalog import Kind, MetricSpec, Plane

pytestmark = pytest.mark.integration

# (OTel name, unit, kind), refused or accepted: the Collector must name each as modelled. (The
# SDK itself refuses a leading `_` or digit and a colon, so they cannot be pushed.)
CASES = [
    ("desk_ticks__received", "{tick}", Kind.COUNTER),
    ("desk_trailing_", "", Kind.GAUGE),
    ("desk_total_amended", "{order}", Kind.COUNTER),
    ("desk_seconds_lag", "s", Kind.GAUGE),
    ("desk.dotted.name", "", Kind.GAUGE),
    ("desk-dash/slash", "", Kind.GAUGE),
    ("desk_fills", "{order}", Kind.COUNTER),
    ("desk_callback_latency", "s", Kind.HISTOGRAM),
    ("desk_queue_wait_seconds", "s", Kind.HISTOGRAM),
    ("desk_queue_depth", "{message}", Kind.GAUGE),
    ("desk_seconds", "s", Kind.GAUGE),
]


def _catalog_accepts(name: str, unit: str, kind: Kind) -> bool:
    buckets = (0.1, 1.0) if kind is Kind.HISTOGRAM else None
    spec = MetricSpec(Plane.DATA, "probe", name, kind, unit, "Probe", (), buckets, min_value=0.0)
    reset()
    try:
        cat.extend([spec])
    except CatalogError:
        return False
    finally:
        reset()
    return True


@pytest.fixture(scope="module")
def exposed(collector_factory: Callable[[], Collector]) -> Iterator[set[str]]:
    """Every case pushed once to a Collector; the sample names its prometheus exporter then serves."""
    collector = collector_factory()
    exporter = OTLPMetricExporter(
        endpoint=f"{collector.otlp_http}/v1/metrics", headers={"authorization": f"Bearer {collector.token}"}, timeout=5
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        metric_readers=[reader], resource=Resource({"service.name": "naming_probe"}), shutdown_on_exit=False
    )
    meter = provider.get_meter("naming_probe")
    for name, unit, kind in CASES:
        if kind is Kind.COUNTER:
            meter.create_counter(name, unit=unit).add(1)
        elif kind is Kind.GAUGE:
            meter.create_gauge(name, unit=unit).set(1)
        else:
            meter.create_histogram(name, unit=unit, explicit_bucket_boundaries_advisory=[0.1, 1.0]).record(0.5)
    assert provider.force_flush(10_000)

    def samples() -> set[str]:
        status, _, body = http_get(f"http://{collector.prometheus_target}/metrics")
        if status != 200:
            return set()
        return {s.name for f in text_string_to_metric_families(body.decode()) for s in f.samples}

    wait_for("the probes at the Collector", lambda: "desk_fills_total" in samples(), timeout=30)
    yield samples()
    provider.shutdown()


@pytest.mark.parametrize(("name", "unit", "kind"), CASES, ids=[c[0] for c in CASES])
def test_the_collector_names_a_metric_as_the_catalog_models_it(
    exposed: set[str], name: str, unit: str, kind: Kind
) -> None:
    """The Collector exposes the name the model predicts; a name the catalog accepts is its /metrics name."""
    modelled = collector_name(name, "seconds" if unit == "s" else "", kind is Kind.COUNTER)
    sample = modelled + "_count" if kind is Kind.HISTOGRAM else modelled
    assert sample in exposed, (modelled, sorted(s for s in exposed if s.startswith(("desk", "_desk", "_1"))))
    ours = MetricSpec(Plane.DATA, "probe", name, kind, unit, "Probe").prometheus_name
    if _catalog_accepts(name, unit, kind):
        assert ours == modelled
    else:  # refused because the two paths differ
        assert ours != modelled
