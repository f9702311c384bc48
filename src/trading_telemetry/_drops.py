"""What happens to a bad measurement: raised (strict mode) or dropped and counted."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from trading_telemetry.errors import MeasurementError

__all__ = ["DROPPED_METRIC", "DropPolicy"]

logger = logging.getLogger("trading_telemetry")

DROPPED_METRIC = "trading_telemetry_dropped_measurements"
"""Self-metric counter (exposed as ``..._total``) with labels ``metric``, ``reason``, ``service``."""

LOG_INTERVAL_S = 60.0


class DropPolicy:
    """Strict mode raises the error; production mode counts it in the self-metric and
    logs it at most once per (metric, reason) per minute. Never raises in production
    mode, whatever the error or the logging set-up does."""

    def __init__(self, *, strict: bool, service: str, counter: Any, clock: Any = time.monotonic) -> None:
        self.strict = strict
        self._service = service
        self._counter = counter
        self._clock = clock
        self._last_logged: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self.dropped = 0

    def reject(self, error: MeasurementError) -> None:
        if self.strict:
            raise error
        with contextlib.suppress(Exception):  # the recording path must never raise
            self._drop(error)

    def _drop(self, error: MeasurementError) -> None:
        self._counter.add(1, {"metric": error.metric[:100], "reason": error.reason, "service": self._service})
        now = self._clock()
        key = (error.metric, error.reason)
        with self._lock:
            self.dropped += 1
            last = self._last_logged.get(key)
            if last is not None and now - last < LOG_INTERVAL_S:
                return
            self._last_logged[key] = now
        logger.warning(
            "dropped measurement (%s): %s [further drops of this kind are counted in %s_total "
            "and logged at most once a minute]",
            error.reason,
            error,
            DROPPED_METRIC,
        )
