"""Abuse of the /metrics and /health listener, by real clients on loopback: idle connections
held open, slow readers, oversized requests, a low open-file limit, concurrent scrapes and
clients that leave before their answer. The trading process must not notice.

The attacks at the end (pipelined unread scrapes, trickled headers, 1,000 connections under a
64-descriptor limit, slow gzip readers) each probe /health while the attack goes on: every
probe must be answered within 1 s. Each prints the probes' latencies (``pytest -s``)."""

from __future__ import annotations

import contextlib
import json
import math
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
    sock.settimeout(30)  # the deadline, far past the idle timeout: recv raises TimeoutError if it stays open
    assert sock.recv(1) == b""  # the server closed it
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


def test_an_answer_not_taken_within_the_idle_timeout_is_dropped(big_plane: tuple[PlaneMetrics, MetricsServer]) -> None:
    """A client that asks for the 5 MB body and never reads it: its handler returned at once, and the event loop
    closes the connection once the answer has waited TRADING_TELEMETRY_HTTP_IDLE_TIMEOUT, counted in /health."""
    _, server = big_plane
    sock = slow_socket(server.address, server.port)
    try:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        listener = wait_for(
            "the unread answer to be dropped", lambda: (s := server.health()["listener"])["send_timeouts"] and s, 15
        )
        assert listener["send_timeouts"] == 1
        wait_for("the connection to be gone", lambda: server.health()["listener"]["connections"] == 0)
    finally:
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


# The attacks. Each runs for a bounded time against a real server and probes /health meanwhile.

PROBE_DEADLINE_S = 1.0


def probe_health(url: str, probes: int, interval: float = 0.5) -> list[float]:
    """``probes`` timed GET /health, ``interval`` s apart: each one's latency in seconds, or inf when it
    did not answer 200 within PROBE_DEADLINE_S."""
    latencies = []
    for _ in range(probes):
        started = time.monotonic()
        try:
            answered = http_get(f"{url}/health", timeout=PROBE_DEADLINE_S)[0] == 200
        except OSError:
            answered = False
        elapsed = time.monotonic() - started
        latencies.append(elapsed if answered and elapsed < PROBE_DEADLINE_S else math.inf)
        time.sleep(interval)  # spacing the probes over the attack, not waiting for a condition
    return latencies


def report(attack: str, latencies: list[float]) -> None:
    shown = ", ".join("timeout" if math.isinf(x) else f"{x * 1000:.0f} ms" for x in latencies)
    print(f"\n{attack}: /health latency max {max(latencies) * 1000:.0f} ms over {len(latencies)} probes: {shown}")


