"""Trading calendars: a calendar is open at an instant iff a session holds it in the
calendar's time zone, not on a holiday, before a half day's close; the desk's YAML is
checked at load; the data plane's /metrics shows the session gauges at a given instant."""

from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import wait_for
from trading_telemetry import CatalogError, PlaneMetrics, TelemetryConfig, init_metrics_exporter, reset, sessions
from trading_telemetry import catalog as cat
from trading_telemetry._sessions import DAYS, AlwaysOpen, Session, Sessions, WeeklyCalendar

NY = ZoneInfo("America/New_York")
UTC = dt.timezone.utc
XNYS = WeeklyCalendar(
    NY, (Session(frozenset(range(5)), dt.time(9, 30), dt.time(16)),),
    frozenset({dt.date(2026, 12, 25)}), {dt.date(2026, 11, 27): dt.time(13)},
)  # fmt: skip
DESK = """\
calendars:
  XNYS:
    timezone: America/New_York
    sessions: [{days: [mon, tue, wed, thu, fri], open: "09:30", close: "16:00"}]
    holidays: [2026-12-25]
    half_days: {2026-11-27: "13:00"}
  BINANCE: "24/7"
symbols: {AAPL: XNYS, BTCUSDT: BINANCE}
"""
ZONES = ("America/New_York", "Europe/London", "Asia/Tokyo", "Australia/Sydney", "UTC", "America/Sao_Paulo")


def at(year: int, month: int, day: int, hour: int, minute: int = 0, zone: dt.tzinfo = UTC) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=zone).timestamp()


times = st.builds(dt.time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))
instants = st.floats(min_value=at(2024, 1, 1, 0), max_value=at(2028, 12, 31, 0), allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(ZONES), days=st.frozensets(st.integers(0, 6), min_size=1), opens=times, closes=times,
    instant=instants, holiday=st.booleans(), half=st.one_of(st.none(), times),
)  # fmt: skip
def test_open_iff_inside_a_session(
    zone: str, days: frozenset[int], opens: dt.time, closes: dt.time, instant: float, holiday: bool,
    half: dt.time | None,
) -> None:  # fmt: skip
    """A same-day session: open iff the local weekday and wall time are inside it, the local
    date is not a holiday, and on a half day the wall time is before the early close."""
    if closes <= opens:
        opens, closes = closes, opens
    if closes == opens:
        return
    local = dt.datetime.fromtimestamp(instant, ZoneInfo(zone))
    holidays = frozenset({local.date()}) if holiday else frozenset()
    half_days = {local.date(): half} if half is not None else {}
    calendar = WeeklyCalendar(ZoneInfo(zone), (Session(days, opens, closes),), holidays, half_days)
    t = local.time().replace(tzinfo=None)
    expected = local.weekday() in days and opens <= t < closes and not holiday and (half is None or t < half)
    assert calendar.is_open(instant) is expected


def test_new_york_open_follows_daylight_saving() -> None:
    """09:30 New York is 14:30 UTC before the March switch and 13:30 UTC after it; 16:00 closes it."""
    assert not XNYS.is_open(at(2026, 3, 6, 14, 29))
    assert XNYS.is_open(at(2026, 3, 6, 14, 30))
    assert not XNYS.is_open(at(2026, 3, 9, 13, 29))
    assert XNYS.is_open(at(2026, 3, 9, 13, 30))
    assert XNYS.is_open(at(2026, 3, 9, 19, 59))
    assert not XNYS.is_open(at(2026, 3, 9, 20, 0))
    assert XNYS.is_open(at(2026, 11, 2, 14, 30))
    assert not XNYS.is_open(at(2026, 11, 2, 13, 30))


def test_weekend_holiday_and_half_day() -> None:
    """Shut on Saturday, on Christmas and after 13:00 on the day after Thanksgiving; open before it."""
    assert not XNYS.is_open(at(2026, 12, 5, 12, zone=NY))
    assert not XNYS.is_open(at(2026, 12, 25, 12, zone=NY))
    assert XNYS.is_open(at(2026, 11, 27, 12, 59, zone=NY))
    assert not XNYS.is_open(at(2026, 11, 27, 13, 0, zone=NY))
    assert AlwaysOpen().is_open(at(2026, 12, 25, 3))


