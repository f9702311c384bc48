"""TelemetryActor in every backtest shape a desk runs: one small real BacktestEngine per
shape, the actor's figures against the engine's own books (tests/nautilus_shapes.py)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from nautilus_trader.model.enums import OmsType
from nautilus_trader.model.events import OrderEmulated, OrderReleased, OrderUpdated
from nautilus_trader.model.identifiers import Venue

import nautilus_shapes as shapes
from nautilus_shapes import Figures, Scenario, actor_figures, differences, drops, engine_books, engine_cross_checks
from trading_telemetry import TelemetryConfig, reset
from trading_telemetry.testing import TelemetryCapture

MONEY_GAUGES = ("pnl_realized_usd", "pnl_unrealized_usd", "pnl_total_usd", "portfolio_gross_exposure_usd",
                "portfolio_net_exposure_usd", "portfolio_value_usd")  # fmt: skip
USDT = {"USDT": 1.0}


def fresh_capture() -> TelemetryCapture:
    """Every plane capturing into memory, production mode (bad input dropped and counted)."""
    reset()
    config = TelemetryConfig(metrics_exporters=(), traces_exporters=(),
                             resource_attributes={"service.namespace": "backtest"})  # fmt: skip
    capture = TelemetryCapture(config)
    capture.start()
    return capture


@pytest.fixture
def capture() -> Iterator[TelemetryCapture]:
    yield fresh_capture()
    reset()


def run(capture: TelemetryCapture, s: Scenario, check: Callable[[Scenario], None] | None = None) -> tuple[
        Figures, Figures]:  # fmt: skip
    """Run the backtest; the engine's books and our figures (``check``: what the shape must
    have exercised, asserted on the engine before it is disposed)."""
    try:
        s.run()
        if check is not None:
            check(s)
        expected = engine_books(s)
        check_reference(s)
        return expected, actor_figures(capture, expected)
    finally:
        s.engine.dispose()


def check_reference(s: Scenario) -> None:
    """The reference agrees with the engine's own aggregates where it has them: the realized
    changes with the margin accounts' ledgers, unrealized PnL and exposure per instrument."""
    for key, (ours, engine) in engine_cross_checks(s).items():
        assert math.isclose(ours, engine, rel_tol=1e-9, abs_tol=0.02), f"reference {key}: {ours} vs engine {engine}"


def assert_same(expected: Figures, got: Figures) -> None:
    wrong = differences(expected, got)
    assert not wrong, "the actor's figures differ from the engine's books:\n  " + "\n  ".join(wrong)


def assert_exercised(expected: Figures, *keys: str) -> None:
    """Each named figure is nonzero in the engine's books: its equality could fail."""
    for key in keys:
        matching = [k for k in expected.values if k == key or k.startswith(key + "[")]
        assert matching, f"no figure {key}"
        for k in matching:
            assert expected.values[k], f"{k} is {expected.values[k]} in the engine's books: nothing to compare"


COUNTS = ("ticks_received", "orders_received", "orders_submitted", "orders_filled[FILLED]", "orders_canceled",
          "orders_rejected", "risk_rejections", "fills")  # fmt: skip
MONEY = ("slippage_bps_sum", "commission_usd", "pnl_realized_usd", "pnl_unrealized_usd", "portfolio_gross_exposure_usd",
         "portfolio_value_usd")  # fmt: skip


def test_quotes_only_fx_margin(capture: TelemetryCapture) -> None:
    """FX quotes on a USD margin account: every count and money figure equals the engine's books, no drops."""
    expected, got = run(capture, shapes.quotes_only())
    assert_exercised(expected, *COUNTS, *MONEY, "orders_filled[PARTIAL_FILL]", "orders_expired")
    assert_same(expected, got)
    assert drops() == {}


def test_trades_only(capture: TelemetryCapture) -> None:
    """Trades only (the venue executes on trades): arrival and marks are the last trade; figures equal the books."""
    expected, got = run(capture, shapes.trades_only())
    assert_exercised(expected, *COUNTS, *MONEY, "orders_filled[PARTIAL_FILL]", "orders_expired")
    assert_same(expected, got)
    assert drops() == {}


def test_bars_only(capture: TelemetryCapture) -> None:
    """1-minute BID and ASK external bars only (the venue executes on bars): bars counted by
    duration, arrival the bid/ask bar mid, marks the bar closes; figures equal the books."""
    expected, got = run(capture, shapes.bars_only())
    assert_exercised(expected, "bars_received", *COUNTS[1:], *MONEY, "orders_filled[PARTIAL_FILL]", "orders_expired")
    assert_same(expected, got)
    assert drops() == {}


