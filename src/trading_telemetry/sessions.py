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

and, once the data plane is made, starts the gauges::

    from trading_telemetry import get_metrics, sessions
    gauges = sessions.start(get_metrics("data_plane"))

``data_session_open{calendar}`` is 1 while the calendar's session is open and 0 while it is
shut; ``data_symbol_calendar{symbol, calendar}`` is 1 for each mapped symbol. The
data-plane alerts join them: they stay silent for a symbol whose calendar is shut.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from trading_telemetry._recorder import PlaneMetrics
from trading_telemetry._sessions import ALWAYS_OPEN, AlwaysOpen, Session, SessionGauges, Sessions, WeeklyCalendar
from trading_telemetry._state import current_config
from trading_telemetry.errors import ConfigError

__all__ = ["ALWAYS_OPEN", "AlwaysOpen", "Session", "SessionGauges", "Sessions", "WeeklyCalendar", "from_file", "start"]


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
    interval: float = 5.0,
    clock: Callable[[], float] = time.time,
) -> SessionGauges:
    """Set the data plane's session gauges now and every ``interval`` seconds, on a
    thread of their own, from ``sessions`` (by default :func:`from_file`'s)."""
    return SessionGauges(metrics, sessions if sessions is not None else from_file(), interval, clock).start()
