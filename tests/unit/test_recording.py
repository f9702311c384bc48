from __future__ import annotations

import asyncio
import threading
from fractions import Fraction
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint

from helpers import STRICT_NO_EXPORT, labels_for, record_everything
from hostile import Alias
from trading_telemetry import (
    CardinalityLimitError,
    TelemetryConfig,
    TradingTelemetryError,
    get_metrics,
    init_metrics_exporter,
    reset,
)
from trading_telemetry._sdk import METER_NAME
from trading_telemetry.catalog import CATALOG, Plane, spec


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Data points by instrument name, from one collection."""
    out: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def test_specification_api_records_with_service_label() -> None:
    """The original monitoring specification's three calls record, each series labelled service=<plane>."""
    reader = InMemoryMetricReader()
    metrics = init_metrics_exporter("data_plane", config=STRICT_NO_EXPORT, metric_readers=[reader])
    metrics.inc("ticks_received", source="ibkr_rt", symbol="SPY")
    metrics.observe("data_freshness", 0.150, source="ibkr_rt", symbol="SPY")
    metrics.set("completeness_score", 0.95, symbol="SPY")
    got = points(reader)
    (ticks,) = got["data_ticks_received"]
    assert (ticks.value, dict(ticks.attributes)) == (1, {"source": "ibkr_rt", "symbol": "SPY", "service": "data_plane"})
    (fresh,) = got["data_freshness"]
    assert (fresh.count, fresh.sum, fresh.attributes["service"]) == (1, 0.150, "data_plane")
    (complete,) = got["data_completeness_score"]
    assert (complete.value, dict(complete.attributes)) == (0.95, {"symbol": "SPY", "service": "data_plane"})


def test_every_catalog_metric_records_on_its_plane() -> None:
    """The workload reaches all 37 instruments, with exactly the catalog's labels plus service."""
    readers = {p: InMemoryMetricReader() for p in Plane}
    planes = {p: init_metrics_exporter(p, config=STRICT_NO_EXPORT, metric_readers=[readers[p]]) for p in Plane}
    record_everything(planes, times=3)
    for s in CATALOG:
        (point,) = points(readers[s.plane])[s.name]
        assert set(point.attributes) == {*s.labels, "service"}, s.key
        assert point.attributes["service"] == s.plane.value
        if isinstance(point, HistogramDataPoint):
            assert point.count == 3
            assert tuple(point.explicit_bounds) == s.buckets
        elif s.kind.value == "counter":
            assert isinstance(point, NumberDataPoint)
            assert point.value > 0


def test_bound_handle_records_like_the_keyed_call() -> None:
    """bind() returns a handle whose inc/observe/set record to the same series."""
    reader = InMemoryMetricReader()
    metrics = init_metrics_exporter("order_plane", config=STRICT_NO_EXPORT, metric_readers=[reader])
    labels = {"strategy": "OFI", "symbol": "SPY", "order_type": "LIMIT"}
    handle = metrics.bind("total_fill_latency", **labels)
    handle.observe(0.004)
    metrics.observe("total_fill_latency", 0.2, **labels)
    (point,) = points(reader)["orders_total_fill_latency"]
    assert (point.count, round(point.sum, 6)) == (2, 0.204)
    assert "total_fill_latency" in repr(handle)


def test_negative_slippage_lands_in_its_bucket() -> None:
    """Price improvement (negative bps) is recorded, though the SDK's Histogram.record refuses negatives."""
    reader = InMemoryMetricReader()
    metrics = init_metrics_exporter("order_plane", config=STRICT_NO_EXPORT, metric_readers=[reader])
    labels = labels_for(spec("order_plane", "slippage_bps"))
    metrics.observe("slippage_bps", -3.0, **labels)
    metrics.observe("slippage_bps", 4.0, **labels)
    (point,) = points(reader)["orders_slippage_bps"]
    bounds = list(point.explicit_bounds)
    assert point.count == 2
    assert point.sum == 1.0
    assert point.bucket_counts[bounds.index(-2.0)] == 1  # (-5, -2]
    assert point.bucket_counts[bounds.index(5.0)] == 1  # (2, 5]


def test_other_real_numbers_are_accepted() -> None:
    """A Fraction (any numbers.Real but bool) records as a float."""
    reader = InMemoryMetricReader()
    metrics = init_metrics_exporter("data_plane", config=STRICT_NO_EXPORT, metric_readers=[reader])
    metrics.set("completeness_score", Fraction(1, 4), symbol="SPY")  # type: ignore[arg-type]
    (point,) = points(reader)["data_completeness_score"]
    assert point.value == 0.25


