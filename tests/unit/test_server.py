from __future__ import annotations

import gzip
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from helpers import STRICT_PROMETHEUS, free_port, http_get, record_everything, wait_for
from trading_telemetry import MetricsServer, TelemetryConfig, init_metrics_exporter, serve_metrics
from trading_telemetry.catalog import CATALOG, Plane


def families(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def test_three_planes_in_one_process_on_three_ports() -> None:
    """Each plane serves only its own metrics on its own port, every series labelled with its service."""
    planes = {p: init_metrics_exporter(p, config=STRICT_PROMETHEUS) for p in Plane}
    record_everything(planes)
    servers = [serve_metrics(m, port=0) for m in planes.values()]
    try:
        assert len({s.port for s in servers}) == 3
        for server in servers:
            status, headers, body = http_get(f"{server.url}/metrics")
            assert status == 200
            assert headers["Content-Type"].startswith("text/plain")
            plane = server.metrics.plane
            expected = {
                s.prometheus_name.removesuffix("_total"): s.prometheus_type for s in CATALOG if s.plane is plane
            }
            got = families(body.decode())
            assert {k: v for k, v in got.items() if k in expected} == expected
            others = {s.prometheus_name.removesuffix("_total") for s in CATALOG if s.plane is not plane}
            assert not others & set(got)
            for family in text_string_to_metric_families(body.decode()):
                if family.name != "target_info":
                    assert all(sample.labels["service"] == plane.value for sample in family.samples), family.name
    finally:
        for server in servers:
            server.close()


def test_openmetrics_when_the_scraper_asks() -> None:
    """An OpenMetrics Accept header gets the OpenMetrics format, with # EOF."""
    metrics = init_metrics_exporter("data_plane", config=STRICT_PROMETHEUS)
    metrics.observe("data_freshness", 0.15, source="ibkr_rt", symbol="SPY")
    with serve_metrics(metrics, port=0) as server:
        status, headers, body = http_get(
            f"{server.url}/metrics", {"Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"}
        )
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    names = {f.name: f.unit for f in parse_openmetrics(body.decode())}
    assert names["data_freshness_seconds"] == "seconds"


def test_awkward_label_values_are_escaped() -> None:
    """Quotes, backslashes, newlines and non-ASCII label values survive the exposition unchanged."""
    metrics = init_metrics_exporter("data_plane", config=STRICT_PROMETHEUS)
    awkward = 'BRK"B\\x\nlinie ü 株'
    metrics.inc("ticks_received", source="ibkr_rt", symbol=awkward)
    with serve_metrics(metrics, port=0) as server:
        _, _, body = http_get(f"{server.url}/metrics")
    samples = [s for f in text_string_to_metric_families(body.decode("utf-8")) for s in f.samples
               if s.name == "data_ticks_received_total"]  # fmt: skip
    assert [s.labels["symbol"] for s in samples] == [awkward]
    assert b'symbol="BRK\\"B\\\\x\\nlinie' in body


def test_health_reports_status_plane_uptime_and_exporters() -> None:
    """/health is JSON with status, plane, uptime and exporter state: 200 while serving, 503 once stopped."""
    metrics = init_metrics_exporter("order_plane", config=STRICT_PROMETHEUS)
    with serve_metrics(metrics, port=0) as server:
        status, headers, body = http_get(f"{server.url}/health")
        assert status == 200
        assert headers["Content-Type"].startswith("application/json")
        health = json.loads(body)
        assert health["status"] == "ok"
        assert health["plane"] == "order_plane"
        assert health["uptime_seconds"] >= 0
        assert health["exporters"] == {"prometheus": {"state": "ok"}}
        metrics.shutdown()
        status, _, body = http_get(f"{server.url}/health")
        assert status == 503
        assert json.loads(body)["status"] == "stopped"
        assert http_get(f"{server.url}/nope")[0] == 404


def test_failing_push_exporter_degrades_health_but_keeps_200() -> None:
    """An unreachable Collector shows as degraded with the failure count; pull still works, status stays 200."""
    port = free_port()  # nothing listens here
    cfg = TelemetryConfig.from_env({
        "OTEL_METRICS_EXPORTER": "prometheus,otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "200",
        "TRADING_TELEMETRY_STRICT": "true",
    })  # fmt: skip
    metrics = init_metrics_exporter("data_plane", config=cfg)
    metrics.inc("ticks_received", source="ibkr_rt", symbol="SPY")
    metrics.force_flush(timeout_millis=2000)
    with serve_metrics(metrics, port=0) as server:
        status, _, body = http_get(f"{server.url}/health")
    health = json.loads(body)
    assert status == 200
    assert health["status"] == "degraded"
    assert health["exporters"]["otlp"]["state"] == "failing"
    assert health["exporters"]["otlp"]["consecutive_failures"] >= 1
    assert health["exporters"]["otlp"]["target"] == f"http://127.0.0.1:{port}/v1/metrics"


def test_metrics_404_when_prometheus_exporter_is_off() -> None:
    """With OTEL_METRICS_EXPORTER=none, /metrics says why it has nothing; /health still answers."""
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=()))
    with serve_metrics(metrics, port=0) as server:
        status, _, body = http_get(f"{server.url}/metrics")
        assert (status, b"OTEL_METRICS_EXPORTER" in body) == (404, True)
        assert http_get(f"{server.url}/health")[0] == 200


