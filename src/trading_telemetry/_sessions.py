"""Trading calendars: whether a venue's session is open at an instant.

A calendar is ``24/7`` (crypto venues) or weekly sessions in a time zone (IANA, read with
the standard library's ``zoneinfo``), less holidays, with half days that close early. The
desk declares them in its catalog file (``calendars`` and ``symbols``); the data plane
exports ``data_session_open{calendar}`` (1 open, 0 shut) and ``data_symbol_calendar{symbol,
calendar} 1``, which the data-plane alerts join to stay silent while a symbol's venue is
shut. Times are wall-clock times of the calendar's zone: 09:30 New York is 09:30 in summer
and in winter. A session whose close is not after its open ends the next day (overnight).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from trading_telemetry._exchange import ExchangeCalendar, exchange_calendar
from trading_telemetry._safe import safe_repr, safe_str, type_name
from trading_telemetry.catalog import Kind, MetricSpec, Plane, refusal
from trading_telemetry.errors import CatalogError

if TYPE_CHECKING:
    from trading_telemetry._recorder import PlaneMetrics

__all__ = [
    "ALWAYS_OPEN",
    "SESSION_OPEN",
    "SYMBOL_CALENDAR",
    "AlwaysOpen",
    "Session",
    "SessionGauges",
    "Sessions",
    "WeeklyCalendar",
    "gauges_from_file",
    "parse_sessions",
]

ALWAYS_OPEN = "24/7"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
MAX_CALENDARS = 100
MAX_SYMBOLS = 10_000

SESSION_OPEN = MetricSpec(
    Plane.DATA, "session_open", "data_session_open", Kind.GAUGE, "{session}",
    "Whether the calendar's trading session is open (1) or shut (0), from the desk's calendars",
    ("calendar",), min_value=0.0, max_value=1.0, integral=True,
)  # fmt: skip
SYMBOL_CALENDAR = MetricSpec(
    Plane.DATA, "symbol_calendar", "data_symbol_calendar", Kind.GAUGE, "{mapping}",
    "The calendar a symbol trades on (always 1): joins data_session_open to the symbol's series",
    ("symbol", "calendar"), min_value=1.0, max_value=1.0, integral=True,
)  # fmt: skip


@dataclass(frozen=True)
class AlwaysOpen:
    """A venue that never closes."""

    def is_open(self, instant: float) -> bool:
        """Always."""
        return True


@dataclass(frozen=True)
class Session:
    """Open from ``open`` to ``close`` (wall-clock times) on each of ``days`` (0 is Monday);
    a close not after the open is on the next day."""

    days: frozenset[int]
    open: dt.time
    close: dt.time

    @property
    def overnight(self) -> bool:
        return self.close <= self.open


@dataclass(frozen=True)
class WeeklyCalendar:
    """Weekly sessions in ``zone``; none opens on a holiday; on a half day the sessions that
    open that date end at the half day's close (one that would open after it does not open;
    an overnight session ends at the first such wall-clock time after its open)."""

    zone: dt.tzinfo
    sessions: tuple[Session, ...]
    holidays: frozenset[dt.date] = frozenset()
    half_days: Mapping[dt.date, dt.time] = field(default_factory=dict)

    def is_open(self, instant: float) -> bool:
        """Whether a session is open at ``instant`` (seconds since the epoch)."""
        wall = dt.datetime.fromtimestamp(instant, self.zone).replace(tzinfo=None)
        today = wall.date()
        for opening in (today, today - dt.timedelta(days=1)):  # a session opened today or, overnight, yesterday
            if opening in self.holidays:
                continue
            for session in self.sessions:
                if opening.weekday() not in session.days or (opening != today and not session.overnight):
                    continue
                start = dt.datetime.combine(opening, session.open)
                end = dt.datetime.combine(opening + dt.timedelta(days=session.overnight), session.close)
                early = self.half_days.get(opening)
                if early is not None:
                    later = session.overnight and early <= session.open  # an overnight session's close
                    cut = dt.datetime.combine(opening + dt.timedelta(days=later), early)
                    end = min(end, cut)
                if start <= wall < end:
                    return True
        return False


Calendar = AlwaysOpen | WeeklyCalendar | ExchangeCalendar


@dataclass(frozen=True)
class Sessions:
    """The desk's calendars by name, and the calendar of each symbol."""

    calendars: Mapping[str, Calendar]
    symbols: Mapping[str, str]

    def open_now(self, instant: float) -> dict[str, bool]:
        """Each calendar's state at ``instant``."""
        return {name: calendar.is_open(instant) for name, calendar in self.calendars.items()}