def test_views_drop_labels_outside_the_allow_list() -> None:
    """An attribute the catalog does not allow never reaches a reader, even when recorded on the raw instrument."""
    reader = InMemoryMetricReader()
    metrics = init_metrics_exporter("data_plane", config=STRICT_NO_EXPORT, metric_readers=[reader])
    raw = metrics.sdk.meter_provider.get_meter(METER_NAME).create_counter("data_ticks_received", unit="{tick}")
    raw.add(1, {"symbol": "SPY", "source": "x", "service": "data_plane", "account_id": "secret"})
    (point,) = points(reader)["data_ticks_received"]
    assert "account_id" not in point.attributes
    assert point.attributes["symbol"] == "SPY"


def test_cardinality_limit_is_configurable() -> None:
    """Label sets beyond TRADING_TELEMETRY_CARDINALITY_LIMIT are refused; known ones still record."""
    cfg = TelemetryConfig(strict=True, metrics_exporters=(), cardinality_limit=2)
    reader = InMemoryMetricReader()
    metrics = init_metrics_exporter("data_plane", config=cfg, metric_readers=[reader])
    metrics.inc("ticks_received", source="a", symbol="SPY")
    metrics.inc("ticks_received", symbol="QQQ", source="a")
    with pytest.raises(CardinalityLimitError, match="cardinality limit of 2"):
        metrics.inc("ticks_received", source="a", symbol="TSLA")
    metrics.inc("ticks_received", source="a", symbol="SPY")
    assert metrics.series_count("ticks_received") == 2
    assert sorted(p.value for p in points(reader)["data_ticks_received"]) == [1, 2]


def test_init_twice_returns_the_same_object() -> None:
    """init_metrics_exporter is idempotent per plane; re-configuring without reset() raises."""
    first = init_metrics_exporter("strategy_plane", config=STRICT_NO_EXPORT)
    assert init_metrics_exporter("strategy_plane") is first
    assert get_metrics("strategy_plane") is first
    with pytest.raises(TradingTelemetryError, match="already initialised"):
        init_metrics_exporter("strategy_plane", config=STRICT_NO_EXPORT)
    with pytest.raises(TradingTelemetryError, match="not initialised"):
        get_metrics("order_plane")


def test_planes_have_their_own_providers_and_resources() -> None:
    """Each plane's Resource names the plane as service.name, with a stable instance id."""
    planes = {p: init_metrics_exporter(p, config=STRICT_NO_EXPORT) for p in Plane}
    providers = {id(m.sdk.meter_provider) for m in planes.values()}
    assert len(providers) == 3
    for p, m in planes.items():
        attrs = m.sdk.meter_provider._sdk_config.resource.attributes  # type: ignore[attr-defined]
        assert attrs["service.name"] == p.value
        assert attrs["service.namespace"] == "trading"
        assert str(attrs["service.instance.id"]).endswith("/" + p.value)


def test_service_name_and_resource_attributes_from_config() -> None:
    """OTEL_SERVICE_NAME sets service.name; the service label stays the plane."""
    cfg = TelemetryConfig.from_env(
        {
            "OTEL_SERVICE_NAME": "algo",
            "OTEL_RESOURCE_ATTRIBUTES": "service.namespace=desk1",
            "OTEL_METRICS_EXPORTER": "none",
        }
    )
    reader = InMemoryMetricReader()
    m = init_metrics_exporter("data_plane", config=cfg, metric_readers=[reader])
    attrs = m.sdk.meter_provider._sdk_config.resource.attributes  # type: ignore[attr-defined]
    assert (attrs["service.name"], attrs["service.namespace"]) == ("algo", "desk1")
    m.inc("ntp_rejects", source="ibkr_rt")
    (point,) = points(reader)["data_ntp_rejects"]
    assert point.attributes["service"] == "data_plane"


def test_sdk_disabled_still_checks_calls() -> None:
    """OTEL_SDK_DISABLED=true records nothing but still raises on bad input in strict mode."""
    cfg = TelemetryConfig(sdk_disabled=True, strict=True)
    m = init_metrics_exporter("data_plane", config=cfg)
    m.inc("ticks_received", source="ibkr_rt", symbol="SPY")
    assert not m.sdk.pull
    assert m.exposition is None
    assert m.health()["status"] == "disabled"
    with pytest.raises(TradingTelemetryError):
        m.inc("ticks_received", -1, source="ibkr_rt", symbol="SPY")


