"""Retired series in a real Prometheus 3: on the pull path a retired series leaves /metrics and
Prometheus marks it stale at the next scrape; on the push path (the SDK's OTLP exporter into
Prometheus's OTLP receiver) it stops receiving samples and leaves instant queries once the
lookback delta has passed (5m by default; 10 s here), as the receiver writes no staleness marker;
through the stack's Collector it leaves the Collector's exporter after its metric_expiration."""

from __future__ import annotations

import time
from typing import Any

import pytest
from test_otlp_prometheus import USER, receiver_env

from helpers import wait_for
from servers import Prometheus
from trading_telemetry import TelemetryConfig, init_metrics_exporter, serve_metrics
from trading_telemetry.catalog import Plane, spec

pytestmark = pytest.mark.integration

TICKS = spec(Plane.DATA, "ticks_received").prometheus_name
PNL = spec(Plane.STRATEGY, "pnl_unrealized_usd").prometheus_name
LOOKBACK_S = 10  # the receiver's --query.lookback-delta (Prometheus's default: 5m)
INTERVAL_MS = 300
COLLECTOR_EXPIRATION_S = 60  # otel_collector/config.yaml's metric_expiration


def symbols(prom: Prometheus, name: str, label: str) -> set[str]:
    """The ``label`` values of ``name``'s series an instant query returns now."""
    return {r["metric"][label] for r in prom.query(name)}


def test_a_retired_series_is_stale_at_the_next_scrape(prometheus_factory: Any) -> None:
    """After retire(symbol=...) the symbol's series is gone from /metrics, and Prometheus' instant query
    returns nothing for it at the next scrape (a staleness marker, not the lookback), while the other
    symbol's series stays and keeps its history."""
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=("prometheus",)))
    for symbol in ("ESZ6", "ESH7"):
        metrics.inc("ticks_received", 5, source="cme", symbol=symbol)
    server = serve_metrics(metrics, port=0)
    try:
        prom = prometheus_factory({"planes": [f"127.0.0.1:{server.port}"]})
        wait_for("both symbols scraped", lambda: symbols(prom, TICKS, "symbol") == {"ESZ6", "ESH7"} or None)
        assert metrics.retire(symbol="ESZ6") == 1
        retired_at = time.monotonic()
        wait_for("the retired symbol to go stale", lambda: symbols(prom, TICKS, "symbol") == {"ESH7"} or None)
        assert time.monotonic() - retired_at < 60  # a staleness marker: the lookback is 5m
        assert prom.value(f'{TICKS}{{symbol="ESH7"}}') == 5
        history = prom.query(f'last_over_time({TICKS}{{symbol="ESZ6"}}[5m])')
        assert [float(r["value"][1]) for r in history] == [5.0]
        metrics.inc("ticks_received", 2, source="cme", symbol="ESZ6")  # a new series from zero
        wait_for("the new series scraped", lambda: prom.value(f'{TICKS}{{symbol="ESZ6"}}') == 2 or None)
    finally:
        server.close()


def test_a_retired_series_stops_being_pushed_over_otlp(prometheus_factory: Any) -> None:
    """Over OTLP into Prometheus's receiver, a retired strategy's gauge receives no sample after its
    retirement while another strategy's keeps coming, and leaves instant queries once the lookback
    delta has passed since its last sample (the receiver writes no staleness marker)."""
    flags = ["--web.enable-otlp-receiver", f"--query.lookback-delta={LOOKBACK_S}s"]
    receiver = prometheus_factory({}, flags=flags, web_user=USER)
    config = TelemetryConfig.from_env(receiver_env(receiver, INTERVAL_MS))
    metrics = init_metrics_exporter("strategy_plane", config=config)
    metrics.set("pnl_unrealized_usd", 120.0, strategy="mom_1")
    metrics.set("pnl_unrealized_usd", -40.0, strategy="mr_2")
    wait_for("both strategies pushed", lambda: symbols(receiver, PNL, "strategy") == {"mom_1", "mr_2"} or None)
    assert metrics.retire(strategy="mom_1") == 1
    retired_at = time.time()

    def last_sample(strategy: str) -> float:
        return receiver.value(f'timestamp({PNL}{{strategy="{strategy}"}})') or 0.0

    # The other strategy's samples keep coming, several export intervals past the retirement...
    wait_for("mr_2 pushed after the retirement", lambda: last_sample("mr_2") > retired_at + 1.5 or None)
    # ...and none of the retired one's (one export may have been on its way when retire() ran).
    assert last_sample("mom_1") <= retired_at + INTERVAL_MS / 1000
    recent = receiver.query(f'count_over_time({PNL}{{strategy="mom_1"}}[1s])')
    assert recent == []
    # No staleness marker: the last value stays visible until the lookback delta has passed.
    stopped = last_sample("mom_1")
    if time.time() < stopped + LOOKBACK_S - 3:
        assert symbols(receiver, PNL, "strategy") == {"mom_1", "mr_2"}
    wait_for(
        "the retired gauge to leave instant queries",
        lambda: symbols(receiver, PNL, "strategy") == {"mr_2"} or None,
        timeout=LOOKBACK_S + 30,
        interval=1.0,
    )
    assert time.time() >= stopped + LOOKBACK_S
    assert metrics.health()["exporters"]["otlp"]["consecutive_failures"] == 0


def test_a_retired_series_expires_through_the_collector(collector_factory: Any, prometheus_factory: Any) -> None:
    """Through the stack's Collector, a retired strategy's gauge leaves the Collector's Prometheus exporter
    after its metric_expiration (1m) without a push, and Prometheus then marks it stale; the other stays."""
    collector = collector_factory()
    prom = prometheus_factory({"collector": [collector.prometheus_target]})
    config = TelemetryConfig.from_env({
        **collector.sdk_env(), "OTEL_METRICS_EXPORTER": "otlp", "OTEL_METRIC_EXPORT_INTERVAL": str(INTERVAL_MS),
    })  # fmt: skip
    metrics = init_metrics_exporter("strategy_plane", config=config)
    metrics.set("pnl_unrealized_usd", 120.0, strategy="mom_1")
    metrics.set("pnl_unrealized_usd", -40.0, strategy="mr_2")
    wait_for(
        "both strategies through the Collector", lambda: symbols(prom, PNL, "strategy") == {"mom_1", "mr_2"} or None
    )
    assert metrics.retire(strategy="mom_1") == 1
    retired_at = time.monotonic()
    wait_for(
        "the retired gauge to expire from the Collector",
        lambda: symbols(prom, PNL, "strategy") == {"mr_2"} or None,
        timeout=COLLECTOR_EXPIRATION_S + 30,
        interval=1.0,
    )
    assert time.monotonic() - retired_at >= COLLECTOR_EXPIRATION_S - 5  # the expiration, not a push of nothing
    assert prom.value(f'{PNL}{{strategy="mr_2"}}') == -40.0
