"""What happens to a bad measurement: raised (strict mode) or dropped and counted."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection

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
UNKNOWN_KEYS_LOGGED = 32
"""Most distinct keys outside the catalog whose drops are logged each on their own (once
a minute per key and reason); drops of any further ones share one log line a minute, so
that a stream of made-up keys (an order id in the key, say) logs a bounded burst."""
_KEY_CHARS_KEPT = 100  # a key outside the catalog is remembered by its first characters


class DropPolicy:
    """Strict mode raises the error; production mode counts it in the self-metric and
    logs it at most once per (metric, reason) per minute. Never raises in production
    mode, whatever the error or the logging set-up does.

    The counts live here, keyed by (catalog key or UNKNOWN_METRIC, reason): a bounded
    set, read by the self-metric's observable counter. Counting a drop costs a lock and
    an add, like recording.

    Log lines are throttled per (metric, reason) as the drop's error names them: each
    distinct unknown key gets its own line (a second typo is not hidden behind the
    first), for the first UNKNOWN_KEYS_LOGGED of them; drops of keys beyond them share
    one line a minute. The self-metric keeps one series for all unknown keys."""

    def __init__(
        self, *, strict: bool, service: str, keys: Collection[str], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.strict = strict
        self.service = service
        self._keys = frozenset(keys)
        self._clock = clock
        self._counts: dict[tuple[str, str], int] = {}
        self._last_logged: dict[tuple[str, str], float] = {}
        self._unknown_logged: dict[tuple[str, str], float] = {}  # keys outside the catalog
        self._lock = threading.Lock()
        self.dropped = 0
        self.sink: Callable[[tuple[str, str], int], None] | None = None
        """Told each count's new value (multiprocess mode: the plane's file); never raises."""

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
        known = error.metric in self._keys
        reason = str(error.reason)
        counted = (error.metric if known else UNKNOWN_METRIC, reason)
        now = self._clock()
        with self._lock:
            self._tally(counted)
            logged, key = (self._last_logged, counted) if known else self._unknown_slot(str(error.metric), reason)
            last = logged.get(key)
            if last is not None and now - last < LOG_INTERVAL_S:
                return
            logged[key] = now
        if not logger.isEnabledFor(logging.WARNING):
            return  # the message, and its suggestion, are not built for nobody
        if logged is self._last_logged and not known:
            further = (
                f"more than {UNKNOWN_KEYS_LOGGED} distinct keys outside the catalog: drops of further ones are "
                f'counted in {DROPPED_METRIC}_total{{metric="{UNKNOWN_METRIC}"}} and logged at most once a minute '
                "in all"
            )
        else:
            further = (
                f"further drops of this kind are counted in {DROPPED_METRIC}_total and logged at most once a minute"
            )
        logger.warning("dropped measurement (%s): %s [%s]", error.reason, safe_str(error, 500), further)

    def _unknown_slot(self, metric: str, reason: str) -> tuple[dict[tuple[str, str], float], tuple[str, str]]:
        """Where the last log time of a drop whose metric is not a catalog key is kept:
        its own entry for the first UNKNOWN_KEYS_LOGGED such (key, reason) pairs, else the
        one entry all further ones share. Called under the lock."""
        key = (metric[:_KEY_CHARS_KEPT], reason)
        unknown = self._unknown_logged
        if key in unknown or len(unknown) < UNKNOWN_KEYS_LOGGED:
            return unknown, key
        return self._last_logged, (UNKNOWN_METRIC, reason)

    def count(self, metric: str, reason: str) -> None:
        """Count one drop the caller logs itself: a figure that cannot be computed from what
        its source gives (no exchange rate, no price), not bad input; never raised."""
        with self._lock:
            self._tally((metric if metric in self._keys else UNKNOWN_METRIC, reason))

    def _tally(self, key: tuple[str, str]) -> None:
        """One drop more under ``key`` (the lock held), in the sink too."""
        self.dropped += 1
        total = self._counts[key] = self._counts.get(key, 0) + 1
        if self.sink is not None:
            self.sink(key, total)

    def after_fork(self) -> None:
        """In a forked child: no drop counted in this process yet, a new lock."""
        self._lock = threading.Lock()
        self._counts = {}
        self.dropped = 0

    def counts(self) -> dict[tuple[str, str], int]:
        """Drops so far by (metric label, reason)."""
        with self._lock:
            return dict(self._counts)
