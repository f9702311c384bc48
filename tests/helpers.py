"""Shared test helpers: a workload that records every catalog metric, and polling."""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from trading_telemetry import PlaneMetrics, TelemetryConfig
from trading_telemetry.catalog import CATALOG, Kind, MetricSpec, Plane, plane_specs

T = TypeVar("T")

STRICT_NO_EXPORT = TelemetryConfig(strict=True, metrics_exporters=())
STRICT_PROMETHEUS = TelemetryConfig(strict=True, metrics_exporters=("prometheus",))

# One label value per label name; the PromQL examples select switch_type="pnl".
LABEL_VALUES = {
    "symbol": "SPY", "source": "ibkr_rt", "duration": "1m", "error_type": "crossed_book", "event_type": "tick",
    "strategy": "OFI", "order_type": "LIMIT", "direction": "BUY", "status": "FILLED", "reason": "risk_check",
    "check_type": "max_position", "from_regime": "Calm", "to_regime": "Normal", "switch_type": "pnl",
}  # fmt: skip

# The metric names of the original monitoring specification, with their kinds: the specification.
SPEC_METRICS = {
    "data_ticks_received_total": "counter", "data_bars_received_total": "counter",
    "data_ofi_events_generated_total": "counter", "data_freshness_seconds": "histogram",
    "data_completeness_score": "gauge", "data_validation_errors_total": "counter",
    "data_ntp_rejects_total": "counter", "data_normalization_errors_total": "counter",
    "data_dlq_messages_total": "counter", "data_storage_writes_total": "counter",
    "data_storage_write_latency_seconds": "histogram",
    "orders_received_total": "counter", "orders_submitted_total": "counter", "orders_filled_total": "counter",
    "orders_rejected_total": "counter", "orders_intent_to_submit_latency_seconds": "histogram",
    "orders_submit_to_ack_latency_seconds": "histogram", "orders_ack_to_fill_latency_seconds": "histogram",
    "orders_total_fill_latency_seconds": "histogram", "orders_slippage_bps": "histogram",
    "orders_commission_total_usd": "counter", "orders_risk_rejections_total": "counter",
    "orders_pov_downscales_total": "counter",
    "strategy_signals_generated_total": "counter", "strategy_signal_strength": "histogram",
    "strategy_portfolio_gross_exposure_usd": "gauge", "strategy_portfolio_net_exposure_usd": "gauge",
    "strategy_portfolio_value_usd": "gauge", "strategy_pnl_realized_usd": "gauge",
    "strategy_pnl_unrealized_usd": "gauge", "strategy_pnl_total_usd": "gauge", "strategy_regime_state": "gauge",
    "strategy_regime_transitions_total": "counter", "strategy_qp_solve_time_seconds": "histogram",
    "strategy_qp_solve_status_total": "counter", "strategy_kill_switches_triggered_total": "counter",
    "strategy_kill_switch_active": "gauge",
}  # fmt: skip


def labels_for(spec: MetricSpec) -> dict[str, str]:
    return {name: LABEL_VALUES[name] for name in spec.labels}


def sample_value(spec: MetricSpec) -> float:
    """A value valid for the metric; for slippage, a negative one (price improvement)."""
    if spec.key == "slippage_bps":
        return -1.5
    if spec.integral:
        return spec.max_value or 0.0
    if spec.kind is Kind.HISTOGRAM:
        return spec.buckets[len(spec.buckets) // 2] if spec.buckets else 0.0
    return 0.5 if spec.max_value == 1.0 else 2.0


def record_everything(planes: Mapping[Plane, PlaneMetrics], times: int = 3) -> None:
    """Record every catalog metric ``times`` times through the specification's API."""
    for spec in CATALOG:
        metrics = planes[spec.plane]
        method = getattr(metrics, spec.kind.method)
        for _ in range(times):
            method(spec.key, sample_value(spec), **labels_for(spec))


def record_ops(metrics: PlaneMetrics, ops: list[tuple[str, dict[str, str], Any]]) -> None:
    """Record each (key, labels, value) with the method of the metric's kind; bad values are dropped and
    counted (negative increments, out-of-range gauges)."""
    specs = plane_specs(metrics.plane)
    for key, labels, value in ops:
        kind = specs[key].kind
        if kind is Kind.COUNTER:
            metrics.inc(key, value, **labels)
        elif kind is Kind.GAUGE:
            metrics.set(key, value, **labels)
        else:
            metrics.observe(key, value, **labels)


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A real HTTP server on a free loopback port, in a thread, answering with ``handler``: its base URL
    (``http://127.0.0.1:PORT``); shut down, and its thread joined, after."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.1) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
        except Exception as error:  # noqa: BLE001 - retried until the deadline
            last_error = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})")


def http_get(
    url: str, headers: Mapping[str, str] | None = None, timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def http_request(
    method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None, timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """``method`` on ``url`` with ``body``: the status, headers and body, whatever the status."""
    request = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def basic_auth(user: str, password: str) -> dict[str, str]:
    """The Authorization header of HTTP basic auth."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, query) of every target of every provisioned dashboard."""
    from trading_telemetry._dashboards import dashboards

    return [
        (name, panel["title"], target["expr"])
        for name, board in dashboards().items()
        for panel in board["panels"]
        for target in panel["targets"]
    ]


def with_all_variables(expr: str) -> str:
    """A panel's query as Grafana sends it with every variable on All."""
    return expr.replace("$__rate_interval", "1m").replace("$service", ".*").replace("$symbol", ".*") \
        .replace("$strategy", ".*").replace("$source", ".*")  # fmt: skip