def test_order_book_only(capture: TelemetryCapture) -> None:
    """L2 order book deltas only: the engine's Portfolio has no price (no quote, trade or bar:
    no unrealized PnL, no exposure), the actor marks at the book's best bid/ask and measures
    arrival at the book's mid; figures equal the books."""

    def engine_has_no_mark(s: Scenario) -> None:
        assert s.engine.cache.positions_open()
        assert s.engine.portfolio.unrealized_pnls(shapes.SIM) == {}
        assert s.engine.portfolio.net_exposures(shapes.SIM) == {}

    expected, got = run(capture, shapes.book_only(), engine_has_no_mark)
    assert_exercised(expected, *COUNTS[1:], *MONEY, "orders_filled[PARTIAL_FILL]", "orders_expired")
    assert not any(k.startswith("ticks_received") for k in expected.values)  # deltas are not ticks
    assert_same(expected, got)
    assert drops() == {}


def test_mixed_quotes_trades_bars(capture: TelemetryCapture) -> None:
    """Quotes, trades and bars together: ticks are quotes plus trades, bars counted, figures equal the books."""
    expected, got = run(capture, shapes.mixed())
    assert_exercised(expected, *COUNTS, "bars_received", *MONEY, "orders_filled[PARTIAL_FILL]", "orders_expired")
    assert_same(expected, got)
    assert drops() == {}


def test_multi_currency_margin_account(capture: TelemetryCapture) -> None:
    """A margin account without a base currency (USD and JPY balances): USD/JPY's PnL and
    commission arrive in JPY and are converted at the USD/JPY mid of their time; the JPY
    balance counts in the portfolio value."""
    s = shapes.multi_currency()
    expected, got = run(capture, s)
    assert_exercised(expected, *COUNTS, *MONEY)
    assert_same(expected, got)
    assert drops() == {}


def test_cash_account_equities(capture: TelemetryCapture) -> None:
    """AAPL on a cash account: buys and sells; the holding's market value counts in the
    portfolio value (it is not a balance); commission a dollar a fill."""
    expected, got = run(capture, shapes.cash_equity())
    assert_exercised(expected, *COUNTS[:3], "fills", *MONEY)
    assert_same(expected, got)
    assert drops() == {}


def test_crypto_perpetual_usdt_margin(capture: TelemetryCapture) -> None:
    """BTCUSDT-PERP on a USDT margin account with usd_rates={"USDT": 1.0}: every figure equals the books."""
    expected, got = run(capture, shapes.crypto_perp(usd_rates=USDT))
    assert_exercised(expected, *COUNTS, *MONEY)
    assert_same(expected, got)
    assert drops() == {}


def test_crypto_spot_cash_account(capture: TelemetryCapture) -> None:
    """BTCUSDT spot on a cash account with BTC and USDT balances: BTC is valued through the
    BTC/USDT mid times the configured USDT rate; the position is not counted twice."""
    expected, got = run(capture, shapes.crypto_spot(usd_rates=USDT))
    assert_exercised(expected, *COUNTS[:3], "fills", *MONEY)
    assert_same(expected, got)
    assert drops() == {}


def test_perpetual_without_usd_rates_counts_drops_and_sets_no_money_gauge(capture: TelemetryCapture) -> None:
    """Without usd_rates nothing converts USDT: each fill's commission is a no_rate drop, every
    money gauge is left unset (never a wrong value) and counted as no_rate; counts still equal."""
    expected, got = run(capture, shapes.crypto_perp())
    assert all(expected.values[k] is None for k in expected.values if k.startswith(MONEY_GAUGES))
    assert expected.values["drops[commission_usd,no_rate]"] == expected.values["fills"] > 0
    assert_same(expected, got)
    counted = drops()
    for gauge in MONEY_GAUGES:
        assert counted.get((gauge, "no_rate"), 0) > 0, f"{gauge}: no no_rate drop counted; drops {counted}"
    assert {reason for _, reason in counted} == {"no_rate"}, counted


def test_hedging_several_positions_per_instrument(capture: TelemetryCapture) -> None:
    """OmsType.HEDGING: a position per entry, long and short together on one instrument; each
    is marked on its own side (the engine's Portfolio marks them all at the first one's price)."""

    def long_and_short(s: Scenario) -> None:
        sides: dict[str, set[str]] = {}
        for p in s.engine.cache.positions_open():
            sides.setdefault(p.instrument_id.value, set()).add(p.side.name)
        assert any(len(both) == 2 for both in sides.values()), sides
        assert len(s.engine.cache.positions_open()) > 10

    expected, got = run(capture, shapes.quotes_only(oms=OmsType.HEDGING), long_and_short)
    assert_exercised(expected, *COUNTS, *MONEY)
    assert_same(expected, got)
    assert drops() == {}


def test_emulated_and_contingent_orders(capture: TelemetryCapture) -> None:
    """Emulated stop-markets (released as MARKET: counted once, as STOP), brackets (OTO
    entry, OUO/OCO children), amends and expiring GTD limits: figures equal the books."""

    def exercised(s: Scenario) -> None:
        events = [type(e) for o in s.engine.cache.orders() for e in o.events]
        for kind in (OrderEmulated, OrderReleased, OrderUpdated):
            assert events.count(kind) > 10, kind.__name__
        assert {"OTO", "OUO", "OCO"} <= {o.contingency_type.name for o in s.engine.cache.orders()}

    expected, got = run(capture, shapes.contingent(), exercised)
    assert_exercised(expected, *COUNTS, *MONEY, "orders_received[STOP]", "orders_expired")
    assert_same(expected, got)
    assert drops() == {}


