"""What happens to a bad measurement: raised (strict mode) or dropped and counted."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable

from opentelemetry.metrics import CallbackOptions, Observation

from trading_telemetry._safe import safe_str, type_name
from trading_telemetry.errors import InvalidInputError, MeasurementError

__all__ = ["DROPPED_HELP", "DROPPED_METRIC", "UNKNOWN_METRIC", "DropPolicy"]

logger = logging.getLogger("trading_telemetry")

DROPPED_METRIC = "trading_telemetry_dropped_measurements"
"""Self-metric counter (exposed as ``..._total``) with labels ``metric``, ``reason``, ``service``."""

DROPPED_HELP = "Measurements dropped as bad input, by metric and reason"

UNKNOWN_METRIC = "<unknown>"
"""The ``metric`` label of drops whose key is not in the catalog: one series for all of
them, so bad keys cannot grow the self-metric."""

LOG_INTERVAL_S = 60.0


class DropPolicy:
    """Strict mode raises the error; production mode counts it in the self-metric and
    logs it at most once per (metric, reason) per minute. Never raises in production
    mode, whatever the error or the logging set-up does.

    The counts live here, keyed by (catalog key or UNKNOWN_METRIC, reason): a bounded
    set, read by the self-metric's observable counter. Counting a drop costs a lock and
    an add, like recording."""

    def __init__(
        self, *, strict: bool, service: str, keys: Collection[str], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.strict = strict
        self.service = service
        self._keys = frozenset(keys)
        self._clock = clock
        self._counts: dict[tuple[str, str], int] = {}
        self._last_logged: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self.dropped = 0

    def reject(self, error: MeasurementError) -> None:
        if self.strict:
            raise error
        try:  # noqa: SIM105 - a try costs nothing here; contextlib.suppress costs an object per drop
            self._drop(error)
        except Exception:  # noqa: BLE001 - never raise on the recording path (a failing log handler, say)
            pass

    def failed(self, error: BaseException, metric: str) -> None:
        """An exception that escaped the recording code for ``metric`` (a hostile
        argument): strict mode raises it as a MeasurementError, production drops it."""
        if isinstance(error, MeasurementError):
            self.reject(error)
            return
        wrapped = InvalidInputError(
            lambda: f"{metric}: an argument broke recording: {type_name(error)}: {safe_str(error)}", metric=metric
        )
        wrapped.__cause__ = error
        self.reject(wrapped)

    def _drop(self, error: MeasurementError) -> None:
        metric = error.metric if error.metric in self._keys else UNKNOWN_METRIC
        key = (metric, str(error.reason))
        now = self._clock()
        with self._lock:
            self.dropped += 1
            self._counts[key] = self._counts.get(key, 0) + 1
            last = self._last_logged.get(key)
            if last is not None and now - last < LOG_INTERVAL_S:
                return
            self._last_logged[key] = now
        logger.warning(
            "dropped measurement (%s): %s [further drops of this kind are counted in %s_total "
            "and logged at most once a minute]",
            error.reason,
            safe_str(error, 500),
            DROPPED_METRIC,
        )

    def count(self, metric: str, reason: str) -> None:
        """Count one drop the caller logs itself: a figure that cannot be computed from what
        its source gives (no exchange rate, no price), not bad input; never raised."""
        key = (metric if metric in self._keys else UNKNOWN_METRIC, reason)
        with self._lock:
            self.dropped += 1
            self._counts[key] = self._counts.get(key, 0) + 1

    def counts(self) -> dict[tuple[str, str], int]:
        """Drops so far by (metric label, reason)."""
        with self._lock:
            return dict(self._counts)

    def observations(self, options: CallbackOptions) -> Iterable[Observation]:
        """The self-metric's callback."""
        return [
            Observation(count, {"metric": metric, "reason": reason, "service": self.service})
            for (metric, reason), count in self.counts().items()
        ]
