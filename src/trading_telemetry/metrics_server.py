"""The per-plane HTTP endpoint: ``GET /metrics`` and ``GET /health``.

The server is waitress, in its own thread: one event loop reads requests and writes
responses without a thread per connection, and a small fixed pool of threads runs the
handlers. So a scrape never waits for, or holds up, the trading program's event loop,
and a flood of connections costs file descriptors up to a cap, never threads:

- at most ``TRADING_TELEMETRY_HTTP_MAX_CONNECTIONS`` connections are held (capped at
  half the open-file limit); at the cap a new connection makes room (``_listener``);
- one request per connection (``Connection: close``), no pipelining backlog; a handler
  hands its finished body to the event loop and returns, never waiting for its client;
- a connection idle for ``TRADING_TELEMETRY_HTTP_IDLE_TIMEOUT`` is closed, and so is one
  whose request has not arrived whole within ``TRADING_TELEMETRY_HTTP_HEADER_TIMEOUT``
  of its first byte, or whose answer its client has not taken within the idle timeout;
- request headers over 16 KiB and bodies over 64 KiB are refused;
- concurrent scrapes share one render (and its gzip), and a scrape whose client has
  gone is not rendered; ``/health`` goes first in the handlers' queue;
- if rendering one metric family (``target_info`` included) fails, the others are
  served and ``/health`` says so.

``/metrics`` is the plane's series (``_exposition``) in the format the scraper's ``Accept``
prefers by its q-values among the three served: Prometheus' protobuf exposition (the one
carrying native histograms), OpenMetrics 1.0.0 (with exemplars) and the text format 0.0.4,
which is also the answer to no ``Accept`` or one naming none of them; gzip when accepted.

Run one plane on its own::

    python -m trading_telemetry.metrics_server data_plane 8000
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import gzip
import io
import json
import math
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from trading_telemetry._globals import STATE
from trading_telemetry.errors import ServerAddressError, TradingTelemetryError

if TYPE_CHECKING:  # waitress and prometheus_client are imported when a server starts
    from trading_telemetry._exposition import PlaneExposition
    from trading_telemetry._listener import ListenerServer
    from trading_telemetry._recorder import PlaneMetrics

DEFAULT_PORTS = {"data_plane": 8000, "order_plane": 8001, "strategy_plane": 8002}
HTTP_THREADS = 16
"""Handler threads per server. At most HTTP_THREADS - 2 of them serve /metrics at once
(one renders, the others wait for its result); further scrapes are answered 503 at once,
so /health always finds a thread."""
MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024
OUTBUF_HIGH_WATERMARK = 64 * 1024
"""waitress blocks a handler writing to a connection with more than this unsent. One
request per connection, one write of the body: the buffer never holds more than the
status line and headers before that write, so no handler ever waits."""

__all__ = ["MetricsServer", "main", "serve_metrics", "start_metrics_server"]

_StartResponse = Callable[..., Any]


def connection_limit(configured: int) -> int:
    """``configured``, capped at half the process's open-file limit: the trading
    program's own sockets and files keep the other half."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return configured
    return max(8, min(configured, soft // 2))


@dataclass
class _Rendered:
    finished: float  # monotonic
    body: bytes
    gzipped: bytes | None = None


class Exposition:
    """The plane's /metrics body, rendered once for all the scrapes that wait for it.

    A scrape whose request was complete before the last render finished takes that
    render's result (gzipped once, when first asked for); a later one renders anew. At
    most ``max_scrapes`` scrapes wait or render at once; further ones are told to come
    back (``busy``)."""

    def __init__(self, plane: PlaneExposition, max_scrapes: int = HTTP_THREADS - 2) -> None:
        self._plane = plane
        self._lock = threading.Lock()
        self._scrapes = threading.BoundedSemaphore(max_scrapes)
        self._last: dict[str, _Rendered] = {}  # format -> its last render
        self.renders = 0
        self.busy = 0
        self.skipped_gone = 0
        self.last_render_failed = False

    def body(self, form: str, arrived: float, gone: Callable[[], bool], gzipped: bool = False) -> bytes | str:
        """The body in ``form`` (``_exposition.FORMATS``) for a scrape whose request was
        complete at ``arrived`` (monotonic), gzip-compressed if ``gzipped``; ``"gone"`` if
        the client has gone, ``"busy"`` if as many scrapes as allowed are already under way."""
        if not self._scrapes.acquire(blocking=False):
            self.busy += 1
            return "busy"
        try:
            with self._lock:
                done = self._last.get(form)
                if done is None or done.finished < arrived:
                    if gone():
                        self.skipped_gone += 1
                        return "gone"
                    failures = self._plane.failures
                    output = self._plane.render(form)
                    self.last_render_failed = self._plane.failures != failures
                    done = self._last[form] = _Rendered(time.monotonic(), output)
                    self.renders += 1
                if not gzipped:
                    return done.body
                if done.gzipped is None:
                    done.gzipped = gzip.compress(done.body, compresslevel=6)
                return done.gzipped
        finally:
            self._scrapes.release()

    def state(self) -> dict[str, Any]:
        return {
            "renders": self.renders,
            "refused_busy": self.busy,
            "skipped_client_gone": self.skipped_gone,
            "render_failures": self._plane.failures,
            "last_render_failure": self._plane.last_failure,
        }


class MetricsServer:
    """Serves one plane's ``/metrics`` and ``/health`` from a background thread.

    Use :func:`serve_metrics` (sync) or :func:`start_metrics_server` (async) to start
    one; ``close()`` (or leaving a ``with`` block) stops it.
    """

    def __init__(self, metrics: PlaneMetrics, port: int = 8000, addr: str | None = None) -> None:
        self.metrics = metrics
        config = metrics.sdk.config
        self.exposition = Exposition(metrics.exposition) if metrics.exposition is not None else None
        address = config.bind_address if addr is None else addr
        self.connection_limit = connection_limit(config.http_max_connections)
        self._map: dict[int, Any] = {}
        given = addr is not None
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            # Checked here: waitress would listen on 70000 - 65536.
            raise ServerAddressError(
                f"{_where(metrics.plane.value, address, port, given)}: the port is not a whole number from 0 to "
                f"65535; {_PORT_ELSEWHERE}",
                plane=metrics.plane.value, host=address, port=port, errno=None,
            )  # fmt: skip
        try:
            self._start(metrics, port, address)
        except (OSError, ValueError) as error:
            problem = _address_error(metrics.plane.value, address, port, error, given=given)
            if problem is None:
                raise
            raise problem from error
        self.address = address
        self.port = int(self._server.effective_port)
        self._thread = threading.Thread(
            target=self._server.run, name=f"trading-telemetry-{metrics.plane.value}-http", daemon=True
        )
        self._thread.start()
        self._closed = False
        STATE.servers.add(self)

    def _start(self, metrics: PlaneMetrics, port: int, address: str) -> None:
        """Listen on ``address:port`` (waitress's server, not yet running)."""
        from prometheus_client.exposition import gzip_accepted
        from waitress.adjustments import Adjustments

        from trading_telemetry._listener import Dispatcher, ListenerServer, ListenerStats, close_all

        self._gzip_accepted = gzip_accepted
        config = metrics.sdk.config
        adjustments = Adjustments(
            host=address,
            port=port,
            threads=HTTP_THREADS,
            connection_limit=self.connection_limit,
            channel_timeout=max(1, math.ceil(config.http_idle_timeout_ms / 1000)),
            cleanup_interval=1,  # the time limits below are checked every second
            channel_request_lookahead=1,  # lets a handler see that its client has gone
            max_request_header_size=MAX_HEADER_BYTES,
            max_request_body_size=MAX_BODY_BYTES,
            outbuf_high_watermark=OUTBUF_HIGH_WATERMARK,
            asyncore_use_poll=True,  # select() cannot watch descriptors past 1024
            expose_tracebacks=False,
            log_socket_errors=False,  # a client's reset is the client's business, not a log line each
            ident="trading-telemetry",
        )
        dispatcher = Dispatcher(ListenerStats())
        dispatcher.set_thread_count(HTTP_THREADS)
        try:
            self._server: ListenerServer = ListenerServer(
                self._app,
                self._map,
                adjustments,
                dispatcher,
                header_timeout=config.http_header_timeout_ms / 1000,
                send_timeout=config.http_idle_timeout_ms / 1000,
            )
        except BaseException:
            close_all(self._map)  # what waitress opened before it failed: its trigger pipe, the socket
            dispatcher.shutdown(timeout=1)
            raise

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"

    def _app(self, environ: dict[str, Any], start_response: _StartResponse) -> Iterable[bytes]:
        arrived = environ.get("trading_telemetry.received") or time.monotonic()
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _reply(start_response, "405 Method Not Allowed", b"only GET\n", extra=[("Allow", "GET, HEAD")])
        if path == "/metrics":
            if self.exposition is None:
                return _reply(
                    start_response, "404 Not Found", b"the prometheus exporter is off (OTEL_METRICS_EXPORTER)\n"
                )
            gone = environ.get("waitress.client_disconnected") or (lambda: False)
            form, content_type = choose_format(environ.get("HTTP_ACCEPT", ""))
            gzipped = self._gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", ""))
            rendered = self.exposition.body(form, arrived, gone, gzipped)
            if rendered == "gone":  # nobody to send it to
                return _reply(start_response, "499 Client Closed Request", b"")
            if isinstance(rendered, str):  # busy
                return _reply(
                    start_response,
                    "503 Service Unavailable",
                    b"too many concurrent scrapes; retry\n",
                    extra=[("Retry-After", "1")],
                )
            headers = [("Content-Type", content_type), ("Content-Length", str(len(rendered)))]
            if gzipped:
                headers.append(("Content-Encoding", "gzip"))
            start_response("200 OK", headers)
            if method == "HEAD":
                return []
            # One write of the shared body, not copied: the handler returns at once, and
            # the event loop sends it as the client reads.
            return environ["wsgi.file_wrapper"](io.BytesIO(rendered))  # type: ignore[no-any-return]
        if path == "/health":
            health = self.health()
            status = "503 Service Unavailable" if health["status"] == "stopped" else "200 OK"
            return _reply(start_response, status, json.dumps(health).encode(), "application/json")
        if path == "/":
            return _reply(start_response, "200 OK", b"trading-telemetry: /metrics /health\n")
        return _reply(start_response, "404 Not Found", b"not found: try /metrics or /health\n")

    def health(self) -> dict[str, Any]:
        """The plane's health, with this server's rendering state: a render that had to
        leave families out makes an ``ok`` plane ``degraded``."""
        health = self.metrics.health()
        health["listener"] = self._server.state()
        if self.exposition is not None:
            health["exposition"] = self.exposition.state()
            if self.exposition.last_render_failed and health["status"] == "ok":
                health["status"] = "degraded"
        return health

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving and release the port (idempotent); waits at most ``timeout`` s."""
        if self._closed:
            return
        self._closed = True
        STATE.servers.discard(self)
        deadline = time.monotonic() + timeout
        self._server.stop()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._server.task_dispatcher.shutdown(timeout=max(0, math.ceil(deadline - time.monotonic())))

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


PROTOBUF_TYPE = "application/vnd.google.protobuf"
PROTOBUF_PARAMS = {"proto": "io.prometheus.client.MetricFamily", "encoding": "delimited"}


def _media_ranges(accept: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """``accept``'s media ranges in order: (type, parameters but q, q)."""
    for entry in accept.split(","):
        media, *rest = entry.split(";")
        params: dict[str, str] = {}
        for param in rest:
            key, _, value = param.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 0.0  # an unreadable q: not acceptable
        if not 0 <= q <= 1:
            q = 0.0
        yield media.strip().lower(), params, q


def choose_format(accept: str) -> tuple[str, str]:
    """The exposition format (``_exposition.FORMATS``) and Content-Type answering a
    scrape's ``Accept``: the served format with the highest q (the first named of equal
    ones; a wildcard gives the text format); the text format 0.0.4 when none is named.
    The text formats' Content-Type is what prometheus_client gives for the same media range
    (its ``choose_encoder``), which also decides which OpenMetrics and text versions it
    can write: the others count as not named."""
    from prometheus_client.exposition import choose_encoder

    from trading_telemetry._exposition import OPENMETRICS, PROTOBUF, TEXT
    from trading_telemetry._protobuf import CONTENT_TYPE

    best: tuple[float, str, str] | None = None
    for media, params, q in _media_ranges(accept):
        if q <= 0:
            continue
        if media == PROTOBUF_TYPE:
            if all(params.get(k) == v for k, v in PROTOBUF_PARAMS.items()):
                choice = (q, PROTOBUF, CONTENT_TYPE)
            else:
                continue
        elif media in ("*/*", "text/*"):
            choice = (q, TEXT, choose_encoder("")[1])
        elif media in ("application/openmetrics-text", "text/plain"):
            version = f";version={params['version']}" if "version" in params else ""
            content_type = choose_encoder(f"{media}{version}")[1]
            form = OPENMETRICS if content_type.startswith("application/openmetrics-text") else TEXT
            if form == OPENMETRICS or media == "text/plain":
                choice = (q, form, content_type)
            else:
                continue  # an OpenMetrics version prometheus_client does not write
        else:
            continue
        if best is None or choice[0] > best[0]:
            best = choice
    if best is None:
        return TEXT, choose_encoder("")[1]
    return best[1], best[2]


_PORT_ELSEWHERE = (
    "serve this plane on another port: the port argument of serve_metrics() or start_metrics_server(), --port of "
    "`trading-telemetry serve`, --base-port of `trading-telemetry demo`; port 0 takes any free port"
)


def _source(given: bool) -> str:
    """Where the host came from: ``addr=`` in code, or the environment."""
    return "the addr argument" if given else "TRADING_TELEMETRY_BIND_ADDRESS"


def _where(plane: str, host: str, port: int, given: bool) -> str:
    return f"{plane}: cannot serve /metrics and /health on {host}:{port} (host from {_source(given)})"


def _address_error(plane: str, host: str, port: int, error: BaseException, *, given: bool) -> ServerAddressError | None:
    """The ServerAddressError saying why ``plane``'s server cannot listen on ``host:port``
    and what to do, for the errors a wrong address or port gives; None for others.
    ``given``: the host was passed in code (``addr=``), not read from
    TRADING_TELEMETRY_BIND_ADDRESS."""
    source = _source(given)
    code = getattr(error, "errno", None) if isinstance(error, OSError) else None
    if code == errno.EADDRINUSE:
        problem = (
            f"the port is already in use, by another process or another server of this one (`ss -ltnp "
            f"'sport = :{port}'` shows which). Stop that one, or {_PORT_ELSEWHERE}"
        )
    elif code == errno.EADDRNOTAVAIL or (isinstance(error, ValueError) and "host/port" in str(error)):
        problem = (
            f"{host!r} is not an address of this machine. Set {source} to one of its addresses: 127.0.0.1 (this "
            "machine only) or 0.0.0.0 (every interface, as in a container)"
        )
    elif code == errno.EACCES:
        problem = f"port {port} needs privileges (ports below 1024). Use a port of 1024 or above: {_PORT_ELSEWHERE}"
    else:
        return None
    return ServerAddressError(
        f"{_where(plane, host, port, given)}: {problem}", plane=plane, host=host, port=port, errno=code
    )


def forget_inherited_servers() -> set[str]:
    """In a forked child: the parent's servers, whose threads did not follow, let go of
    their sockets here (the port stays the parent's alone), so that a parent that stops
    or restarts its server frees its port. Nothing takes a lock a parent's thread may
    have held at the fork. Returns the planes they served."""
    served: set[str] = set()
    running = STATE.servers
    if not running:
        return served
    from waitress import wasyncore
    from waitress.channel import HTTPChannel

    for server in list(running):
        served.add(server.metrics.plane.value)
        server._closed = True  # close() here would wait for the parent's threads
        for dispatcher in list(server._map.values()):
            with contextlib.suppress(Exception):
                if isinstance(dispatcher, HTTPChannel):
                    wasyncore.dispatcher.close(dispatcher)  # not handle_close: its lock may be held
                else:
                    dispatcher.close()
        server._map.clear()
    running.clear()
    return served


def _reply(
    start_response: _StartResponse,
    status: str,
    body: bytes,
    content_type: str = "text/plain",
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    headers = [("Content-Type", f"{content_type}; charset=utf-8"), ("Content-Length", str(len(body))), *(extra or [])]
    start_response(status, headers)
    return [body]


def serve_metrics(metrics: PlaneMetrics, port: int = 8000, addr: str | None = None) -> MetricsServer:
    """Start serving ``metrics`` on ``addr:port`` (port 0: any free port) and return
    at once. ``addr`` defaults to TRADING_TELEMETRY_BIND_ADDRESS (127.0.0.1).

    Example::

        server = serve_metrics(init_metrics_exporter("order_plane"), port=8001)
    """
    return MetricsServer(metrics, port, addr)


async def start_metrics_server(metrics: PlaneMetrics, port: int = 8000, addr: str | None = None) -> MetricsServer:
    """The original monitoring specification's ``server = await start_metrics_server(metrics, port=8000)``.

    The server runs in its own thread, not on the event loop: scrapes never wait for
    the trading coroutines, nor they for a scrape.
    """
    return serve_metrics(metrics, port, addr)


@contextlib.contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM, for the block (main thread only).

    Enter it before starting anything: a signal that arrives during start-up then
    stops the process cleanly instead of killing it half-started."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_server(plane: str, port: int, addr: str | None) -> int:
    """Serve one plane until SIGINT or SIGTERM; the body of ``serve`` and ``python -m``.
    Stopping takes at most TRADING_TELEMETRY_SHUTDOWN_TIMEOUT (plus closing the port)."""
    from trading_telemetry._state import init_metrics_exporter, reset

    with stop_signals() as stop:
        try:
            metrics = init_metrics_exporter(plane)
            with serve_metrics(metrics, port, addr) as server:
                print(f"{plane}: {server.url}/metrics {server.url}/health", flush=True)
                if metrics.multiprocess is not None:
                    print(
                        f"{plane}: serving the sum of what every process writing to {metrics.multiprocess.directory} "
                        "(TRADING_TELEMETRY_MULTIPROCESS_DIR) records",
                        flush=True,
                    )
                else:
                    print(
                        f"{plane}: serving the metrics this process records; a trading program serves its own planes "
                        "(serve_metrics) or pushes OTLP to a Collector, so a separate server shows only what it "
                        "records",
                        flush=True,
                    )
                while not stop.wait(0.5):
                    pass
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
