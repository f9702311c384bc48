"""Bounded shutdown against a Collector that accepts connections and never answers (a black
hole on a loopback port): reset(), interpreter exit, and SIGTERM to `serve` and `demo` all
finish within TRADING_TELEMETRY_SHUTDOWN_TIMEOUT, after attempting the last export once."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import wait_for
from trading_telemetry import TelemetryConfig, init_metrics_exporter, reset

pytestmark = pytest.mark.integration

SLACK_S = 3.0  # interpreter start-up and teardown on a loaded 2-core machine
BIN = Path(sys.executable).parent


class BlackHole:
    """A TCP server on a free loopback port that accepts every connection, reads nothing and
    answers nothing: the worst Collector there is."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._listener], [], [], 0.1)
            if ready:
                conn, _ = self._listener.accept()
                self.accepted.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self.accepted:
            conn.close()
        self._listener.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


def otlp_env(hole: BlackHole, protocol: str) -> dict[str, str]:
    return {
        **os.environ,
        "OTEL_METRICS_EXPORTER": "prometheus,otlp",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_ENDPOINT": hole.url,
        "OTEL_METRIC_EXPORT_INTERVAL": "600000",  # only the last export, at shutdown
        "TRADING_TELEMETRY_SHUTDOWN_TIMEOUT": "3000",
        "PYTHONUNBUFFERED": "1",
    }


def test_reset_is_bounded_and_attempts_the_last_export(black_hole: BlackHole) -> None:
    """reset() with three planes pushing to a black hole returns within the bound, having connected to it."""
    config = TelemetryConfig(
        metrics_exporters=("otlp",),
        traces_exporters=("otlp",),
        otlp_endpoint=black_hole.url,
        metric_export_interval_ms=600_000,
        shutdown_timeout_ms=2000,
    )
    for plane in ("data_plane", "order_plane", "strategy_plane"):
        init_metrics_exporter(plane, config=config)
    init_metrics_exporter("data_plane").inc("ticks_received", source="ibkr_rt", symbol="SPY")
    returned: list[bool] = []
    caller = threading.Thread(target=lambda: returned.append(reset()), daemon=True)
    caller.start()
    wait_for("reset() to return within the 2 s shutdown timeout (1 s of slack)", lambda: returned, timeout=2.0 + 1.0)
    assert returned == [False]  # the black hole never answered: the exports were abandoned, not waited out
    wait_for("the last export to have reached the black hole", lambda: len(black_hole.accepted) >= 1)


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_interpreter_exit_is_bounded(black_hole: BlackHole, protocol: str) -> None:
    """A program that records and returns exits within the bound even though its Collector never answers."""
    code = (
        "from trading_telemetry import init_metrics_exporter, traced\n"
        "m = init_metrics_exporter('order_plane')\n"
        "m.inc('orders_received', strategy='OFI', symbol='SPY', direction='BUY', order_type='LIMIT')\n"
        "traced(plane='order_plane')(lambda: None)()\n"
        "print('recorded', flush=True)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], env=otlp_env(black_hole, protocol), stdout=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        try:
            assert proc.stdout.readline() == b"recorded\n"
            wait_for("the interpreter to exit within the shutdown timeout", exited(proc), timeout=3.0 + SLACK_S)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0
    assert len(black_hole.accepted) >= 1


def exited(proc: subprocess.Popen[bytes]) -> Callable[[], bool]:
    return lambda: proc.poll() is not None


def _started(proc: subprocess.Popen[bytes], lines: int) -> list[bytes]:
    assert proc.stdout is not None
    got = [proc.stdout.readline() for _ in range(lines)]
    assert all(b"/metrics" in line for line in got), got
    return got


@pytest.mark.parametrize(
    ("argv", "lines", "exports"),
    [
        (["serve", "data_plane", "--port", "0"], 1, False),  # a standalone plane has recorded nothing to export
        (["demo", "--base-port", "0", "--rate", "2000"], 3, True),
    ],
    ids=["serve", "demo"],
)
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_sigterm_is_bounded(black_hole: BlackHole, protocol: str, argv: list[str], lines: int, exports: bool) -> None:
    """SIGTERM to `serve` or `demo` exits 0 within the bound, having tried the last export once."""
    with subprocess.Popen(
        [str(BIN / "trading-telemetry"), *argv], env=otlp_env(black_hole, protocol), stdout=subprocess.PIPE
    ) as proc:
        try:
            _started(proc, lines)
            proc.send_signal(signal.SIGTERM)
            wait_for("the process to exit within the shutdown timeout", exited(proc), timeout=3.0 + SLACK_S)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0
    assert len(black_hole.accepted) >= (1 if exports else 0)


def test_a_signal_during_start_up_stops_the_server_cleanly() -> None:
    """SIGTERM arriving while the server starts (here: just before it binds) ends it cleanly with 0,
    because the handlers are in place before anything starts."""
    code = (
        "import os, signal, sys\n"
        "import trading_telemetry.metrics_server as server\n"
        "real = server.serve_metrics\n"
        "def starting(*args, **kwargs):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(*args, **kwargs)\n"
        "server.serve_metrics = starting\n"
        "sys.exit(server.main(['data_plane', '0']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def test_the_demo_honours_duration_when_it_cannot_keep_up(tmp_path: Path) -> None:
    """At a rate this machine cannot reach, the demo still stops at --duration and says what rate it managed."""
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with (
        out.open("wb") as stdout,
        err.open("wb") as stderr,
        subprocess.Popen(
            [str(BIN / "trading-telemetry"), "demo", "--base-port", "0", "--duration", "3", "--rate", "10000000"],
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, "OTEL_METRICS_EXPORTER": "prometheus"},
        ) as proc,
    ):
        try:
            # 3 s of session, 5 s of start-up and shutdown: the 30 million ticks asked for would take far longer.
            wait_for("the demo to stop at --duration", exited(proc), timeout=3.0 + 5.0 + SLACK_S)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err.read_bytes()[-2000:].decode()
    assert b"could not keep up with --rate 10000000: ran " in out.read_bytes()