def test_concurrent_recording_loses_no_increment() -> None:
    """Eight threads hammering one handle and the keyed call give the exact total."""
    reader = InMemoryMetricReader()
    metrics = init_metrics_exporter("data_plane", config=STRICT_NO_EXPORT, metric_readers=[reader])
    handle = metrics.bind("ticks_received", source="ibkr_rt", symbol="SPY")
    start = threading.Barrier(8)

    def work(i: int) -> None:
        start.wait()
        for _ in range(5000):
            if i % 2:
                handle.inc()
            else:
                metrics.inc("ticks_received", source="ibkr_rt", symbol="SPY")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (point,) = points(reader)["data_ticks_received"]
    assert point.value == 8 * 5000


def test_specification_async_usage_runs_in_an_event_loop() -> None:
    """`server = await start_metrics_server(metrics, port=...)` works inside asyncio and serves /health."""
    from helpers import http_get
    from trading_telemetry import start_metrics_server

    async def main() -> tuple[int, bytes]:
        metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(strict=True))
        metrics.inc("ticks_received", source="ibkr_rt", symbol="SPY")
        async with await start_metrics_server(metrics, port=0) as server:
            # the event loop is free while the request is served from the server's thread
            status, _, body = await asyncio.to_thread(http_get, f"{server.url}/metrics")
            return status, body

    status, body = asyncio.run(main())
    assert status == 200
    assert b"data_ticks_received_total{" in body


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_otlp_exporters_build_for_both_signals(protocol: str) -> None:
    """OTEL_TRACES_EXPORTER=otlp and OTEL_METRICS_EXPORTER=otlp build a tracer and a push exporter per protocol.
    The last export at reset(), to a Collector that is not there, ends within its short timeout: none of its
    retry lines reach the next test."""
    cfg = TelemetryConfig.from_env({
        "OTEL_METRICS_EXPORTER": "otlp", "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_TIMEOUT": "300",
    })  # fmt: skip
    metrics = init_metrics_exporter("order_plane", config=cfg)
    assert metrics.tracer is not None
    assert metrics.health()["exporters"]["otlp"]["state"] == "pending"
    expected = "http://localhost:4317" if protocol == "grpc" else "http://localhost:4318/v1/metrics"
    assert metrics.health()["exporters"]["otlp"]["target"] == expected
    assert reset(timeout=10)


def test_concurrent_observations_keep_exact_histogram_counts() -> None:
    """Eight threads observing into one histogram handle lose no observation and no bucket count."""
    reader = InMemoryMetricReader()
    metrics = init_metrics_exporter("order_plane", config=STRICT_NO_EXPORT, metric_readers=[reader])
    labels = {"strategy": "OFI", "symbol": "SPY", "order_type": "LIMIT"}
    handle = metrics.bind("total_fill_latency", **labels)
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        for i in range(4000):
            handle.observe(0.003 if i % 2 else 0.2)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (point,) = points(reader)["orders_total_fill_latency"]
    bounds = list(point.explicit_bounds)
    assert point.count == 32000
    assert point.bucket_counts[bounds.index(0.005)] == 16000
    assert point.bucket_counts[bounds.index(0.25)] == 16000
    assert point.sum == pytest.approx(16000 * 0.003 + 16000 * 0.2)
    assert (point.min, point.max) == (0.003, 0.2)


def test_delta_temporality_reports_what_happened_since_the_last_export() -> None:
    """With a delta-temporality reader, each collection reports only the new observations."""
    from opentelemetry.sdk.metrics import Histogram as SdkHistogram
    from opentelemetry.sdk.metrics.export import AggregationTemporality

    reader = InMemoryMetricReader(preferred_temporality={SdkHistogram: AggregationTemporality.DELTA})
    metrics = init_metrics_exporter("strategy_plane", config=STRICT_NO_EXPORT, metric_readers=[reader])
    metrics.observe("qp_solve_time", 0.01)
    metrics.observe("qp_solve_time", 0.02)
    (first,) = points(reader)["strategy_qp_solve_time"]
    metrics.observe("qp_solve_time", 0.04)
    (second,) = points(reader)["strategy_qp_solve_time"]
    assert (first.count, round(first.sum, 9)) == (2, 0.03)
    assert (second.count, round(second.sum, 9)) == (1, 0.04)
    assert "strategy_qp_solve_time" not in points(reader)


