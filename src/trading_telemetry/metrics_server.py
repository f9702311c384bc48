"""The per-plane HTTP endpoint: ``GET /metrics`` and ``GET /health``.

``/metrics`` is prometheus_client's own WSGI exposition (text format, or OpenMetrics when
the scraper asks for it, gzip when accepted). The server runs in its own thread, so a
scrape never waits for, or holds up, the trading program's event loop.

Run one plane on its own::

    python -m trading_telemetry.metrics_server data_plane 8000
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from trading_telemetry._recorder import PlaneMetrics
from trading_telemetry.errors import TradingTelemetryError

DEFAULT_PORTS = {"data_plane": 8000, "order_plane": 8001, "strategy_plane": 8002}

__all__ = ["MetricsServer", "main", "serve_metrics", "start_metrics_server"]

_StartResponse = Callable[..., Any]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """One thread per request, so a slow scraper does not hold up /health."""

    daemon_threads = True


class _ThreadingServerV6(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Scrapes every few seconds would flood the trading program's log."""


class MetricsServer:
    """Serves one plane's ``/metrics`` and ``/health`` from a background thread.

    Use :func:`serve_metrics` (sync) or :func:`start_metrics_server` (async) to start
    one; ``close()`` (or leaving a ``with`` block) stops it.
    """

    def __init__(self, metrics: PlaneMetrics, port: int = 8000, addr: str | None = None) -> None:
        self.metrics = metrics
        registry = metrics.sdk.registry
        self._metrics_app = make_wsgi_app(registry) if registry is not None else None
        address = metrics.sdk.config.bind_address if addr is None else addr
        server_class = _ThreadingServerV6 if ":" in address else _ThreadingServer
        self._httpd = make_server(address, port, self._app, server_class=server_class, handler_class=_QuietHandler)
        self.address = address
        self.port: int = self._httpd.server_port
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"trading-telemetry-{metrics.plane.value}-http",
            daemon=True,
        )
        self._thread.start()
        self._closed = False

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"

    def _app(self, environ: dict[str, Any], start_response: _StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            if self._metrics_app is None:
                return _reply(
                    start_response, "404 Not Found", b"the prometheus exporter is off (OTEL_METRICS_EXPORTER)\n"
                )
            return self._metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path == "/health":
            health = self.metrics.health()
            status = "503 Service Unavailable" if health["status"] == "stopped" else "200 OK"
            return _reply(start_response, status, json.dumps(health).encode(), "application/json")
        if path == "/":
            return _reply(start_response, "200 OK", b"trading-telemetry: /metrics /health\n")
        return _reply(start_response, "404 Not Found", b"not found: try /metrics or /health\n")

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> MetricsServer:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<MetricsServer {self.metrics.plane.value} {self.url}>"


def _reply(start_response: _StartResponse, status: str, body: bytes, content_type: str = "text/plain") -> list[bytes]:
    start_response(status, [("Content-Type", f"{content_type}; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


def serve_metrics(metrics: PlaneMetrics, port: int = 8000, addr: str | None = None) -> MetricsServer:
    """Start serving ``metrics`` on ``addr:port`` (port 0: any free port) and return
    at once. ``addr`` defaults to TRADING_TELEMETRY_BIND_ADDRESS (127.0.0.1).

    Example::

        server = serve_metrics(init_metrics_exporter("order_plane"), port=8001)
    """
    return MetricsServer(metrics, port, addr)


async def start_metrics_server(metrics: PlaneMetrics, port: int = 8000, addr: str | None = None) -> MetricsServer:
    """The seed README's ``server = await start_metrics_server(metrics, port=8000)``.

    The server runs in its own thread, not on the event loop: scrapes never wait for
    the trading coroutines, nor they for a scrape.
    """
    return serve_metrics(metrics, port, addr)


def wait_for_stop_signal() -> None:
    """Block until SIGINT or SIGTERM arrives (main thread only)."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_server(plane: str, port: int, addr: str | None) -> int:
    """Serve one plane until SIGINT or SIGTERM; the body of ``serve`` and ``python -m``."""
    from trading_telemetry._state import init_metrics_exporter, reset

    try:
        metrics = init_metrics_exporter(plane)
        with serve_metrics(metrics, port, addr) as server:
            print(f"{plane}: {server.url}/metrics {server.url}/health", flush=True)
            wait_for_stop_signal()
    except (TradingTelemetryError, OSError) as error:
        print(f"trading-telemetry: {error}", file=sys.stderr)
        return 2
    finally:
        reset()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trading_telemetry.metrics_server", description=__doc__)
    parser.add_argument("plane", help="data_plane, order_plane or strategy_plane")
    parser.add_argument("port", type=int, nargs="?", default=None, help="default: 8000, 8001, 8002 by plane")
    parser.add_argument("--addr", default=None, help="bind address (default TRADING_TELEMETRY_BIND_ADDRESS)")
    args = parser.parse_args(argv)
    port = args.port if args.port is not None else DEFAULT_PORTS.get(args.plane, 8000)
    return run_server(args.plane, port, args.addr)


if __name__ == "__main__":
    sys.exit(main())
