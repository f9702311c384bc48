"""A plane's /metrics server that cannot listen where it is told says which plane, where,
which setting gives the host, and what to do, instead of a bare socket error."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from helpers import STRICT_PROMETHEUS, http_get
from trading_telemetry import ServerAddressError, TradingTelemetryError, init_metrics_exporter, serve_metrics


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A free loopback port, then bound and listened on by this test's own socket."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_taken_port_names_the_plane_the_address_the_variable_and_the_fix(taken_port: int) -> None:
    """The error names order_plane, 127.0.0.1:port, TRADING_TELEMETRY_BIND_ADDRESS, another port and port 0."""
    metrics = init_metrics_exporter("order_plane", config=STRICT_PROMETHEUS)
    before = _open_descriptors()
    with pytest.raises(ServerAddressError) as raised:
        serve_metrics(metrics, port=taken_port)
    error = raised.value
    message = str(error)
    assert message.startswith(f"order_plane: cannot serve /metrics and /health on 127.0.0.1:{taken_port} ")
    assert "(host from TRADING_TELEMETRY_BIND_ADDRESS)" in message
    assert "the port is already in use" in message
    assert "serve this plane on another port" in message
    assert "port 0 takes any free port" in message
    assert "Errno" not in message
    assert (error.plane, error.host, error.port, error.errno) == ("order_plane", "127.0.0.1", taken_port, 98)
    assert isinstance(error, OSError)
    assert isinstance(error, TradingTelemetryError)
    assert error.errno == errno.EADDRINUSE
    assert _open_descriptors() == before, "the failed start left a socket or its trigger pipe open"


def test_a_host_given_in_code_is_named_as_the_addr_argument(taken_port: int) -> None:
    """With addr= given, the message points at the argument, not the environment variable."""
    metrics = init_metrics_exporter("data_plane", config=STRICT_PROMETHEUS)
    with pytest.raises(ServerAddressError, match=r"\(host from the addr argument\): the port is already in use"):
        serve_metrics(metrics, port=taken_port, addr="127.0.0.1")


def test_the_port_serves_once_freed() -> None:
    """After the refusal, the same server starts on the same port once the other listener has gone."""
    metrics = init_metrics_exporter("data_plane", config=STRICT_PROMETHEUS)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ServerAddressError):
            serve_metrics(metrics, port=port)
    with serve_metrics(metrics, port=port) as server:
        assert http_get(f"{server.url}/health")[0] == 200


@pytest.mark.parametrize("port", [-1, 65536, 70000])
def test_a_port_out_of_range_is_refused_not_wrapped(port: int) -> None:
    """A port outside 0-65535 is refused naming it (waitress alone would listen on 70000 - 65536)."""
    metrics = init_metrics_exporter("strategy_plane", config=STRICT_PROMETHEUS)
    with pytest.raises(ServerAddressError, match=rf"127\.0\.0\.1:{port} .*not a whole number from 0 to 65535"):
        serve_metrics(metrics, port=port)


@pytest.mark.integration
def test_serve_on_a_taken_port_prints_the_message_without_a_traceback(taken_port: int) -> None:
    """`trading-telemetry serve` on a taken port exits 2 with the one-line message on stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRADING_TELEMETRY_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "trading_telemetry.cli", "serve", "data_plane", "--port", str(taken_port)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(
        f"trading-telemetry: data_plane: cannot serve /metrics and /health on 127.0.0.1:{taken_port} "
    )