def test_overnight_session_ends_the_next_day() -> None:
    """A session whose close is before its open (Sunday 18:00 to Monday 17:00 Chicago) spans midnight."""
    chicago = ZoneInfo("America/Chicago")
    globex = WeeklyCalendar(chicago, (Session(frozenset({6}), dt.time(18), dt.time(17)),))
    assert not globex.is_open(at(2026, 12, 6, 17, 59, zone=chicago))
    assert globex.is_open(at(2026, 12, 6, 23, zone=chicago))
    assert globex.is_open(at(2026, 12, 7, 16, 59, zone=chicago))
    assert not globex.is_open(at(2026, 12, 7, 17, zone=chicago))


def load(tmp_path: Path, text: str) -> str:
    path = tmp_path / "desk.yaml"
    path.write_text(text)
    cat.load_file(str(path))
    return str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("calendars: {X: weekdays}", "calendar 'X': 'weekdays': expected '24/7' or a mapping"),
        ("calendars: {X: {timezone: Mars/Olympus, sessions: []}}",
         "calendar 'X': timezone: 'Mars/Olympus': not an IANA time zone"),
        ("calendars: {X: {timezone: UTC}}", "calendar 'X': sessions: required"),
        ("calendars: {X: {timezone: UTC, sessions: [{days: [mon], open: 9:30, close: '16:00'}]}}",
         "calendar 'X': sessions entry 1 open: 570: expected a quoted wall-clock time"),
        ("calendars: {X: {timezone: UTC, sessions: [{days: [monday], open: '09:30', close: '16:00'}]}}",
         "calendar 'X': sessions entry 1 days: ['monday']: expected a non-empty list of mon"),
        ("calendars: {X: {timezone: UTC, sessions: [{days: [mon], open: '09:30', close: '16:00'}], "
         "holidays: [christmas]}}", "calendar 'X': holidays: 'christmas': expected a list of dates"),
        ("calendars: {X: {timezone: UTC, sessions: [{days: [mon], open: '09:30', close: '16:00'}], "
         "half_days: {2026-11-27: '25:00'}}}", "half_days 2026-11-27: '25:00': expected a quoted wall-clock"),
        ("calendars: {X: {timezone: UTC, sessions: [], hours: 1}}", "calendar 'X': 'hours': unknown field"),
        ("calendars: {X: '24/7'}\nsymbols: {AAPL: XNYS}", "symbols entry 'AAPL': 'XNYS': not a declared calendar"),
        ("calendars: [X]", "calendars: ['X']: expected a mapping"),
        ("holidays: []", "'metrics', 'label_values', 'calendars' and/or 'symbols'"),
    ],
)  # fmt: skip
def test_bad_calendars_are_refused_naming_the_entry(tmp_path: Path, text: str, message: str) -> None:
    """Each mistake in the calendars or symbols is a CatalogError naming file, entry, field and value."""
    path = tmp_path / "desk.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError) as caught:
        cat.load_file(str(path))
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)
    assert cat.effective_catalog() == cat.CATALOG


def test_gauges_on_metrics_at_a_fixed_instant(tmp_path: Path) -> None:
    """Saturday noon in New York: XNYS shut (0), BINANCE open (1), and each symbol's calendar exported as 1."""
    path = load(tmp_path, DESK)
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=("prometheus",)))
    gauges = sessions.SessionGauges(metrics, sessions.from_file(path), clock=lambda: at(2026, 12, 5, 12, zone=NY))
    gauges.refresh()
    assert metrics.exposition is not None
    text = metrics.exposition.render().decode()
    assert 'data_session_open{calendar="XNYS",service="data_plane"} 0.0' in text
    assert 'data_session_open{calendar="BINANCE",service="data_plane"} 1.0' in text
    assert 'data_symbol_calendar{calendar="XNYS",service="data_plane",symbol="AAPL"} 1.0' in text
    gauges.clock = lambda: at(2026, 12, 7, 10, zone=NY)
    gauges.refresh()
    assert 'data_session_open{calendar="XNYS",service="data_plane"} 1.0' in metrics.exposition.render().decode()


def test_started_gauges_refresh_on_their_thread(tmp_path: Path) -> None:
    """start() sets the gauges at once and keeps them following the clock from a thread of its own."""
    path = load(tmp_path, DESK)
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=("prometheus",)))
    now = [at(2026, 12, 5, 12, zone=NY)]
    gauges = sessions.start(metrics, sessions.from_file(path), interval=0.01, clock=lambda: now[0])
    try:
        exposition = metrics.exposition
        assert exposition is not None
        assert 'calendar="XNYS",service="data_plane"} 0.0' in exposition.render().decode()
        now[0] = at(2026, 12, 7, 10, zone=NY)
        wait_for("XNYS open", lambda: 'calendar="XNYS",service="data_plane"} 1.0' in exposition.render().decode())
    finally:
        gauges.stop(timeout=5)


