"""Exchange calendars from exchange_calendars (the calendars extra): open or shut at fixed
instants, the gauge on /metrics, and the refusals."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_telemetry import CatalogError, TelemetryConfig, init_metrics_exporter, sessions
from trading_telemetry import catalog as cat
from trading_telemetry._exchange import ExchangeCalendar

NY = ZoneInfo("America/New_York")
DESK = """\
calendars:
  NYSE: {exchange: XNYS}
  BINANCE: "24/7"
symbols: {AAPL: NYSE, BTCUSDT: BINANCE}
"""


def at(year: int, month: int, day: int, hour: int, minute: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=NY).timestamp()


def load(tmp_path: Path, text: str = DESK) -> str:
    path = tmp_path / "desk.yaml"
    path.write_text(text)
    cat.load_file(str(path))
    return str(path)


@pytest.fixture(scope="module")
def nyse(tmp_path_factory: pytest.TempPathFactory) -> ExchangeCalendar:
    calendar = sessions.from_file(load(tmp_path_factory.mktemp("desk"))).calendars["NYSE"]
    assert isinstance(calendar, ExchangeCalendar)
    return calendar


@pytest.mark.parametrize(
    ("instant", "is_open"),
    [
        (at(2026, 12, 5, 12), False),  # Saturday noon
        (at(2026, 12, 25, 12), False),  # Christmas, a Friday
        (at(2026, 12, 7, 10), True),  # Monday 10:00
        (at(2026, 12, 7, 9, 29), False),  # before the open
        (at(2026, 12, 7, 9, 30), True),  # the open
        (at(2026, 12, 7, 16), False),  # the close
        (at(2026, 11, 27, 12, 59), True),  # the day after Thanksgiving, before its 13:00 early close
        (at(2026, 11, 27, 13), False),  # after it
        (at(2026, 11, 27, 15), False),
        (at(2026, 7, 6, 10), True),  # summer time: 10:00 New York is 14:00 UTC
    ],
)
def test_xnys_at_fixed_instants(nyse: ExchangeCalendar, instant: float, is_open: bool) -> None:
    """XNYS is shut on a Saturday, on Christmas and after an early close, open on a Monday morning."""
    assert nyse.is_open(instant) is is_open


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=at(2026, 1, 1, 0), max_value=at(2026, 12, 31, 0), allow_nan=False))
def test_xnys_answers_as_its_schedule(nyse: ExchangeCalendar, instant: float) -> None:
    """At any instant of 2026, open exactly when the instant's minute lies in one of the library's sessions."""
    import exchange_calendars

    library = exchange_calendars.get_calendar("XNYS")
    minute = dt.datetime.fromtimestamp(instant // 60 * 60, dt.timezone.utc)
    schedule = library.schedule.loc["2025-12-31":"2027-01-01"]
    inside = any(row.open <= minute < row.close for row in schedule.itertuples())
    assert nyse.is_open(instant) is inside


def test_an_instant_past_the_calendars_last_day_builds_it_again() -> None:
    """A calendar built to a day (as the load builds one to a year after its day) answers for later instants, a
    year after its end included, as the library's calendar of those dates does: a plane running past its first
    year keeps its sessions."""
    import exchange_calendars

    short = ExchangeCalendar("XNYS", exchange_calendars.get_calendar("XNYS", start="2026-01-02", end="2026-03-31"))
    cases = [
        (at(2026, 6, 17, 11), True),  # a Wednesday morning, past the end
        (at(2026, 6, 19, 11), False),  # Juneteenth
        (at(2027, 11, 25, 12), False),  # Thanksgiving 2027, after the first rebuild's end
        (at(2027, 11, 29, 10), True),
    ]
    assert [short.is_open(instant) for instant, _ in cases] == [expected for _, expected in cases]
    assert short.is_open(at(2026, 3, 2, 10)) is True  # earlier days still answer


def test_past_the_last_day_the_library_knows_the_calendar_says_so() -> None:
    """XBOM's sessions are known to 2026-12-31 only: a later instant raises, naming the exchange and that day."""
    import exchange_calendars

    xbom = ExchangeCalendar("XBOM", exchange_calendars.get_calendar("XBOM"))
    assert xbom.is_open(dt.datetime(2026, 12, 30, 5, tzinfo=dt.timezone.utc).timestamp()) is True
    with pytest.raises(ValueError, match=r"exchange XBOM: exchange_calendars knows its sessions up to 2026-12-31 only"):
        xbom.is_open(dt.datetime(2027, 1, 5, 5, tzinfo=dt.timezone.utc).timestamp())