def test_positions_flattened_in_on_stop(capture: TelemetryCapture) -> None:
    """Strategies that cancel and close everything in their own on_stop (after the actor
    stopped): the final gauges are the engine's final state, realized PnL including the
    flattening, unrealized PnL and exposures zero."""

    def flattened_at_the_end(s: Scenario) -> None:
        closes = [o for o in s.engine.cache.orders() if o.is_reduce_only and o.ts_init == s.feed.end]
        assert len(closes) >= 2
        assert all(o.status_string() == "FILLED" for o in closes)
        assert not s.engine.cache.positions_open()

    expected, got = run(capture, shapes.quotes_only(flatten=True), flattened_at_the_end)
    for key in ("portfolio_gross_exposure_usd", "portfolio_net_exposure_usd"):
        assert expected.values[key] == 0.0
    assert all(v == 0.0 for k, v in expected.values.items() if k.startswith("pnl_unrealized_usd"))
    assert_exercised(expected, *COUNTS, "pnl_realized_usd", "commission_usd", "portfolio_value_usd")
    assert_same(expected, got)
    assert drops() == {}


def test_reset_then_a_second_run(capture: TelemetryCapture) -> None:
    """engine.reset() and a second run: the gauges equal the second run's books, and each
    counter's increase over the second run equals the second run's books."""
    s = shapes.quotes_only()
    try:
        s.run()
        first_books = engine_books(s)
        first = actor_figures(capture, first_books)
        assert_same(first_books, first)
        instruments = s.engine.cache.instruments()
        s.engine.reset()
        for instrument in instruments:  # NautilusTrader 1.220's reset empties the cache's instruments; 1.221 keeps them
            if s.engine.cache.instrument(instrument.id) is None:
                s.engine.cache.add_instrument(instrument)
        s.run()
        expected = engine_books(s)
        check_reference(s)
        after = actor_figures(capture, expected)
    finally:
        s.engine.dispose()
    got = Figures({k: increase(k, first.values.get(k), v) for k, v in after.values.items()})
    assert expected.values["orders_received"] != first_books.values["orders_received"]  # a different session
    assert_exercised(expected, *COUNTS, *MONEY)
    assert_same(expected, got)
    assert drops() == {}


def increase(key: str, before: float | None, after: float | None) -> float | None:
    """A counter's (or histogram's) increase; a gauge's value after."""
    if key.startswith(MONEY_GAUGES) or after is None:
        return after
    return after - (before or 0.0)


def test_two_venues(capture: TelemetryCapture) -> None:
    """Two venues, two accounts: a strategy on each and one trading both; the portfolio
    gauges sum both accounts, PnL is per strategy across venues."""

    def both_traded(s: Scenario) -> None:
        traded = {o.instrument_id.venue for o in s.engine.cache.orders() if o.filled_qty.as_double() > 0}
        assert traded == {Venue("SIM"), Venue("SIM2")}

    expected, got = run(capture, shapes.two_venues(), both_traded)
    assert_exercised(expected, *COUNTS, *MONEY)
    assert_same(expected, got)
    assert drops() == {}


def test_busy_feed_slippage_from_the_arrival_mid(capture: TelemetryCapture) -> None:
    """2,500 quotes a simulated second: every fill's slippage is measured from the mid at its
    order's creation (the sum and count equal the reference), not a later quote."""
    expected, got = run(capture, shapes.busy_feed())
    assert expected.values["ticks_received[SIM|EUR/USD.SIM]"] == 7500
    assert_exercised(expected, *COUNTS, *MONEY)
    assert_same(expected, got)
    assert drops() == {}


def test_an_order_before_any_price_drops_its_slippage(capture: TelemetryCapture) -> None:
    """A market order sent on start, before any data: its fill is counted, its slippage is a
    no_arrival_price drop; everything else equals the books."""
    expected, got = run(capture, shapes.quotes_only(opening=True))
    assert expected.values["drops[slippage_bps,no_arrival_price]"] > 0
    assert_same(expected, got)
    assert drops() == {("slippage_bps", "no_arrival_price"): expected.values["drops[slippage_bps,no_arrival_price]"]}


# No shrinking: each example is a backtest; the failing example's seed and shape are reported.
@settings(max_examples=10, derandomize=True, database=None, deadline=None, phases=(Phase.explicit, Phase.generate))
@given(shape=st.sampled_from(sorted(shapes.SHAPES)), seed=st.integers(min_value=2, max_value=10_000))
def test_any_session_of_any_data_shape_equals_the_books(shape: str, seed: int) -> None:
    """Whatever the seed (the data and the strategies' draws), each data shape's figures equal the books."""
    capture = fresh_capture()
    try:
        expected, got = run(capture, shapes.SHAPES[shape](seed=seed))
        assert_same(expected, got)
        assert drops() == {}
    finally:
        reset()