def test_default_bind_address_is_loopback() -> None:
    """Without configuration the server listens on 127.0.0.1 only."""
    metrics = init_metrics_exporter("data_plane", config=STRICT_PROMETHEUS)
    with serve_metrics(metrics, port=0) as server:
        assert server.address == "127.0.0.1"


@pytest.mark.parametrize("how", ["module", "console_script"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_standalone_server_serves_and_stops_cleanly_on_signal(how: str, sig: signal.Signals) -> None:
    """`python -m trading_telemetry.metrics_server` and `trading-telemetry serve` exit 0 on SIGTERM and SIGINT."""
    port = free_port()
    if how == "module":
        cmd = [sys.executable, "-m", "trading_telemetry.metrics_server", "strategy_plane", str(port)]
    else:
        cmd = [os.path.join(os.path.dirname(sys.executable), "trading-telemetry"), "serve", "strategy_plane",
               "--port", str(port)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRADING_TELEMETRY_"))}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        health = wait_for("the server to answer /health", lambda: http_get(f"http://127.0.0.1:{port}/health"), 20)
        assert health[0] == 200
        assert json.loads(health[2])["plane"] == "strategy_plane"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"127.0.0.1:{port}/metrics" in out
    assert "serving the metrics this process records" in out
    assert "RuntimeWarning" not in err


def test_unknown_plane_on_the_command_line_is_a_clear_error() -> None:
    """A plane that does not exist exits 2 with a message naming the known planes."""
    proc = subprocess.run(
        [sys.executable, "-m", "trading_telemetry.metrics_server", "risk_plane", str(free_port())],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "risk_plane" in proc.stderr
    assert "data_plane" in proc.stderr


def _raw_exchange(server: MetricsServer, request: bytes, timeout: float = 10) -> bytes:
    """Send ``request`` bytes on one connection and read until the server closes it."""
    with socket.create_connection((server.address, server.port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_the_port_is_an_int_and_health_reports_the_listener() -> None:
    """`MetricsServer.port` is an int, and /health reports the listener's connections, limit and counters."""
    metrics = init_metrics_exporter("data_plane", config=STRICT_PROMETHEUS)
    with serve_metrics(metrics, port=0) as server:
        assert isinstance(server.port, int)
        assert server.url == f"http://127.0.0.1:{server.port}"
        listener = json.loads(http_get(f"{server.url}/health")[2])["listener"]
    assert listener["connection_limit"] == server.connection_limit
    assert listener["connections"] >= 1
    for counter in ("evicted_at_limit", "header_timeouts", "send_timeouts", "requests_queued", "queue_depth_max"):
        assert listener[counter] >= 0


def test_one_request_per_connection_and_pipelined_requests_are_ignored() -> None:
    """Every answer says Connection: close and ends its connection; requests pipelined after the first get no
    answer (a client cannot queue answers on one connection)."""
    metrics = init_metrics_exporter("data_plane", config=STRICT_PROMETHEUS)
    with serve_metrics(metrics, port=0) as server:
        for first in (b"/metrics", b"/health"):
            pipelined = (
                b"GET " + first + b" HTTP/1.1\r\nHost: x\r\n\r\n" + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 5
            )
            answer = _raw_exchange(server, pipelined)
            assert answer.count(b"HTTP/1.1 ") == 1, answer[:300]
            assert b"\r\nConnection: close\r\n" in answer


def test_head_and_gzip_answers() -> None:
    """HEAD /metrics has the GET answer's headers and no body; a gzip answer decompresses to the plain one."""
    metrics = init_metrics_exporter("data_plane", config=STRICT_PROMETHEUS)
    metrics.inc("ticks_received", source="ibkr_rt", symbol="SPY")
    with serve_metrics(metrics, port=0) as server:
        head = _raw_exchange(server, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        headers, _, body = head.partition(b"\r\n\r\n")
        assert body == b""
        assert int(headers.split(b"Content-Length: ")[1].split(b"\r\n")[0]) > 0
        status, got, zipped = http_get(f"{server.url}/metrics", {"Accept-Encoding": "gzip"})
        assert (status, got["Content-Encoding"]) == (200, "gzip")
        assert b'data_ticks_received_total{service="data_plane",source="ibkr_rt",symbol="SPY"} 1.0' in gzip.decompress(
            zipped
        )


def test_a_request_trickled_past_the_header_timeout_is_closed() -> None:
    """A client sending its headers a byte at a time is cut off once TRADING_TELEMETRY_HTTP_HEADER_TIMEOUT has
    passed since the first byte, though it never goes idle for the (much longer) idle timeout."""
    cfg = TelemetryConfig(metrics_exporters=("prometheus",), http_idle_timeout_ms=30_000, http_header_timeout_ms=500)
    with serve_metrics(init_metrics_exporter("data_plane", config=cfg), port=0) as server:
        with socket.create_connection((server.address, server.port), timeout=10) as sock:
            started = time.monotonic()
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")

            def trickle_a_byte_and_see_it_closed() -> bool:
                try:
                    sock.sendall(b"X")
                    sock.settimeout(0.2)
                    return sock.recv(1) == b""
                except TimeoutError:
                    return False
                except OSError:
                    return True

            # Well before the 30 s idle timeout; the count below says the header timeout closed it.
            wait_for("the server to close the trickling connection", trickle_a_byte_and_see_it_closed, timeout=10)
            elapsed = time.monotonic() - started
        assert elapsed >= 0.5  # not before the header timeout
        assert json.loads(http_get(f"{server.url}/health")[2])["listener"]["header_timeouts"] == 1


def test_at_the_connection_limit_the_oldest_unanswered_connection_makes_room() -> None:
    """With every connection slot held by clients that sent nothing, a new /health is answered at once: the
    oldest connection that has not completed a request is closed to make room, and counted."""
    cfg = TelemetryConfig(metrics_exporters=("prometheus",), http_max_connections=8, http_idle_timeout_ms=60_000)
    with serve_metrics(init_metrics_exporter("data_plane", config=cfg), port=0) as server:
        assert server.connection_limit == 8
        idle = [socket.create_connection((server.address, server.port), timeout=5) for _ in range(6)]
        try:
            wait_for("all six to be accepted", lambda: server.health()["listener"]["connections"] == 6)
            status, _, body = http_get(f"{server.url}/health", timeout=1.0)
            assert status == 200
            assert json.loads(body)["listener"]["evicted_at_limit"] == 1
            idle[0].settimeout(5)
            assert idle[0].recv(1) == b""  # the oldest went
        finally:
            for sock in idle:
                sock.close()


def test_health_goes_first_and_a_deep_queue_is_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """Queued behind 100 scrapes with no free handler, /health is next; the queue depth is counted for /health
    and logged once, not once per queued request."""
    from trading_telemetry._listener import Dispatcher, ListenerStats

    dispatcher = Dispatcher(ListenerStats())  # no handler threads: every request queues

    def channel(path: str) -> SimpleNamespace:
        return SimpleNamespace(requests=[SimpleNamespace(path=path)])

    with caplog.at_level(logging.WARNING, logger="waitress.queue"):
        for _ in range(100):
            dispatcher.add_task(channel("/metrics"))
        dispatcher.add_task(channel("/health"))
    assert dispatcher.queue[0].requests[0].path == "/health"
    assert (dispatcher.stats.queued, dispatcher.stats.queue_depth_max) == (101, 101)
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["Task queue depth is 1"]


def running_listener() -> tuple[Any, dict[int, object], threading.Thread]:
    """Our waitress listener on a free loopback port, its event loop running in a thread (a daemon: a failing
    test cannot hold the run): the server, its socket map and the loop's thread."""
    from waitress.adjustments import Adjustments

    from trading_telemetry._listener import Dispatcher, ListenerServer, ListenerStats

    socket_map: dict[int, object] = {}
    adjustments = Adjustments(host="127.0.0.1", port=0)
    server = ListenerServer(lambda environ, start: [], socket_map, adjustments, Dispatcher(ListenerStats()), 5.0, 5.0)
    loop = threading.Thread(target=server.run, daemon=True)
    loop.start()
    return server, socket_map, loop


def test_a_wake_up_after_the_listener_stopped_writes_nowhere() -> None:
    """A handler that finishes after the server stopped (close() gave up waiting for it) wakes the
    event loop: that wake-up is skipped, never a write to the closed trigger pipe (EBADF and a traceback)
    or to whatever file has since been given the pipe's descriptor number."""
    server, socket_map, loop = running_listener()
    server.stop()
    loop.join(5)
    assert not loop.is_alive()
    assert not socket_map
    pipes = [os.pipe() for _ in range(4)]  # the lowest free numbers: the trigger's among them
    try:
        server.pull_trigger()  # raised OSError (EBADF), or wrote into a reused descriptor
        for read_end, _ in pipes:
            os.set_blocking(read_end, False)
            with pytest.raises(BlockingIOError):
                os.read(read_end, 1)
    finally:
        for read_end, write_end in pipes:
            os.close(read_end)
            os.close(write_end)
        server.task_dispatcher.shutdown(timeout=1)


def test_stopping_while_a_handler_pulls_with_its_buffer_lock_held_does_not_deadlock() -> None:
    """A handler that holds a connection's buffer lock (waitress's write_soon) and wakes the loop while the server
    stops: the stop closes that connection once the handler lets go, and both finish."""
    from waitress.channel import HTTPChannel

    server, socket_map, loop = running_listener()
    client = socket.create_connection(("127.0.0.1", int(server.effective_port)), timeout=5)
    try:
        channel = wait_for(
            "the connection to be accepted",
            lambda: next((c for c in list(socket_map.values()) if isinstance(c, HTTPChannel)), None),
            timeout=10,
        )
        pulled = threading.Event()
        with channel.outbuf_lock:  # as a handler writing its answer
            server.stop()
            wait_for("the stop to begin", lambda: server._pipe_closed, timeout=10)
            handler = threading.Thread(target=lambda: (server.pull_trigger(), pulled.set()), daemon=True)
            handler.start()
            assert pulled.wait(10), "the handler's wake-up waited for the stop, which waits for the handler"
        loop.join(10)
        assert not loop.is_alive()
        assert not socket_map
    finally:
        client.close()
        server.task_dispatcher.shutdown(timeout=1)
