"""Exchange calendars from the ``exchange_calendars`` library (the ``[calendars]`` extra).

A catalog file declares ``calendars: {NYSE: {exchange: XNYS}}``; the calendar is built
when the file loads, with ``exchange_calendars.get_calendar`` (holidays and early closes
included, from 20 years before to one year after that day), and answers with its
``is_open_on_minute``: open from a session's open, shut from its close. An instant past
its last session builds it again, to a year after that instant, as far as the library
knows the exchange's sessions (some calendars end at a fixed day, e.g. XBOM at the end of
2026); past that, the calendar cannot answer (``SessionGauges`` then removes its gauge).
"""

from __future__ import annotations

import warnings
from typing import Any

from trading_telemetry._safe import safe_repr
from trading_telemetry.catalog import refusal

EXTRA = "pip install 'trading-telemetry[calendars]'"


class ExchangeCalendar:
    """An exchange's sessions as ``exchange_calendars`` publishes them, by ISO MIC (``XNYS``)."""

    def __init__(self, code: str, calendar: Any) -> None:
        self.code = code
        self._calendar = calendar
        import pandas as pd  # installed with exchange_calendars

        self._timestamp = pd.Timestamp
        self._timedelta = pd.Timedelta

    def is_open(self, instant: float) -> bool:
        """Whether the exchange's session is open at ``instant`` (seconds since the epoch).
        Past the calendar's last session it is built again, to a year after ``instant`` or to
        the last day the library knows for the exchange (its ``bound_max``), whichever comes
        first: a few seconds, once a year, in the thread that refreshes the session gauges.
        Raises ValueError, naming the exchange and its last known day, for an instant the
        library cannot answer (past that day, or before the first session)."""
        minute = self._timestamp(int(instant // 60) * 60, unit="s", tz="UTC")
        calendar = self._calendar
        if minute > calendar.last_minute:
            bound = type(calendar).bound_max()
            if bound is None or calendar.last_session < bound:
                end = minute.tz_convert(None).normalize() + self._timedelta(days=366)
                calendar = self._calendar = _built(self.code, min(end, bound or end).strftime("%Y-%m-%d"))
            if minute > calendar.last_minute:
                raise ValueError(
                    f"exchange {self.code}: exchange_calendars knows its sessions up to "
                    f"{calendar.last_session:%Y-%m-%d} only (a newer release may know more)"
                )
        return bool(calendar.is_open_on_minute(minute))


def _built(code: str, end: str | None = None) -> Any:
    """``exchange_calendars``' calendar of ``code``, its minutes built; to ``end`` (a date)
    when given, else to the library's default (a year after today). Raises the library's
    InvalidCalendarName for an unknown code."""
    import exchange_calendars

    with warnings.catch_warnings():  # pandas 3.1 deprecates calls the library makes as it builds
        warnings.simplefilter("ignore", DeprecationWarning)
        # An explicit end also passes the library's cache of calendars built with its defaults.
        calendar = (
            exchange_calendars.get_calendar(code) if end is None else exchange_calendars.get_calendar(code, end=end)
        )
        calendar.is_open_on_minute(calendar.first_minute)  # builds the minutes it looks up, here
    return calendar


def exchange_calendar(path: str, where: str, spec: dict[object, object]) -> ExchangeCalendar:
    """The calendar ``{exchange: CODE}`` of ``where`` in the catalog file at ``path``; else
    CatalogError naming the file, the entry, the field and the value."""
    unknown = [f for f in spec if f != "exchange"]
    if unknown:
        raise refusal(path, where, safe_repr(unknown[0], 40), "unknown field; an exchange calendar has only exchange")
    code = spec["exchange"]
    if type(code) is not str or not code:
        raise refusal(path, where, "exchange", "expected an exchange code such as XNYS", code)
    try:
        import exchange_calendars
    except ImportError:
        raise refusal(path, where, "exchange", f"exchange calendars need the calendars extra: {EXTRA}", code) from None
    try:
        calendar = _built(code)
    except exchange_calendars.errors.InvalidCalendarName:
        raise refusal(path, where, "exchange", "not an exchange_calendars code (e.g. XNYS, XLON, XTKS)", code) from None
    return ExchangeCalendar(code, calendar)
