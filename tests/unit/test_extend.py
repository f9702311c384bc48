"""An open catalog: a desk's own metrics and allowed label values, in code and in a YAML
file, with every guarantee the built-in 37 have; closed label value sets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client.parser import text_string_to_metric_families
from test_recording import points

from trading_telemetry import (
    CatalogError,
    InvalidValueError,
    LabelError,
    TelemetryConfig,
    init_metrics_exporter,
    reset,
    timed,
)
from trading_telemetry import catalog as cat
from trading_telemetry.catalog import Kind, MetricSpec, Plane
from trading_telemetry.testing import TelemetryCapture

DESK = Path(__file__).resolve().parents[1] / "data" / "desk-catalog.yaml"
STRICT = TelemetryConfig(strict=True, metrics_exporters=("prometheus",))


def callback_latency() -> MetricSpec:
    return MetricSpec(Plane.STRATEGY, "callback_latency", "strategy_callback_latency_seconds", Kind.HISTOGRAM,
                      "s", "Strategy callback latency", ("strategy", "callback"),
                      (0.00001, 0.0001, 0.001, 0.01, 0.1, 1.0), min_value=0.0)  # fmt: skip


def families(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def test_a_metric_added_in_code_is_recorded_exported_and_checked_like_a_built_in_one() -> None:
    """extend() before the first plane: keyed and bound calls, timed, both error regimes, /metrics and OTLP."""
    cat.extend([callback_latency()], {"callback": ["on_quote", "on_bar"]})
    reader = InMemoryMetricReader()
    m = init_metrics_exporter("strategy_plane", config=STRICT, metric_readers=[reader])
    m.observe("callback_latency", 0.0002, strategy="OFI", callback="on_quote")
    m.bind("callback_latency", strategy="OFI", callback="on_bar").observe(0.003)

    @timed("callback_latency", labels_from=("callback",), labels={"strategy": "ERN"})
    def on(callback: str) -> None:
        pass

    on("on_quote")
    with pytest.raises(LabelError, match=r"callback.*on_tick.*allowed values: on_bar, on_quote"):
        m.observe("callback_latency", 0.1, strategy="OFI", callback="on_tick")
    with pytest.raises(LabelError, match="venue"):
        m.observe("callback_latency", 0.1, strategy="OFI", callback="on_bar", venue="X")
    assert m.exposition is not None
    text = m.exposition.render().decode()
    assert families(text)["strategy_callback_latency_seconds"] == "histogram"
    assert 'strategy_callback_latency_seconds_bucket{callback="on_quote",le="0.001"' in text
    (point_list,) = [v for k, v in points(reader).items() if k == "strategy_callback_latency_seconds"]
    assert sorted(p.count for p in point_list) == [1, 1, 1]


def test_the_yaml_file_extends_the_catalog_when_the_first_plane_starts() -> None:
    """TRADING_TELEMETRY_CATALOG names the file; its metrics work in every plane, and the fixture sees them."""
    config = TelemetryConfig.from_env({"TRADING_TELEMETRY_CATALOG": str(DESK), "TRADING_TELEMETRY_STRICT": "true"})
    reset()
    order = init_metrics_exporter("order_plane", config=config)
    order.inc("orders_amended", strategy="OFI", symbol="SPY", venue="ARCA")
    order.inc("orders_received", strategy="OFI", symbol="SPY", direction="BUY", order_type="PEGGED")
    data = init_metrics_exporter("data_plane", config=config)
    data.set("feed_queue_depth", 12, source="ibkr_rt")
    with pytest.raises(InvalidValueError, match="out of range"):  # min 0
        data.set("feed_queue_depth", -1, source="ibkr_rt")
    assert order.exposition is not None
    text = order.exposition.render().decode()
    assert families(text)["orders_amended"] == "counter"
    assert 'orders_amended_total{service="order_plane",strategy="OFI",symbol="SPY",venue="ARCA"} 1.0' in text
    assert cat.lookup("callback_latency") is not None
    assert cat.allowed_values(cat.spec("order_plane", "orders_received"), "order_type") == {
        "MARKET", "LIMIT", "STOP", "PEGGED"}  # fmt: skip


def test_the_fixture_reads_extended_metrics() -> None:
    """The pytest fixture's capture (started after the desk's extension, as a conftest would) reads them."""
    cat.extend([callback_latency()], {"callback": ["on_quote"]})
    capture = TelemetryCapture()
    capture.start()
    m = capture.plane("strategy_plane")
    m.observe("callback_latency", 0.0002, strategy="OFI", callback="on_quote")
    assert capture.histogram("callback_latency", strategy="OFI", callback="on_quote").count == 1


def test_the_catalog_is_fixed_while_planes_exist() -> None:
    """extend() once a plane exists is refused saying to call it before the first plane; after reset() it works."""
    init_metrics_exporter("data_plane", config=STRICT)
    with pytest.raises(CatalogError) as caught:
        cat.extend([callback_latency()])
    message = str(caught.value)
    assert message.startswith("extend(): too late: a plane is already initialised, and the catalog is fixed")
    assert "Extend it before the first init_metrics_exporter()" in message
    assert "call extend() when your module is imported" in message
    assert "in tests, call reset() first" in message
    reset()
    cat.extend([callback_latency()])  # all planes gone: allowed again
    assert cat.lookup("callback_latency") is not None


@pytest.mark.parametrize(
    ("entry", "field", "words"),
    [
        ({"kind": "counter", "name": "orders_amended"}, "name", "ends in _total"),
        ({"kind": "counter", "name": "orders_total_canceled_total"}, "name", "total"),
        ({"plane": "risk_plane"}, "plane", "risk_plane"),
        ({"kind": "summary"}, "kind", "summary"),
        ({"buckets": [0.1, 0.01]}, "buckets", "increasing"),
        ({"buckets": None}, "buckets", "a histogram needs its bucket boundaries"),
        ({"unit": "ms"}, "unit", "ms"),
        ({"name": "strategy_callback_latency"}, "name", "_seconds"),
        ({"key": "ticks_received"}, "key", "duplicate key"),
        ({"name": "data_freshness_seconds", "plane": "data_plane"}, "name", "built-in metric 'data_freshness'"),
        ({"labels": ["service"]}, "labels", "service"),
        ({"colour": "red"}, "colour", "unknown field"),
        ({"description": ""}, "description", "non-empty"),
        ({"min": -1}, "min", "negative"),
    ],
)
def test_invalid_declarations_name_the_file_the_entry_and_the_field(
    tmp_path: Path, entry: dict[str, object], field: str, words: str
) -> None:
    base: dict[str, object] = {
        "plane": "strategy_plane", "key": "callback_latency", "name": "strategy_callback_latency_seconds",
        "kind": "histogram", "unit": "s", "description": "Strategy callback latency",
        "labels": ["strategy", "callback"], "buckets": [0.001, 0.01], "min": 0,
    }  # fmt: skip
    declared = {**base, **entry}
    if declared.get("buckets") is None:
        declared.pop("buckets")
    if declared["kind"] == "counter":
        declared.pop("buckets", None)
        declared.pop("min")
        declared["unit"] = "{order}"
    path = tmp_path / "desk.yaml"
    path.write_text(json.dumps({"metrics": [{"plane": "data_plane", "key": "fine", "name": "data_fine",
                                             "kind": "gauge", "description": "fine"}, declared]}))  # fmt: skip
    with pytest.raises(CatalogError) as caught:
        cat.load_file(str(path))
    text = str(caught.value)
    assert str(path) in text
    assert str(declared["key"]) in text
    assert field in text
    assert words in text
    assert cat.lookup("fine") is None, "nothing is added when the file is invalid"


def test_a_typo_in_a_closed_label_is_bad_input() -> None:
    """direction="buy", status="FILED": strict raises naming metric, label, value and the allowed values;
    production drops and counts invalid_label_value."""
    m = init_metrics_exporter("order_plane", config=STRICT)
    with pytest.raises(LabelError) as caught:
        m.inc("orders_received", strategy="OFI", symbol="SPY", direction="buy", order_type="LIMIT")
    assert (caught.value.metric, caught.value.label, caught.value.reason) == ("orders_received", "direction",
                                                                              "invalid_label_value")  # fmt: skip
    assert "'buy'" in str(caught.value)
    assert "BUY, SELL" in str(caught.value)
    with pytest.raises(LabelError, match=r"FILED.*FILLED, PARTIAL_FILL"):
        m.inc("orders_filled", strategy="OFI", symbol="SPY", direction="BUY", status="FILED")
    reset()
    prod = init_metrics_exporter("order_plane", config=TelemetryConfig(metrics_exporters=()))
    prod.inc("orders_filled", strategy="OFI", symbol="SPY", direction="BUY", status="FILED")
    assert prod.policy.counts() == {("orders_filled", "invalid_label_value"): 1}
    # Open labels stay open; the QP's status is not a fill status.
    strategy = init_metrics_exporter("strategy_plane", config=TelemetryConfig(strict=True, metrics_exporters=()))
    strategy.inc("qp_solve_status", status="max_iterations")


def test_the_catalog_and_dashboards_commands_show_the_effective_catalog(tmp_path: Path) -> None:
    env = {**os.environ, "TRADING_TELEMETRY_CATALOG": str(DESK)}
    cli = [sys.executable, "-m", "trading_telemetry.cli"]
    table = subprocess.run([*cli, "catalog"], env=env, capture_output=True, text=True, check=True, timeout=60).stdout
    assert "`strategy_callback_latency_seconds`" in table
    assert "`orders_amended_total`" in table
    assert "`data_ticks_received_total`" in table
    out = tmp_path / "boards"
    subprocess.run([*cli, "dashboards", "--out", str(out)], env=env, check=True, timeout=120, capture_output=True)
    strategy = json.loads((out / "strategy-plane.json").read_text())
    titles = [p.get("title", "") for p in strategy["panels"]]
    assert any("strategy_callback_latency_seconds" in t for t in titles), titles
    assert {p.name for p in out.iterdir()} >= {"overview.json", "data-plane.json", "order-plane.json"}


def test_the_fixture_loads_the_desk_catalog_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """With TRADING_TELEMETRY_CATALOG set, the pytest fixture's planes have the desk's metrics."""
    monkeypatch.setenv("TRADING_TELEMETRY_CATALOG", str(DESK))
    capture = TelemetryCapture()
    capture.start()
    capture.plane("order_plane").inc("orders_amended", strategy="OFI", symbol="SPY", venue="ARCA")
    assert capture.counter("orders_amended", strategy="OFI", symbol="SPY", venue="ARCA") == 1


def test_timed_at_import_time_finds_a_metric_of_the_catalog_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """A decorator naming a desk's metric, applied before any plane exists, reads the catalog file."""
    monkeypatch.setenv("TRADING_TELEMETRY_CATALOG", str(DESK))
    reset()  # forget the configuration read so far

    @timed("callback_latency", labels={"strategy": "OFI", "callback": "on_bar"})
    def on_bar() -> None:
        pass

    on_bar()
    m = init_metrics_exporter("strategy_plane")
    assert m.bind("callback_latency", strategy="OFI", callback="on_bar").snapshot()[0] != [0] * 7  # type: ignore[attr-defined]