def slow_socket(host: str, port: int, rcvbuf: int = 4096) -> socket.socket:
    """A client socket with a small receive buffer (set before connecting, so the window stays small)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5)
    sock.connect((host, port))
    return sock


def test_pipelined_scrapes_never_read_do_not_wedge_the_listener(big_plane: tuple[PlaneMetrics, MetricsServer]) -> None:
    """Connections that pipeline 50 GET /metrics each (5 MB answers) and never read, 16 at once and then one
    more every 0.1 s: /health answers every probe within 1 s, and a normal scrape still succeeds."""
    _, server = big_plane
    attackers: list[socket.socket] = []
    stop = threading.Event()

    def attack() -> None:
        for i in range(80):
            if i >= 16 and stop.wait(0.1):
                return
            with contextlib.suppress(OSError):
                sock = slow_socket(server.address, server.port)
                attackers.append(sock)
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 50)

    attacking = threading.Thread(target=attack, daemon=True)
    attacking.start()
    try:
        latencies = probe_health(server.url, probes=12)
        report("pipelined unread scrapes", latencies)
        assert max(latencies) < PROBE_DEADLINE_S, latencies
        stop.set()
        attacking.join(30)
        body = wait_for("a scrape to succeed", lambda: scrape_body(server), timeout=10)
        assert b"data_ticks_received_total" in body
    finally:
        stop.set()
        attacking.join(30)
        for sock in attackers:
            sock.close()


class Trickler:
    """``count`` connections each sending one byte of a never-ending request header every ``every`` s,
    reconnecting when the server closes one; stops after ``duration`` s."""

    def __init__(self, host: str, port: int, count: int, every: float, duration: float) -> None:
        self.host, self.port, self.every = host, port, every
        self.deadline = time.monotonic() + duration
        self.socks: list[socket.socket | None] = [self._open() for _ in range(count)]
        self.reconnects = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _open(self) -> socket.socket | None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=2)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
            return sock
        except OSError:
            return None

    def _run(self) -> None:
        while time.monotonic() < self.deadline:
            for i, sock in enumerate(self.socks):
                try:
                    if sock is None:
                        raise OSError("not connected")
                    sock.send(b"a")
                except OSError:
                    if sock is not None:
                        sock.close()
                    self.socks[i] = self._open()
                    self.reconnects += 1
            time.sleep(self.every)

    def stop(self) -> None:
        self.deadline = 0.0
        self.thread.join(30)
        for sock in self.socks:
            if sock is not None:
                sock.close()


def test_trickled_headers_on_every_connection_slot_do_not_block_health() -> None:
    """500 connections (the connection cap) each sending one header byte every 3 s, with the default 10 s
    idle timeout: /health answers every probe within 1 s."""
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=("prometheus",)))
    with serve_metrics(metrics, port=0) as server:
        trickler = Trickler(server.address, server.port, count=500, every=3.0, duration=40)
        try:
            latencies = probe_health(server.url, probes=16)
        finally:
            trickler.stop()
        report("trickled headers", latencies)
        assert max(latencies) < PROBE_DEADLINE_S, latencies


def test_a_thousand_connections_under_a_low_open_file_limit_do_not_block_health() -> None:
    """With 64 descriptors (a cap of 32 connections), 1,000 connections opened at once, three times over:
    /health answers every probe within 1 s, and the server exits cleanly."""
    from helpers import free_port

    port = free_port()
    proc = _serve_with_fd_limit(64, port)
    held: list[socket.socket] = []
    latencies: list[float] = []
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for("the server to start", lambda: http_get(f"{url}/health", timeout=1)[0] == 200)
        for _ in range(3):
            for sock in held:
                sock.close()
            held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(1000)]
            latencies += probe_health(url, probes=3, interval=0.2)
        report("1,000 connections, 64 descriptors", latencies)
        assert max(latencies) < PROBE_DEADLINE_S, latencies
        assert proc.poll() is None
    finally:
        for sock in held:
            sock.close()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()[-2000:]


def test_slow_gzip_readers_do_not_block_health(big_plane: tuple[PlaneMetrics, MetricsServer]) -> None:
    """600 connections asking for gzip /metrics and reading one byte a second: /health answers every probe
    within 1 s, and a normal scrape still succeeds."""
    _, server = big_plane
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n"
    readers: list[socket.socket] = []
    stop = threading.Event()

    def read_slowly() -> None:
        while not stop.wait(1.0):
            for sock in readers:
                with contextlib.suppress(OSError):
                    sock.recv(1, socket.MSG_DONTWAIT)

    reading = threading.Thread(target=read_slowly, daemon=True)
    try:
        for _ in range(600):
            sock = slow_socket(server.address, server.port)
            sock.sendall(request)
            readers.append(sock)
        reading.start()
        latencies = probe_health(server.url, probes=8)
        report("slow gzip readers", latencies)
        assert max(latencies) < PROBE_DEADLINE_S, latencies
        body = wait_for("a scrape to succeed", lambda: scrape_body(server), timeout=10)
        assert b"data_ticks_received_total" in body
    finally:
        stop.set()
        if reading.is_alive():
            reading.join(10)
        for sock in readers:
            sock.close()


def test_a_non_utf8_byte_in_the_resource_environment_leaves_metrics_and_health_in_agreement() -> None:
    """A plane server started with a byte that is not UTF-8 in OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES:
    both are warned about and ignored, /metrics answers 200 with target_info, and /health says ok with no render
    failure."""
    from helpers import free_port

    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRADING_TELEMETRY_"))},
        "OTEL_SERVICE_NAME": os.fsdecode(b"desk\xe9"),
        "OTEL_RESOURCE_ATTRIBUTES": os.fsdecode(b"service.namespace=desk1,owner=caf\xe9"),
    }
    code = f"import sys\nfrom trading_telemetry.metrics_server import main\nsys.exit(main(['data_plane', '{port}']))\n"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for("the server to start", lambda: http_get(f"{url}/health", timeout=1)[0] == 200)
        status, _, body = http_get(f"{url}/metrics")
        assert status == 200, body[:500]
        assert b'target_info{service_instance_id="' in body
        assert b'service_name="data_plane"' in body
        health = json.loads(http_get(f"{url}/health")[2])
        assert health["status"] == "ok"
        assert health["exposition"]["render_failures"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    log = out.decode("utf-8")
    assert "OTEL_SERVICE_NAME='desk\\udce9' is invalid" in log
    assert "OTEL_RESOURCE_ATTRIBUTES='service.namespace=desk1,owner=caf\\udce9' is invalid" in log
