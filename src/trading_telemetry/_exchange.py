"""Exchange calendars from the ``exchange_calendars`` library (the ``[calendars]`` extra).

A catalog file declares ``calendars: {NYSE: {exchange: XNYS}}``; the calendar is built once,
when the file loads, with ``exchange_calendars.get_calendar`` (holidays and early closes
included), and answers with its ``is_open_on_minute``: open from a session's open,
shut from its close.
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

    def is_open(self, instant: float) -> bool:
        """Whether the exchange's session is open at ``instant`` (seconds since the epoch);
        raises outside the dates the calendar was built for (from 20 years before the load
        to one year after)."""
        minute = self._timestamp(int(instant // 60) * 60, unit="s", tz="UTC")
        return bool(self._calendar.is_open_on_minute(minute))


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
        with warnings.catch_warnings():  # pandas 3.1 deprecates calls the library makes as it builds
            warnings.simplefilter("ignore", DeprecationWarning)
            calendar = exchange_calendars.get_calendar(code)
            calendar.is_open_on_minute(calendar.first_minute)  # builds the minutes it looks up, here
    except exchange_calendars.errors.InvalidCalendarName:
        raise refusal(path, where, "exchange", "not an exchange_calendars code (e.g. XNYS, XLON, XTKS)", code) from None
    return ExchangeCalendar(code, calendar)
