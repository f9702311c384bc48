"""Abuse of the /metrics and /health listener, by real clients on loopback: idle connections
held open, slow readers, oversized requests, a low open-file limit, concurrent scrapes and
clients that leave before their answer. The trading process must not notice."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import http_get, record_everything, wait_for
from trading_telemetry import MetricsServer, PlaneMetrics, TelemetryConfig, init_metrics_exporter, serve_metrics
from trading_telemetry.catalog import Plane

pytestmark = pytest.mark.integration

IDLE_MS = 1500
CONFIG = TelemetryConfig(metrics_exporters=("prometheus",), http_idle_timeout_ms=IDLE_MS, cardinality_limit=100_000)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def connect(server: MetricsServer) -> socket.socket:
    return socket.create_connection((server.address, server.port), timeout=5)


def scrape_body(server: MetricsServer) -> bytes | None:
    """The /metrics body, or None for a 503 (too many scrapes under way: retried by the caller)."""
    status, _, body = http_get(f"{server.url}/metrics", timeout=30)
    assert status in (200, 503)
    return body if status == 200 else None


def health_within(server: MetricsServer, seconds: float) -> bool:
    """Whether GET /health answers 200 within ``seconds`` (connect, send, read)."""
    status, _, body = http_get(f"{server.url}/health", timeout=seconds)
    return status == 200 and b'"plane"' in body


@pytest.fixture
def big_plane() -> Iterator[tuple[PlaneMetrics, MetricsServer]]:
    """The data plane with 6,000 series (a render takes a while), served on a free port."""
    metrics = init_metrics_exporter("data_plane", config=CONFIG)
    for i in range(3000):
        metrics.inc("ticks_received", source="ibkr_rt", symbol=f"S{i:05d}")
        metrics.observe("data_freshness", 0.01, source="ibkr_rt", symbol=f"S{i:05d}")
    with serve_metrics(metrics, port=0) as server:
        yield metrics, server


def test_400_idle_connections_cost_no_thread_and_leak_nothing(big_plane: tuple[PlaneMetrics, MetricsServer]) -> None:
    """400 connections that never send a byte: /health answers within a second, no thread is added,
    and once they are closed (or time out) every descriptor is released."""
    _, server = big_plane
    assert health_within(server, 1.0)
    threads, fds = threading.active_count(), open_fds()
    idle = [connect(server) for _ in range(400)]
    try:
        wait_for("the server to accept all 400", lambda: len(server._map) >= 400 + 2)
        assert health_within(server, 1.0)
        assert threading.active_count() == threads  # an event loop, not a thread per connection
    finally:
        for sock in idle:
            sock.close()
    wait_for("every descriptor to be released", lambda: open_fds() <= fds, timeout=10)
    assert threading.active_count() == threads
    assert health_within(server, 1.0)


def test_idle_connections_are_closed_after_the_idle_timeout(big_plane: tuple[PlaneMetrics, MetricsServer]) -> None:
    """A connection that sends nothing is closed by the server once TRADING_TELEMETRY_HTTP_IDLE_TIMEOUT passes."""
    _, server = big_plane
    sock = connect(server)
    sock.settimeout(30)
    started = time.monotonic()
    assert sock.recv(1) == b""  # the server closed it
    assert time.monotonic() - started < 30
    sock.close()


def test_a_slow_reader_holds_no_handler_thread(big_plane: tuple[PlaneMetrics, MetricsServer]) -> None:
    """Clients that ask for /metrics and never read the answer: /health and other scrapes go on."""
    _, server = big_plane
    slow = []
    for _ in range(8):
        sock = connect(server)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        slow.append(sock)
    try:
        assert health_within(server, 1.0)
        body = wait_for("a scrape to succeed", lambda: scrape_body(server))
        assert b"data_ticks_received_total" in body
    finally:
        for sock in slow:
            sock.close()


@pytest.mark.parametrize(
    ("request_bytes", "statuses"),
    [
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (64 * 1024) + b"\r\n\r\n", (b"431", b"400")),
        (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n" + b"a" * 70_000, (b"413",)),
        (b"DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n", (b"405",)),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64) + b"\r\n\r\n", (b"400",)),
    ],
    ids=["huge-header", "huge-body", "wrong-method", "tls-hello"],
)
def test_oversized_and_malformed_requests_are_refused(
    big_plane: tuple[PlaneMetrics, MetricsServer], request_bytes: bytes, statuses: tuple[bytes, ...]
) -> None:
    """Headers over 16 KiB, bodies over 64 KiB, other methods and garbage get a 4xx, not a render or a hang."""
    _, server = big_plane
    renders = server.exposition.renders if server.exposition else 0
    with connect(server) as sock:
        sock.settimeout(10)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # refused before we finished: fine
            sock.sendall(request_bytes)
        answer = sock.recv(200)
    assert answer.split(b" ")[1] in statuses, answer
    assert (server.exposition.renders if server.exposition else 0) == renders
    assert health_within(server, 1.0)


def test_concurrent_scrapes_share_renders(big_plane: tuple[PlaneMetrics, MetricsServer]) -> None:
    """12 simultaneous scrapes of a 6,000-series plane are all answered, from fewer renders than scrapes."""
    _, server = big_plane
    assert server.exposition is not None
    before = server.exposition.renders
    bodies: list[bytes] = []
    gate = threading.Barrier(12)

    def scrape() -> None:
        gate.wait()
        status, _, body = http_get(f"{server.url}/metrics", timeout=30)
        assert status == 200
        bodies.append(body)

    threads = [threading.Thread(target=scrape) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(bodies) == 12
    renders = server.exposition.renders - before
    assert renders <= 6, renders
    assert all(b"data_ticks_received_total" in body for body in bodies)


def test_no_render_for_a_client_that_has_gone(big_plane: tuple[PlaneMetrics, MetricsServer]) -> None:
    """A scrape whose client disconnects while it waits for the render lock is not rendered."""
    _, server = big_plane
    exposition = server.exposition
    assert exposition is not None
    before = exposition.renders
    with exposition._lock:  # a render in progress, as far as the new request can tell
        free = exposition._scrapes._value  # type: ignore[attr-defined]
        sock = connect(server)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for("the scrape to wait for the render", lambda: exposition._scrapes._value < free)  # type: ignore[attr-defined]
        sock.close()
        wait_for("the server to see the client gone", lambda: len(server._map) <= 2)  # the listener and the trigger
    wait_for("the scrape to be skipped", lambda: exposition.skipped_gone == 1)
    assert exposition.renders == before


def _serve_with_fd_limit(limit: int, port: int) -> subprocess.Popen[bytes]:
    code = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
        "from trading_telemetry.metrics_server import main\n"
        f"sys.exit(main(['data_plane', '{port}']))\n"
    )
    env = {**os.environ, "TRADING_TELEMETRY_HTTP_IDLE_TIMEOUT": str(IDLE_MS)}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_low_open_file_limit_is_not_exhausted_and_does_not_spin() -> None:
    """With 64 descriptors, 200 connection attempts fill the connection cap (32), not the process's
    descriptors: the accept loop does not spin, and /health answers once idle connections time out."""
    from helpers import free_port

    port = free_port()
    proc = _serve_with_fd_limit(64, port)
    held: list[socket.socket] = []
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for("the server to start", lambda: http_get(f"{url}/health", timeout=1)[0] == 200)
        for _ in range(200):
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                break
        cpu = _cpu_seconds(proc.pid)
        time.sleep(1.0)  # measuring: CPU burnt over one second of wall time with the cap reached
        assert _cpu_seconds(proc.pid) - cpu < 0.5
        assert proc.poll() is None
        wait_for("/health once idle connections time out", lambda: http_get(f"{url}/health", timeout=2)[0] == 200)
    finally:
        for sock in held:
            sock.close()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()[-2000:]


def test_the_trading_loop_is_not_held_up_by_abuse() -> None:
    """All planes recording in this thread while 300 idle connections and 4 scrapers hit the server:
    every record still succeeds (the server has no lock a recording call waits for)."""
    planes = {p: init_metrics_exporter(p, config=CONFIG) for p in Plane}
    with serve_metrics(planes[Plane.DATA], port=0) as server:
        idle = [connect(server) for _ in range(300)]
        stop = threading.Event()

        def scraper() -> None:
            while not stop.is_set():
                http_get(f"{server.url}/metrics", timeout=30)

        scrapers = [threading.Thread(target=scraper) for _ in range(4)]
        for thread in scrapers:
            thread.start()
        try:
            record_everything(planes, times=200)
        finally:
            stop.set()
            for thread in scrapers:
                thread.join(60)
            for sock in idle:
                sock.close()
    assert planes[Plane.DATA].health()["dropped_measurements"] == 0


def test_fd_budget_is_half_the_open_file_limit() -> None:
    """The connection cap never exceeds half the soft open-file limit."""
    from trading_telemetry.metrics_server import connection_limit

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert connection_limit(10**9) <= max(8, soft // 2)
    assert connection_limit(10) == min(10, max(8, soft // 2))
