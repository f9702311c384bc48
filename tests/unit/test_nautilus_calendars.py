"""The NautilusTrader actor maps each instrument it records to the desk's calendar of its venue: the one its
configuration names for the venue, else the one named like the venue; a calendar the desk does not declare is
refused at start, naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nautilus_trader.model.data import InstrumentClose
from nautilus_trader.model.enums import InstrumentCloseType
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.objects import Price

from trading_telemetry import ConfigError, TelemetryConfig, reset, sessions
from trading_telemetry.integrations.nautilus import BACKTEST_NAMESPACE, TelemetryActor, TelemetryActorConfig
from trading_telemetry.integrations.nautilus_example import SYMBOLS, build_engine
from trading_telemetry.testing import TelemetryCapture

DESK = """\
calendars:
  XNYS:
    timezone: America/New_York
    sessions: [{days: [mon, tue, wed, thu, fri], open: "09:30", close: "16:00"}]
  SIM: "24/7"
symbols: {AAPL: XNYS}
"""
INSTRUMENTS = {f"{symbol}.SIM" for symbol in SYMBOLS}


def run(tmp_path: Path, venue_calendars: dict[str, str] | None, desk: str = DESK) -> tuple[Any, Any]:
    """A short backtest of the example engine (venue SIM) with an actor configured with ``venue_calendars``."""
    path = tmp_path / "desk.yaml"
    path.write_text(desk)
    config = TelemetryConfig(metrics_exporters=(), traces_exporters=(), catalog_path=str(path),
                             resource_attributes={"service.namespace": BACKTEST_NAMESPACE})  # fmt: skip
    TelemetryCapture(config).start()
    engine, _ = build_engine(60, seed=1, telemetry=False)
    actor = TelemetryActor(TelemetryActorConfig(venue_calendars=venue_calendars))
    engine.add_actor(actor)
    return engine, actor


def mapped(calendar: str) -> set[str]:
    gauges = sessions.running()
    assert gauges is not None
    return {symbol for symbol, name in gauges.symbols.items() if name == calendar}


@pytest.mark.parametrize(("venue_calendars", "calendar"), [({"SIM": "XNYS"}, "XNYS"), (None, "SIM")])
def test_each_recorded_instrument_gets_its_venues_calendar(
    tmp_path: Path, venue_calendars: dict[str, str] | None, calendar: str
) -> None:
    """After a backtest, data_symbol_calendar holds every instrument of venue SIM under the configured calendar, or
    under the calendar named SIM when none is configured; the catalog file's own symbols stay."""
    engine, _ = run(tmp_path, venue_calendars)
    try:
        engine.run()
        assert mapped(calendar) >= INSTRUMENTS
        assert mapped("XNYS" if calendar == "SIM" else "SIM").isdisjoint(INSTRUMENTS)
        gauges = sessions.running()
        assert gauges is not None
        series = gauges.metrics.store.series("symbol_calendar")
        assert {(symbol, calendar) for symbol in INSTRUMENTS} <= set(series)
        assert ("AAPL", "XNYS") in series
    finally:
        engine.dispose()
        reset()


def test_a_venue_named_like_no_calendar_is_not_mapped(tmp_path: Path) -> None:
    """Without a SIM calendar or a mapping for SIM, the instruments of venue SIM get no calendar."""
    engine, _ = run(tmp_path, None, DESK.replace('  SIM: "24/7"\n', ""))
    try:
        engine.run()
        gauges = sessions.running()
        assert gauges is not None
        assert gauges.symbols == {"AAPL": "XNYS"}
    finally:
        engine.dispose()
        reset()


def test_an_undeclared_calendar_is_refused_at_start_naming_it(tmp_path: Path) -> None:
    """venue_calendars naming a calendar the catalog file does not declare stops the engine's start with a
    ConfigError naming the venue, the calendar and the declared ones."""
    engine, _ = run(tmp_path, {"SIM": "XLON"})
    try:
        with pytest.raises(ConfigError, match=r"venue_calendars\['SIM'\]='XLON'.*declared: SIM, XNYS"):
            engine.run()
    finally:
        engine.dispose()
        reset()


def test_venue_calendars_must_be_names() -> None:
    """A venue_calendars that is not a dict of names is refused when the actor is made, naming the entry."""
    with pytest.raises(ConfigError, match=r"venue_calendars\['SIM'\]"):
        TelemetryActor(TelemetryActorConfig(venue_calendars={"SIM": 3}))  # type: ignore[dict-item]


def test_an_expired_contract_loses_its_calendar(tmp_path: Path) -> None:
    """An InstrumentClose of type CONTRACT_EXPIRED takes the instrument out of the session gauges: its
    data_symbol_calendar series is gone and a refresh does not bring it back; the other instruments keep theirs."""
    engine, _ = run(tmp_path, {"SIM": "XNYS"})
    try:
        engine.run(streaming=True)
        gauges = sessions.running()
        assert gauges is not None
        iid = engine.cache.instrument(InstrumentId.from_str("EUR/USD.SIM")).id
        last = max(d.ts_init for d in engine.data)
        engine.clear_data()
        engine.add_data([InstrumentClose(iid, Price.from_str("1.10000"), InstrumentCloseType.CONTRACT_EXPIRED,
                                         last + 1, last + 1)])  # fmt: skip
        engine.run(streaming=True)
        gauges.refresh()
        assert mapped("XNYS") == {"AAPL"} | INSTRUMENTS - {"EUR/USD.SIM"}
        assert ("EUR/USD.SIM", "XNYS") not in gauges.metrics.store.series("symbol_calendar")
    finally:
        engine.dispose()
        reset()