def test_a_file_without_calendars_adds_no_gauge(tmp_path: Path) -> None:
    """A catalog file with no calendars declares no session gauges, and from_file gives none."""
    path = load(tmp_path, "label_values: {}\n")
    assert "session_open" not in {s.key for s in cat.effective_catalog()}
    assert sessions.from_file(path) == Sessions({}, {})
    assert DAYS[0] == "mon"


def test_the_documented_example_loads_and_means_what_it_says(tmp_path: Path) -> None:
    """docs/sessions.md's calendars load: CME Globex open Sunday evening in Chicago, XNYS shut then, BINANCE open."""
    text = (Path(__file__).parents[2] / "docs" / "sessions.md").read_text()
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    declared = sessions.from_file(load(tmp_path, example))
    assert declared.symbols == {"AAPL": "XNYS", "ES": "CME_GLOBEX", "BTCUSDT": "BINANCE"}
    sunday_evening = at(2026, 12, 6, 18, zone=ZoneInfo("America/Chicago"))
    assert declared.open_now(sunday_evening) == {"XNYS": False, "CME_GLOBEX": True, "BINANCE": True}
    assert not declared.calendars["XNYS"].is_open(at(2026, 11, 26, 12, zone=NY))


@settings(max_examples=300, deadline=None)
@given(zone=st.sampled_from(ZONES), days=st.frozensets(st.integers(0, 6), min_size=1), opens=times, closes=times,
       instant=instants)  # fmt: skip
def test_overnight_session_spans_midnight(
    zone: str, days: frozenset[int], opens: dt.time, closes: dt.time, instant: float
) -> None:
    """A session closing at or before its open: open iff after the open on one of its days, or before the close
    on the day after one of them."""
    if closes > opens:
        opens, closes = closes, opens
    calendar = WeeklyCalendar(ZoneInfo(zone), (Session(days, opens, closes),))
    local = dt.datetime.fromtimestamp(instant, ZoneInfo(zone))
    t = local.time().replace(tzinfo=None)
    expected = (local.weekday() in days and t >= opens) or ((local.weekday() - 1) % 7 in days and t < closes)
    assert calendar.is_open(instant) is expected


def test_a_session_across_the_spring_forward_hour() -> None:
    """London 00:30-02:30 on the Sunday clocks skip 01:00-02:00: open at 00:59 and 02:00 local (00:59 and 01:00
    UTC), shut at 02:30 local (01:30 UTC), one real hour after the open."""
    london = WeeklyCalendar(ZoneInfo("Europe/London"), (Session(frozenset({6}), dt.time(0, 30), dt.time(2, 30)),))
    assert london.is_open(at(2026, 3, 29, 0, 59))
    assert london.is_open(at(2026, 3, 29, 1, 0))
    assert not london.is_open(at(2026, 3, 29, 1, 30))
    assert not london.is_open(at(2026, 3, 29, 0, 29))


def started_with_plane(tmp_path: Path) -> tuple[PlaneMetrics, sessions.SessionGauges]:
    path = tmp_path / "desk.yaml"
    path.write_text(DESK)
    config = TelemetryConfig(metrics_exporters=("prometheus",), catalog_path=str(path))
    metrics = init_metrics_exporter("data_plane", config=config)
    gauges = sessions.running()
    assert gauges is not None
    return metrics, gauges


def test_the_data_plane_starts_the_gauges_of_its_catalog_file(tmp_path: Path) -> None:
    """A data plane whose catalog file declares calendars exports them at once from a running thread, and
    sessions.start returns those gauges; reset() stops the thread."""
    metrics, gauges = started_with_plane(tmp_path)
    assert metrics.exposition is not None
    text = metrics.exposition.render().decode()
    assert 'data_session_open{calendar="BINANCE",service="data_plane"} 1.0' in text
    assert 'data_symbol_calendar{calendar="XNYS",service="data_plane",symbol="AAPL"} 1.0' in text
    assert gauges.running
    assert gauges.metrics is metrics
    assert sessions.start(metrics) is gauges
    assert sessions.start(metrics, sessions.from_file(str(tmp_path / "desk.yaml"))) is gauges
    thread = gauges._thread
    assert thread is not None
    reset()
    assert not thread.is_alive()
    assert sessions.running() is None


