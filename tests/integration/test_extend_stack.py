"""A desk's own metrics (tests/data/desk-catalog.yaml) through the real stack: pushed
through our Collector into Prometheus and scraped from the planes' endpoints, each found
under its declared name and type on both paths."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_collector import DIRECT, VIA_COLLECTOR, push_config

from helpers import wait_for
from servers import Collector, Prometheus
from trading_telemetry import catalog as cat
from trading_telemetry import init_metrics_exporter, reset, serve_metrics
from trading_telemetry.catalog import Plane

pytestmark = pytest.mark.integration

DESK = Path(__file__).resolve().parents[1] / "data" / "desk-catalog.yaml"
DECLARED = {  # exposed name -> (family, type)
    "strategy_callback_latency_seconds": ("strategy_callback_latency_seconds", "histogram"),
    "orders_amended_total": ("orders_amended", "counter"),
    "data_feed_queue_depth": ("data_feed_queue_depth", "gauge"),
}


@pytest.fixture(scope="module")
def desk_stack(
    collector_factory: Callable[[], Collector], prometheus_factory: Callable[..., Prometheus]
) -> Iterator[Prometheus]:
    reset()
    cat.load_file(str(DESK))
    collector = collector_factory()
    config = push_config(collector, pull=True)
    planes = {p: init_metrics_exporter(p, config=config) for p in Plane}
    planes[Plane.STRATEGY].observe("callback_latency", 0.0003, strategy="OFI", callback="on_quote")
    planes[Plane.ORDER].inc("orders_amended", 2, strategy="OFI", symbol="SPY", venue="ARCA")
    planes[Plane.DATA].set("feed_queue_depth", 7, source="ibkr_rt")
    servers = [serve_metrics(planes[p], port=0) for p in Plane]
    prom = prometheus_factory(
        {"planes": [f"127.0.0.1:{s.port}" for s in servers], "collector": [collector.prometheus_target]}
    )
    prom.wait_for_scrapes(targets=4)
    for name, (_, kind) in DECLARED.items():
        series = f"{name}_count" if kind == "histogram" else name
        wait_for(f"{name} through the Collector", lambda s=series: prom.query(f"{s}{{{VIA_COLLECTOR}}}"), timeout=60)
    yield prom
    for server in servers:
        server.close()
    reset()


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_an_extended_metric_has_its_declared_name_type_and_value_on_both_paths(
    desk_stack: Prometheus, name: str
) -> None:
    family, kind = DECLARED[name]
    for where, job in ((DIRECT, 'job="trading-planes"'), (VIA_COLLECTOR, 'job="otel-collector"')):
        metadata = {m["metric"]: m["type"] for m in desk_stack.api("targets/metadata", match_target=f"{{{job}}}")}
        # The planes are scraped in the protobuf exposition, whose counter families carry the _total name.
        names = tuple(dict.fromkeys((family, name) if where == DIRECT else (family,)))
        found = [metadata[n] for n in names if n in metadata]
        assert found == [kind], (job, names, metadata)
        series = desk_stack.query(f"{name}{{{where}}}" if kind != "histogram" else f"{name}_count{{{where}}}")
        assert series, (name, where)
        value = float(series[0]["value"][1])
        assert value == {"counter": 2.0, "gauge": 7.0, "histogram": 1.0}[kind], (name, where, value)
