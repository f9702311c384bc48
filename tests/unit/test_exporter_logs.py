"""The OTLP exporters' retry and failure log lines are let through once a minute per kind
while the Collector is down; the rest are counted, and the next line let through says how
many were held back."""

from __future__ import annotations

import http.server
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import free_port, serving
from trading_telemetry import TelemetryConfig, init_metrics_exporter, reset
from trading_telemetry._exporter_logs import EXPORTER_LOGGERS, ThrottleFilter
from trading_telemetry._globals import STATE

SPY = {"source": "ibkr_rt", "symbol": "SPY"}


class _Unavailable(http.server.BaseHTTPRequestHandler):
    """A Collector that is down behind its load balancer: every export is answered 503."""

    posts: list[str]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.posts.append(self.path)
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def unavailable() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on a free loopback port answering 503 to every POST: its URL and the paths posted to."""
    posts: list[str] = []
    with serving(type("Handler", (_Unavailable,), {"posts": posts})) as url:
        yield url, posts


def _exporter_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name in EXPORTER_LOGGERS]


def _export_three_times(config: TelemetryConfig, caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    metrics = init_metrics_exporter("data_plane", config=config)
    metrics.inc("ticks_received", **SPY)
    with caplog.at_level(logging.WARNING, logger="opentelemetry"):
        for _ in range(3):
            metrics.sdk.meter_provider.force_flush(timeout_millis=10_000)  # type: ignore[attr-defined]
        otlp = metrics.health()["exporters"]["otlp"]
        assert (otlp["state"], otlp["consecutive_failures"]) == ("failing", 3)
        throttle = STATE.exporter_log_filter
        assert reset(timeout=10), "the last export, against the same failing Collector, finished"
    assert throttle is not None
    assert throttle.held_back == 6, "two lines of each of the four exports, the last one's included, but two"
    return _exporter_records(caplog)


def test_three_failed_http_exports_log_one_retry_line_and_one_failure_line(
    unavailable: tuple[str, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    """Against a real server answering 503, three exports and the last one at reset() (each a retry and a failure)
    log one line of each kind; the six others are counted, and the first line says repeats are held back."""
    url, posts = unavailable
    config = TelemetryConfig(
        metrics_exporters=("otlp",), otlp_endpoint=url, otlp_timeout_ms=1500, metric_export_interval_ms=3_600_000
    )
    records = _export_three_times(config, caplog)
    assert len(posts) == 8, "each export tried twice"
    messages = [r.getMessage() for r in records]
    assert len(messages) == 2, messages
    transient, failed = messages
    assert transient.startswith("Transient error ")
    assert "[repeats are logged at most once every 60 s; a plane's /health shows its exporters]" in transient
    assert failed.startswith("Failed to export metrics batch due to timeout")


def test_grpc_exports_to_a_collector_that_is_not_there_are_throttled_too(caplog: pytest.LogCaptureFixture) -> None:
    """OTLP/gRPC to a loopback port nobody listens on: its retry lines, on the gRPC exporter's logger, are held back
    after the first of each kind."""
    config = TelemetryConfig(
        metrics_exporters=("otlp",), otlp_protocol="grpc", otlp_endpoint=f"http://127.0.0.1:{free_port()}",
        otlp_timeout_ms=1500, metric_export_interval_ms=3_600_000,
    )  # fmt: skip
    records = _export_three_times(config, caplog)
    messages = [r.getMessage() for r in records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("Transient error StatusCode.UNAVAILABLE encountered while exporting metrics")
    assert messages[1].startswith("Failed to export metrics to 127.0.0.1:")
    assert {r.name for r in records} == {"opentelemetry.exporter.otlp.proto.grpc.exporter"}


def test_reset_takes_the_filter_off_the_exporters_loggers(unavailable: tuple[str, list[str]]) -> None:
    """The filter is there while an OTLP plane exists, and reset() removes it."""
    url, _ = unavailable
    config = TelemetryConfig(metrics_exporters=("otlp",), otlp_endpoint=url, otlp_timeout_ms=300)
    init_metrics_exporter("data_plane", config=config)
    assert all(STATE.exporter_log_filter in logging.getLogger(name).filters for name in EXPORTER_LOGGERS)
    assert reset(timeout=10)
    assert STATE.exporter_log_filter is None
    assert not any(isinstance(f, ThrottleFilter) for name in EXPORTER_LOGGERS for f in logging.getLogger(name).filters)


def _record(kind: int, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord(EXPORTER_LOGGERS[0], level, __file__, 1, f"kind {kind}: %s", ("detail",), None)


def test_after_the_interval_the_next_line_says_how_many_were_held_back() -> None:
    """Five lines in a minute: the first passes, four are held; the next after the minute says 4 were not logged."""
    now = [0.0]
    throttle = ThrottleFilter(clock=lambda: now[0])
    passed = []
    for _ in range(5):
        record = _record(1)
        if throttle.filter(record):
            passed.append(record.getMessage())
        now[0] += 10
    now[0] = 61
    record = _record(1)
    assert throttle.filter(record)
    assert passed[0].startswith("kind 1: detail [repeats are logged at most once every 60 s")
    assert len(passed) == 1
    assert record.getMessage() == "kind 1: detail [4 more like this in the last 60 s not logged]"
    assert throttle.filter(_record(1, logging.DEBUG)), "debug lines always pass"


@settings(max_examples=200, deadline=None)
@given(events=st.lists(st.tuples(st.integers(0, 3), st.floats(0, 100)), max_size=60))
def test_at_most_one_line_per_kind_per_interval_passes_and_every_other_is_counted(
    events: list[tuple[int, float]],
) -> None:
    """Any sequence of lines of four kinds at any pace: a line passes exactly when its kind has passed none in the
    last 60 s, and every line held back is counted."""
    now = [0.0]
    throttle = ThrottleFilter(clock=lambda: now[0])
    last: dict[int, float] = {}
    held = 0
    for kind, advance in events:
        now[0] += advance
        expected = kind not in last or now[0] - last[kind] >= 60
        assert throttle.filter(_record(kind)) is expected
        if expected:
            last[kind] = now[0]
        else:
            held += 1
    assert throttle.held_back == held
