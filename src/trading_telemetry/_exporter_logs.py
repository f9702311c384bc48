"""The OpenTelemetry OTLP exporters' own log lines, throttled.

While the Collector is down the SDK's exporters log every retry ("Transient error ...
retrying in 1.02s") and every failed export: three planes pushing once a second log
some 37 lines in 25 s. A plane's ``/health`` already says the exporter is failing and
since when, so once a minute per kind of line is enough. The filter sits on the
exporters' loggers (those of opentelemetry-exporter-otlp-proto-http and -grpc 1.44 and
1.45); the first line of a kind says that its repeats are held back, and the next one
let through says how many were.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from trading_telemetry._globals import STATE

__all__ = ["EXPORTER_LOGGERS", "INTERVAL_S", "ThrottleFilter", "throttle", "unthrottle"]

EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",  # OTLP/HTTP metrics (1.45: its client logs here)
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",  # OTLP/HTTP spans
    "opentelemetry.exporter.otlp.proto.grpc.exporter",  # OTLP/gRPC, both signals
    "opentelemetry.exporter.otlp.common.http",  # 1.45's HTTP client, when given no logger of its own
)
INTERVAL_S = 60.0
_KINDS_KEPT = 256  # kinds of line remembered (format strings: a handful in practice)


class ThrottleFilter(logging.Filter):
    """Lets one record per (logger, level, message format) through per ``interval``
    seconds and counts the others; records below WARNING always pass. Thread-safe."""

    def __init__(self, interval: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[tuple[str, int, str], float] = {}
        self._held: dict[tuple[str, int, str], int] = {}
        self.held_back = 0
        """Records not let through so far."""

    def renew_lock(self) -> None:
        """In a forked child: a new lock (a parent's thread may have held this one at the fork)."""
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        kind = (record.name, record.levelno, str(record.msg)[:200])
        now = self._clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self._interval:
                self._held[kind] = self._held.get(kind, 0) + 1
                self.held_back += 1
                return False
            self._last.pop(kind, None)
            if len(self._last) >= _KINDS_KEPT:  # the oldest kind goes
                oldest = next(iter(self._last))
                del self._last[oldest]
                self._held.pop(oldest, None)
            self._last[kind] = now
            held = self._held.pop(kind, 0)
        every = f"{self._interval:.0f} s"
        if held:
            note = f"{held} more like this in the last {every} not logged"
        elif last is None:
            note = f"repeats are logged at most once every {every}; a plane's /health shows its exporters"
        else:
            return True
        # A record that does not format is left unchanged, for logging to report.
        with contextlib.suppress(Exception):
            record.msg, record.args = f"{record.getMessage()} [{note}]", None
        return True


def throttle() -> None:
    """Put the filter on the exporters' loggers (once; a fresh one after ``reset()``).
    The filter in place is ``STATE.exporter_log_filter``."""
    with STATE.exporter_log_lock:
        if STATE.exporter_log_filter is None:
            STATE.exporter_log_filter = ThrottleFilter()
            for name in EXPORTER_LOGGERS:
                logging.getLogger(name).addFilter(STATE.exporter_log_filter)


def unthrottle(throttle: ThrottleFilter | None) -> None:
    """Take ``throttle`` off the exporters' loggers again (``reset()``, which has already
    forgotten it: a plane set up since has a filter of its own)."""
    if throttle is None:
        return
    with STATE.exporter_log_lock:
        for name in EXPORTER_LOGGERS:
            logging.getLogger(name).removeFilter(throttle)