class SessionGauges:
    """Sets the data plane's ``session_open`` and ``symbol_calendar`` gauges from ``sessions``
    every ``interval`` seconds, on a daemon thread of its own (the trading thread only ever
    reads a gauge's last value; a session's state costs microseconds per calendar, and an
    exchange calendar's yearly rebuild a few seconds). A calendar that cannot answer (an
    exchange past the last day its library knows) has its ``session_open`` series removed,
    so that its symbols' alerts fire as for a symbol without a calendar, rather than
    stay silenced by a stale value; each such refresh counts a drop (``calendar_unknown``),
    logged once until the calendar answers again."""

    def __init__(
        self,
        metrics: PlaneMetrics,
        sessions: Sessions,
        interval: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if metrics.plane is not Plane.DATA:
            raise ValueError(f"session gauges are the data plane's, not the {metrics.plane.value}'s")
        self.metrics, self.sessions, self.interval, self.clock = metrics, sessions, interval, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._symbols = dict(sessions.symbols)  # the file's, then add_symbol's; guarded by _lock
        self._lock = threading.Lock()
        self._unknown: set[str] = set()  # calendars that could not answer at the last refresh

    def refresh(self) -> None:
        """Set the gauges for the clock's instant now."""
        instant = self.clock()
        for name, calendar in self.sessions.calendars.items():
            try:
                is_open = calendar.is_open(instant)
            except Exception as error:  # noqa: BLE001 - one calendar's failure stops no other
                self._cannot_answer(name, error)
                continue
            self._unknown.discard(name)
            self.metrics.set(SESSION_OPEN.key, float(is_open), calendar=name)
        with self._lock:
            symbols = list(self._symbols.items())
        for symbol, name in symbols:
            self.metrics.set(SYMBOL_CALENDAR.key, 1.0, symbol=symbol, calendar=name)

    @property
    def symbols(self) -> dict[str, str]:
        """Each exported symbol's calendar: the file's and those added since."""
        with self._lock:
            return dict(self._symbols)

    def add_symbol(self, symbol: str, calendar: str) -> bool:
        """Export ``symbol``'s calendar from now on (thread-safe; the gauge is set at once).
        A symbol keeps the calendar it was first given; beyond MAX_SYMBOLS none is added.
        Returns whether the mapping is new. ValueError for a calendar not declared."""
        if calendar not in self.sessions.calendars:
            known = ", ".join(sorted(self.sessions.calendars)) or "none"
            raise ValueError(f"calendar {calendar!r} is not declared (declared: {known})")
        with self._lock:
            if symbol in self._symbols or len(self._symbols) >= MAX_SYMBOLS:
                return False
            self._symbols[symbol] = calendar
        self.metrics.set(SYMBOL_CALENDAR.key, 1.0, symbol=symbol, calendar=calendar)
        return True

    def remove_symbol(self, symbol: str) -> None:
        """Stop exporting ``symbol``'s calendar (its series retired: an expired contract)."""
        with self._lock:
            calendar = self._symbols.pop(symbol, None)
        if calendar is not None:
            self.metrics.retire(SYMBOL_CALENDAR.key, symbol=symbol, calendar=calendar)

    @property
    def running(self) -> bool:
        """Whether the refreshing thread runs."""
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def after_fork(self) -> None:
        """In a forked child, where the parent's thread does not exist: stopped for good,
        with new locks (the child starts gauges of its own if it wants them)."""
        self._stop = threading.Event()
        self._stop.set()
        self._thread = None
        self._lock = threading.Lock()

    def start(self) -> SessionGauges:
        """Refresh now, then every ``interval`` seconds until :meth:`stop`."""
        self.refresh()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="trading-telemetry-sessions", daemon=True)
            self._thread.start()
        return self

    def _cannot_answer(self, name: str, error: Exception) -> None:
        self.metrics.count_drop(SESSION_OPEN.key, "calendar_unknown")
        if name in self._unknown:
            return
        self._unknown.add(name)
        self.metrics.retire(SESSION_OPEN.key, calendar=name)
        logging.getLogger("trading_telemetry").warning(
            "calendar %r: its session is unknown (%s: %s); data_session_open{calendar=%r} is removed, so the "
            "market-data alerts of its symbols fire as for a symbol without a calendar; further refreshes "
            "count a drop (calendar_unknown) until it answers",
            name,
            type_name(error),
            safe_str(error),
            name,
        )

    def stop(self, timeout: float | None = None) -> None:
        """Stop refreshing."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - a failed refresh keeps the last values; the next one retries
                continue


def gauges_from_file(metrics: PlaneMetrics, path: str) -> SessionGauges | None:
    """The started gauges of the catalog file at ``path``'s calendars, on the data plane
    ``metrics`` whose catalog declared them; None when the file declares none."""
    from trading_telemetry._catalog_file import read_sessions  # it imports this module

    if SESSION_OPEN.key not in metrics.store.specs:
        return None
    declared = read_sessions(path)
    return None if declared is None else SessionGauges(metrics, declared).start()


def parse_sessions(path: str, calendars: object, symbols: object) -> Sessions:
    """The ``calendars`` and ``symbols`` sections of the catalog file at ``path``; else
    CatalogError naming the file, the entry, the field and the value."""
    calendars = {} if calendars is None else calendars
    symbols = {} if symbols is None else symbols
    if type(calendars) is not dict:
        raise refusal(path, None, "calendars", "expected a mapping of calendar names to '24/7' or sessions", calendars)
    if len(calendars) > MAX_CALENDARS:
        raise refusal(path, None, "calendars", f"{len(calendars)} calendars; at most {MAX_CALENDARS}")
    if type(symbols) is not dict:
        raise refusal(path, None, "symbols", "expected a mapping of symbols to calendar names", symbols)
    if len(symbols) > MAX_SYMBOLS:
        raise refusal(path, None, "symbols", f"{len(symbols)} symbols; at most {MAX_SYMBOLS}")
    parsed = {_name(path, "calendars", n): _calendar(path, n, c) for n, c in calendars.items()}
    mapping: dict[str, str] = {}
    for symbol, name in symbols.items():
        symbol = _name(path, "symbols", symbol)
        if type(name) is not str or name not in parsed:
            known = ", ".join(sorted(parsed)) or "none"
            raise refusal(path, f"symbols entry {safe_repr(symbol, 60)}", None,
                          f"not a declared calendar (declared: {known})", name)  # fmt: skip
        mapping[symbol] = name
    return Sessions(parsed, mapping)


def _name(path: str, section: str, name: object) -> str:
    if type(name) is not str or not name or len(name) > 100 or not name.isprintable():
        raise refusal(path, None, section, "a name is a non-empty printable string of at most 100 characters", name)
    return name


def _calendar(path: str, name: str, spec: object) -> Calendar:
    where = f"calendar {safe_repr(name, 60)}"

    def bad(field_name: str | None, problem: str, *value: object) -> CatalogError:
        return refusal(path, where, field_name, problem, *value)

    if spec == ALWAYS_OPEN:
        return AlwaysOpen()
    if type(spec) is not dict:
        raise bad(None, f"expected {ALWAYS_OPEN!r} or a mapping with timezone and sessions (or exchange)", spec)
    if "exchange" in spec:
        return exchange_calendar(path, where, spec)
    fields = ("timezone", "sessions", "holidays", "half_days")
    unknown = [f for f in spec if f not in fields]
    if unknown:
        raise bad(safe_repr(unknown[0], 40), f"unknown field; expected some of {', '.join(fields)}")
    for required in ("timezone", "sessions"):
        if required not in spec:
            raise bad(required, "required")
    zone_name = spec["timezone"]
    try:
        if type(zone_name) is not str:
            raise ValueError
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise bad("timezone", "not an IANA time zone (e.g. America/New_York)", zone_name) from None
    sessions = spec["sessions"]
    if type(sessions) is not list or not sessions:
        raise bad("sessions", "expected a non-empty list of {days, open, close}", sessions)
    holidays = spec.get("holidays") or []
    if type(holidays) is not list or any(type(d) is not dt.date for d in holidays):
        bad_day = (
            next((d for d in holidays if type(d) is not dt.date), holidays) if type(holidays) is list else holidays
        )
        raise bad("holidays", "expected a list of dates (YYYY-MM-DD)", bad_day)
    half_days = spec.get("half_days") or {}
    if type(half_days) is not dict:
        raise bad("half_days", 'expected a mapping of dates (YYYY-MM-DD) to closing times ("HH:MM")', half_days)
    early: dict[dt.date, dt.time] = {}
    for day, closing in half_days.items():
        if type(day) is not dt.date:
            raise bad("half_days", "a half day is a date (YYYY-MM-DD)", day)
        early[day] = _time(bad, f"half_days {day.isoformat()}", closing)
    return WeeklyCalendar(
        zone, tuple(_session(bad, n, s) for n, s in enumerate(sessions, 1)), frozenset(holidays), early
    )


def _session(bad: Callable[..., CatalogError], number: int, spec: object) -> Session:
    where = f"sessions entry {number}"
    if type(spec) is not dict or set(spec) != {"days", "open", "close"}:
        raise bad(where, "expected a mapping with exactly days, open and close", spec)
    days = spec["days"]
    if type(days) is not list or not days or any(d not in DAYS for d in days):
        raise bad(f"{where} days", f"expected a non-empty list of {', '.join(DAYS)}", days)
    opens, closes = _time(bad, f"{where} open", spec["open"]), _time(bad, f"{where} close", spec["close"])
    return Session(frozenset(DAYS.index(d) for d in days), opens, closes)


def _time(bad: Callable[..., CatalogError], field_name: str, value: object) -> dt.time:
    match = _HHMM.fullmatch(value) if type(value) is str else None
    if match is None:
        raise bad(field_name, 'expected a quoted wall-clock time "HH:MM" (00:00 to 23:59)', value)
    return dt.time(int(match[1]), int(match[2]))