def test_a_calendar_that_cannot_answer_loses_its_gauge_and_stops_no_other(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Past XBOM's last known day its data_session_open series leaves /metrics (its symbols' alerts then fire as
    for a symbol without a calendar), each refresh counts a drop, one warning names it; BINANCE's gauge goes on."""
    path = load(tmp_path, "calendars:\n  BSE: {exchange: XBOM}\n  BINANCE: '24/7'\nsymbols: {RELIANCE: BSE}\n")
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=("prometheus",)))
    now = [dt.datetime(2026, 12, 30, 5, tzinfo=dt.timezone.utc).timestamp()]  # 10:30 in Mumbai: open
    gauges = sessions.SessionGauges(metrics, sessions.from_file(path), clock=lambda: now[0])
    assert metrics.exposition is not None
    gauges.refresh()
    assert 'data_session_open{calendar="BSE",service="data_plane"} 1.0' in metrics.exposition.render().decode()
    now[0] = dt.datetime(2027, 1, 5, 5, tzinfo=dt.timezone.utc).timestamp()
    with caplog.at_level("WARNING", logger="trading_telemetry"):
        gauges.refresh()
        gauges.refresh()
    text = metrics.exposition.render().decode()
    assert 'data_session_open{calendar="BSE"' not in text
    assert 'data_symbol_calendar{calendar="BSE",service="data_plane",symbol="RELIANCE"} 1.0' in text
    assert 'data_session_open{calendar="BINANCE",service="data_plane"} 1.0' in text
    assert metrics.policy.counts() == {("session_open", "calendar_unknown"): 2}
    (warning,) = [r.getMessage() for r in caplog.records if "BSE" in r.getMessage()]
    assert "exchange XBOM: exchange_calendars knows its sessions up to 2026-12-31 only" in warning


def test_gauge_on_metrics_follows_the_exchange(tmp_path: Path) -> None:
    """data_session_open{calendar="NYSE"} is 0 on Saturday, 1 on Monday 10:00, 0 after the early close."""
    path = load(tmp_path)
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=("prometheus",)))
    now = [at(2026, 12, 5, 12)]
    gauges = sessions.SessionGauges(metrics, sessions.from_file(path), clock=lambda: now[0])
    assert metrics.exposition is not None
    for instant, value in (
        (at(2026, 12, 5, 12), "0.0"),
        (at(2026, 12, 7, 10), "1.0"),
        (at(2026, 11, 27, 13, 1), "0.0"),
    ):
        now[0] = instant
        gauges.refresh()
        text = metrics.exposition.render().decode()
        assert f'data_session_open{{calendar="NYSE",service="data_plane"}} {value}' in text
        assert 'data_session_open{calendar="BINANCE",service="data_plane"} 1.0' in text
        assert 'data_symbol_calendar{calendar="NYSE",service="data_plane",symbol="AAPL"} 1.0' in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("calendars: {NYSE: {exchange: XNYZ}}",
         "calendar 'NYSE': exchange: 'XNYZ': not an exchange_calendars code (e.g. XNYS"),
        ("calendars: {NYSE: {exchange: 42}}", "calendar 'NYSE': exchange: 42: expected an exchange code"),
        ("calendars: {NYSE: {exchange: XNYS, timezone: UTC}}",
         "calendar 'NYSE': 'timezone': unknown field; an exchange calendar has only exchange"),
    ],
)  # fmt: skip
def test_bad_exchange_calendars_are_refused(tmp_path: Path, text: str, message: str) -> None:
    """An unknown exchange code, a code that is not a string, or another field is a CatalogError naming it."""
    path = tmp_path / "desk.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError) as caught:
        cat.load_file(str(path))
    assert str(caught.value).startswith(f"{path}: {message}")
    assert cat.effective_catalog() == cat.CATALOG


def test_without_the_extra_the_refusal_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without exchange_calendars, an exchange calendar is a CatalogError naming the entry and the pip command."""
    monkeypatch.setitem(sys.modules, "exchange_calendars", None)  # what an import finds when it is not installed
    path = tmp_path / "desk.yaml"
    path.write_text(DESK)
    with pytest.raises(CatalogError) as caught:
        cat.load_file(str(path))
    assert str(caught.value) == (
        f"{path}: calendar 'NYSE': exchange: 'XNYS': exchange calendars need the calendars extra: "
        "pip install 'trading-telemetry[calendars]'"
    )