def test_only_the_data_plane_of_a_file_with_calendars_starts_gauges(tmp_path: Path) -> None:
    """The order plane starts none, nor does a data plane whose catalog file declares no calendars."""
    path = tmp_path / "desk.yaml"
    path.write_text(DESK)
    init_metrics_exporter("order_plane", config=TelemetryConfig(metrics_exporters=(), catalog_path=str(path)))
    assert sessions.running() is None
    reset()
    path.write_text("label_values: {}\n")
    init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=(), catalog_path=str(path)))
    assert sessions.running() is None


def test_a_start_with_other_arguments_replaces_the_running_gauges(tmp_path: Path) -> None:
    """start() with another clock stops the running gauges and returns new ones, which reset() stops too."""
    metrics, first = started_with_plane(tmp_path)
    second = sessions.start(metrics, clock=lambda: at(2026, 12, 7, 10, zone=NY))
    assert second is not first
    assert sessions.running() is second
    assert not first.running
    assert metrics.exposition is not None
    assert 'data_session_open{calendar="XNYS",service="data_plane"} 1.0' in metrics.exposition.render().decode()
    metrics.shutdown(timeout=5)
    assert not second.running


def test_add_symbol_maps_once_from_any_thread(tmp_path: Path) -> None:
    """add_symbol sets the mapping at once, keeps a symbol's first calendar, takes concurrent calls without loss,
    and refuses an undeclared calendar naming it; remove_symbol retires the series."""
    metrics, gauges = started_with_plane(tmp_path)
    assert gauges.add_symbol("ES", "XNYS")
    assert not gauges.add_symbol("ES", "BINANCE")
    assert not gauges.add_symbol("AAPL", "BINANCE")
    with pytest.raises(ValueError, match="'LSE' is not declared"):
        gauges.add_symbol("VOD", "LSE")
    names = [f"S{i}" for i in range(400)]
    threads = [threading.Thread(target=lambda part=part: [gauges.add_symbol(n, "BINANCE") for n in part])
               for part in (names[::2], names[1::2])]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gauges.refresh()
    assert gauges.symbols == {"AAPL": "XNYS", "BTCUSDT": "BINANCE", "ES": "XNYS"} | dict.fromkeys(names, "BINANCE")
    assert len(metrics.store.series("symbol_calendar")) == 403
    gauges.remove_symbol("ES")
    assert ("ES", "XNYS") not in metrics.store.series("symbol_calendar")
    assert "ES" not in gauges.symbols


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_does_not_inherit_running_gauges(tmp_path: Path) -> None:
    """In a forked child the parent's gauges are forgotten (their thread is not there); the parent's keep running."""
    _, gauges = started_with_plane(tmp_path)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it sees, then leave at once
        try:
            os.write(write, b"%d%d" % (sessions.running() is None, not gauges.running))
        finally:
            os._exit(0)
    os.close(write)
    seen = os.read(read, 2)
    os.close(read)
    os.waitpid(pid, 0)
    assert seen == b"11"
    assert sessions.running() is gauges


def test_any_sequence_of_add_and_remove_symbol_matches_a_dict(tmp_path: Path) -> None:
    """Any sequence of add_symbol and remove_symbol leaves the gauges' symbols and the exported mappings equal to a
    dict that keeps each symbol's first declared calendar."""
    metrics, _ = started_with_plane(tmp_path)
    declared = sessions.from_file(str(tmp_path / "desk.yaml"))
    runs = [0]
    step = st.tuples(st.booleans(), st.sampled_from(["S1", "S2", "S3"]), st.sampled_from(["XNYS", "BINANCE", "LSE"]))

    @settings(max_examples=100, deadline=None, derandomize=True, database=None)
    @given(steps=st.lists(step, max_size=12))
    def check(steps: list[tuple[bool, str, str]]) -> None:
        runs[0] += 1
        prefix = f"r{runs[0]}-"
        gauges = sessions.SessionGauges(metrics, sessions.Sessions(declared.calendars, {}))
        model: dict[str, str] = {}
        for add, name, calendar in steps:
            symbol = prefix + name
            if not add:
                gauges.remove_symbol(symbol)
                model.pop(symbol, None)
            elif calendar not in declared.calendars:
                with pytest.raises(ValueError, match=calendar):
                    gauges.add_symbol(symbol, calendar)
            else:
                assert gauges.add_symbol(symbol, calendar) == (symbol not in model)
                model.setdefault(symbol, calendar)
        gauges.refresh()
        assert gauges.symbols == model
        exported = {s: c for s, c in metrics.store.series("symbol_calendar") if s.startswith(prefix)}
        assert exported == model

    check()
