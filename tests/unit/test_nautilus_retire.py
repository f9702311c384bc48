"""The NautilusTrader actor retires series: a strategy stopped while the engine runs loses its PnL
gauges, and an instrument whose contract expired loses its series on every plane."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from nautilus_trader.model.data import InstrumentClose, QuoteTick
from nautilus_trader.model.enums import InstrumentCloseType, OrderSide
from nautilus_trader.model.identifiers import StrategyId
from nautilus_trader.model.objects import Price
from nautilus_trader.trading.strategy import Strategy, StrategyConfig

from trading_telemetry import PlaneMetrics, TelemetryConfig, _state, reset
from trading_telemetry.catalog import Plane
from trading_telemetry.integrations.nautilus import BACKTEST_NAMESPACE
from trading_telemetry.integrations.nautilus_example import build_engine
from trading_telemetry.testing import TelemetryCapture

PNL = ("pnl_realized_usd", "pnl_unrealized_usd", "pnl_total_usd")


class RoundTrip(Strategy):  # type: ignore[misc]
    """Buys the first instrument at its 5th quote and sells it back at its 50th: flat again."""

    def __init__(self) -> None:
        super().__init__(StrategyConfig(strategy_id="TRIP"))
        self.quotes = 0

    def on_start(self) -> None:
        self.subscribe_quote_ticks(self.cache.instruments()[0].id)

    def on_quote_tick(self, tick: QuoteTick) -> None:
        self.quotes += 1
        if self.quotes in (5, 50):
            side = OrderSide.BUY if self.quotes == 5 else OrderSide.SELL
            instrument = self.cache.instrument(tick.instrument_id)
            self.submit_order(self.order_factory.market(tick.instrument_id, side, instrument.make_qty(100_000)))


@pytest.fixture
def engine() -> Iterator[tuple[Any, Any]]:
    """A backtest engine with the actor, two mixed strategies and the round trip, run in streaming mode."""
    reset()
    config = TelemetryConfig(metrics_exporters=(), traces_exporters=(),
                             resource_attributes={"service.namespace": BACKTEST_NAMESPACE})  # fmt: skip
    TelemetryCapture(config).start()
    engine, actor = build_engine(300, seed=1)
    engine.add_strategy(RoundTrip())
    try:
        engine.run(streaming=True)
        yield engine, actor
    finally:
        engine.dispose()
        reset()


def pnl_series(m: PlaneMetrics, strategy: str) -> list[str]:
    return [key for key in PNL if (strategy,) in m.store.series(key)]


def symbol_series(m: PlaneMetrics, symbol: str) -> list[str]:
    return [key for key, s in m.store.specs.items() if "symbol" in s.labels
            and any(values[s.labels.index("symbol")] == symbol for values in m.store.series(key))]  # fmt: skip


def test_a_strategy_stopped_while_the_engine_runs_has_its_pnl_gauges_retired(engine: tuple[Any, Any]) -> None:
    """A flat strategy stopped mid-run loses its PnL gauges, and the actor's stop does not bring them back;
    a strategy with open positions keeps them."""
    engine_, actor = engine
    trip = next(s.id for s in engine_.trader.strategies() if isinstance(s, RoundTrip))
    strategy = _state.get_metrics(Plane.STRATEGY)
    actor.record_portfolio()
    assert pnl_series(strategy, trip.value) == list(PNL)
    assert pnl_series(strategy, "MIX-000") == list(PNL)
    engine_.trader.stop_strategy(trip)
    engine_.trader.stop_strategy(StrategyId("MIX-000"))  # open positions: its PnL still moves
    assert pnl_series(strategy, trip.value) == []
    assert pnl_series(strategy, "MIX-000") == list(PNL)
    engine_.end()
    assert pnl_series(strategy, trip.value) == []
    assert pnl_series(strategy, "MIX-001") == list(PNL)  # the engine's own stop retires nothing
    assert ("pnl_total_usd", "retired") not in strategy.policy.counts()


def test_an_expired_contract_has_its_series_retired_on_every_plane(engine: tuple[Any, Any]) -> None:
    """An InstrumentClose of type CONTRACT_EXPIRED removes the instrument's series from every plane."""
    engine_, _ = engine
    iid = engine_.cache.instrument(engine_.cache.instruments()[0].id).id
    data, order = _state.get_metrics(Plane.DATA), _state.get_metrics(Plane.ORDER)
    assert symbol_series(order, iid.value)
    assert symbol_series(data, iid.value)
    last = max(d.ts_init for d in engine_.data)
    engine_.clear_data()
    closed = InstrumentClose(iid, Price.from_str("1.10000"), InstrumentCloseType.CONTRACT_EXPIRED, last + 1, last + 1)
    engine_.add_data([closed])
    engine_.run(streaming=True)
    assert symbol_series(data, iid.value) == []
    assert symbol_series(order, iid.value) == []
    assert symbol_series(order, "GBP/USD.SIM")
