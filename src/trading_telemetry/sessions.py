"""Trading sessions: the data plane exports whether each of the desk's calendars is open.

The desk declares its calendars and its symbols' calendars in its catalog file
(TRADING_TELEMETRY_CATALOG)::

    calendars:
      XNYS:
        timezone: America/New_York
        sessions: [{days: [mon, tue, wed, thu, fri], open: "09:30", close: "16:00"}]
        holidays: [2026-12-25]
        half_days: {2026-11-27: "13:00"}
      BINANCE: "24/7"
    symbols: {AAPL: XNYS, BTCUSDT: BINANCE}

and the data plane, once made, exports them (``sessions.start(metrics, ...)`` starts
gauges for other calendars or a plane made otherwise; ``sessions.running()`` gives the
running ones).

``data_session_open{calendar}`` is 1 while the calendar's session is open and 0 while it is
shut; ``data_symbol_calendar{symbol, calendar}`` is 1 for each mapped symbol. The
data-plane alerts join them: they stay silent for a symbol whose calendar is shut.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from trading_telemetry._globals import STATE
from trading_telemetry._recorder import PlaneMetrics
from trading_telemetry._sessions import ALWAYS_OPEN, AlwaysOpen, Session, SessionGauges, Sessions, WeeklyCalendar
from trading_telemetry._state import current_config
from trading_telemetry.errors import ConfigError

__all__ = [
    "ALWAYS_OPEN",
    "AlwaysOpen",
    "Session",
    "SessionGauges",
    "Sessions",
    "WeeklyCalendar",
    "from_file",
    "running",
    "start",
]


def from_file(path: str | None = None) -> Sessions:
    """The calendars and symbols of the catalog file at ``path`` (by default
    TRADING_TELEMETRY_CATALOG's); CatalogError names what is wrong in it."""
    from trading_telemetry._catalog_file import read_sessions

    path = path or current_config().catalog_path
    if not path:
        raise ConfigError("TRADING_TELEMETRY_CATALOG", "", "is not set: name the catalog file with the calendars")
    return read_sessions(path) or Sessions({}, {})


def start(
    metrics: PlaneMetrics,
    sessions: Sessions | None = None,
    interval: float | None = None,
    clock: Callable[[], float] | None = None,
) -> SessionGauges:
    """Set the data plane's session gauges now and every ``interval`` seconds (5 by
    default), on a thread of their own, from ``sessions`` (by default the running gauges',
    else :func:`from_file`'s for the plane's catalog file), at ``clock``'s instants (by
    default ``time.time``). Gauges already running on ``metrics`` (started with the plane,
    or by an earlier call) are returned as they are unless an argument given differs from
    theirs; then they stop and new ones start."""
    with STATE.lock:
        current: SessionGauges | None = STATE.session_gauges
        if (
            current is not None
            and current.running
            and current.metrics is metrics
            and (
                (sessions is None or sessions == current.sessions)
                and (interval is None or interval == current.interval)
                and (clock is None or clock is current.clock)
            )
        ):
            return current
    if sessions is None:  # the running gauges' calendars, else those of the plane's catalog file
        same = current is not None and current.metrics is metrics
        sessions = current.sessions if same and current is not None else from_file(metrics.sdk.config.catalog_path)
    gauges = SessionGauges(metrics, sessions, 5.0 if interval is None else interval, clock or time.time)
    with STATE.lock:
        previous, STATE.session_gauges = STATE.session_gauges, gauges
    if previous is not None:
        previous.stop(0)
    return gauges.start()


def running() -> SessionGauges | None:
    """The data plane's running session gauges, if any."""
    gauges: SessionGauges | None = STATE.session_gauges
    return gauges if gauges is not None and gauges.running else None