@pytest.mark.parametrize(("exemplar_filter", "offered"), [("always_off", 0), ("trace_based", 0), ("always_on", 1)])
def test_the_exemplar_filter_decides_which_observations_carry_exemplars(exemplar_filter: str, offered: int) -> None:
    """OTEL_METRICS_EXEMPLAR_FILTER: outside any span only always_on offers an exemplar."""
    reader = InMemoryMetricReader()
    config = TelemetryConfig.from_env(
        {"OTEL_METRICS_EXPORTER": "none", "OTEL_METRICS_EXEMPLAR_FILTER": exemplar_filter}
    )
    m = init_metrics_exporter("order_plane", config=config, metric_readers=[reader])
    m.observe("total_fill_latency", 0.02, strategy="OFI", symbol="SPY", order_type="LIMIT")
    data = reader.get_metrics_data()
    assert data is not None
    (point,) = [p for rm in data.resource_metrics for sm in rm.scope_metrics for met in sm.metrics
                if met.name == "orders_total_fill_latency" for p in met.data.data_points]  # fmt: skip
    assert len(point.exemplars) == offered


# -- only a plain string stands for a label value ----------------------------------------


class Liar(str):
    """A string whose characters are one value, claiming to equal ``claims`` (and anything)."""

    claims = "SPY"

    def __hash__(self) -> int:
        return hash(self.claims)

    def __eq__(self, other: object) -> bool:
        return True


def _ticks(metrics: Any, symbol: str) -> float:
    return metrics.bind("ticks_received", source="ibkr_rt", symbol=symbol).value  # type: ignore[no-any-return]


@pytest.mark.parametrize("method", ["inc", "observe", "set"])
def test_strict_mode_refuses_an_object_passing_for_a_cached_label(method: str) -> None:
    """After a call with plain strings is cached, an object (not a str) whose hash and
    equality match them is still refused, naming the metric, the label and the value,
    whether it stands for a label value, a label name or the key."""
    metrics = init_metrics_exporter("data_plane", config=STRICT_NO_EXPORT)
    key, labels, value = {
        "inc": ("ticks_received", {"source": "ibkr_rt", "symbol": "SPY"}, 1),
        "observe": ("data_freshness", {"source": "ibkr_rt", "symbol": "SPY"}, 0.1),
        "set": ("completeness_score", {"symbol": "SPY"}, 0.5),
    }[method]
    record = getattr(metrics, method)
    record(key, value, **labels)  # cached
    with pytest.raises(TradingTelemetryError, match=rf"{key}: label symbol=Alias\('SPY'\) must be a non-empty string"):
        record(key, value, **{**labels, "symbol": Alias("SPY")})
    with pytest.raises(TradingTelemetryError, match=r"unknown metric Alias"):
        record(Alias(key), value, **labels)

    class Name(str):
        def __hash__(self) -> int:
            return hash("symbol")

        def __eq__(self, other: object) -> bool:
            return True

    with pytest.raises(TradingTelemetryError, match=rf"{key}: label 'venue'=.* is not allowed"):
        record(key, value, **{**{k: v for k, v in labels.items() if k != "symbol"}, Name("venue"): "SPY"})


def test_a_str_subclass_is_recorded_as_its_characters() -> None:
    """A str subclass is the label its characters spell, whatever its __eq__ and __hash__
    claim: a Liar("AAPL") claiming to be the cached "SPY" records on AAPL."""
    metrics = init_metrics_exporter("data_plane", config=STRICT_NO_EXPORT)
    metrics.inc("ticks_received", source="ibkr_rt", symbol="SPY")
    metrics.inc("ticks_received", source="ibkr_rt", symbol=Liar("AAPL"))
    metrics.inc("ticks_received", source="ibkr_rt", symbol=Liar("AAPL"))  # cached by its characters
    assert (_ticks(metrics, "SPY"), _ticks(metrics, "AAPL")) == (1, 2)


def test_production_drops_an_object_passing_for_a_cached_label() -> None:
    """Production mode drops such a call as invalid_label_value and records nothing on the cached series."""
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=()))
    metrics.inc("ticks_received", source="ibkr_rt", symbol="SPY")
    for _ in range(3):
        metrics.inc("ticks_received", source="ibkr_rt", symbol=Alias("SPY"))
    assert _ticks(metrics, "SPY") == 1
    assert metrics.policy.counts() == {("ticks_received", "invalid_label_value"): 3}
