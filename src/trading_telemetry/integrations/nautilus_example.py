"""A NautilusTrader backtest on synthetic quotes, with :class:`TelemetryActor` added,
and our counters set beside the engine's own books.

Run it::

    python -m trading_telemetry.integrations.nautilus_example --quotes 5000

Three FX pairs on a simulated venue; two strategies send market orders (larger than the
top of book, so they fill in pieces), passive GTD limit orders (filled, partially filled,
canceled or expired), post-only limit orders that would take (rejected by the venue) and
orders over the instrument's maximum size or already past their expiry (denied by the
risk engine). The same seed gives the same session.
"""

from __future__ import annotations

import argparse
import math
import random
from decimal import Decimal
from typing import Any

import pandas as pd
from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
from nautilus_trader.config import LoggingConfig, StrategyConfig
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import BarType, QuoteTick, TradeTick
from nautilus_trader.model.enums import AccountType, AggressorSide, OmsType, OrderSide, TimeInForce
from nautilus_trader.model.events import OrderFilled, OrderSubmitted
from nautilus_trader.model.identifiers import TradeId, Venue
from nautilus_trader.model.objects import Money
from nautilus_trader.test_kit.providers import TestInstrumentProvider
from nautilus_trader.trading.strategy import Strategy

from trading_telemetry.integrations.nautilus import TelemetryActor, TelemetryActorConfig

__all__ = ["MixConfig", "MixStrategy", "books", "build_engine", "ours", "synthetic_quotes"]

VENUE = Venue("SIM")
SYMBOLS = ("EUR/USD", "GBP/USD", "AUD/USD")
START = (1.10, 1.27, 0.66)
T0 = 1_700_000_000_000_000_000  # 2023-11-14, in UNIX nanoseconds


class MixConfig(StrategyConfig, frozen=True, kw_only=True):
    """``every_quote``: send an order on every quote (the overhead benchmark's load)."""

    seed: int = 7
    every_quote: bool = False


class MixStrategy(Strategy):  # type: ignore[misc]
    """Market, passive GTD limit, post-only and oversize orders, and cancels, drawn per quote."""

    def __init__(self, config: MixConfig) -> None:
        super().__init__(config)
        self.rng = random.Random(config.seed)
        self.every_quote = config.every_quote
        self.bars = 0

    def on_start(self) -> None:
        for symbol in SYMBOLS:
            self.subscribe_quote_ticks(TestInstrumentProvider.default_fx_ccy(symbol, VENUE).id)
            self.subscribe_bars(BarType.from_str(f"{symbol}.SIM-1-MINUTE-MID-INTERNAL"))

    def on_bar(self, bar: Any) -> None:
        self.bars += 1

    def on_quote_tick(self, tick: QuoteTick) -> None:
        rng = self.rng
        r = rng.random()
        if self.every_quote:
            r = r * 0.16
        instrument = self.cache.instrument(tick.instrument_id)
        side = OrderSide.BUY if rng.random() < 0.5 else OrderSide.SELL
        buy = side == OrderSide.BUY
        factory = self.order_factory
        iid = tick.instrument_id
        if r < 0.04:  # market, often larger than the top of book: several fills
            self.submit_order(factory.market(iid, side, instrument.make_qty(rng.choice((1, 3, 6)) * 100_000)))
        elif r < 0.08:  # passive limit, good for 3 s: fills, fills in part, or expires
            price = tick.bid_price if buy else tick.ask_price
            expire = self.clock.utc_now() + pd.Timedelta(seconds=3)
            qty = instrument.make_qty(rng.choice((1, 2, 4, 10)) * 100_000)
            self.submit_order(factory.limit(iid, side, qty, price, time_in_force=TimeInForce.GTD, expire_time=expire))
        elif r < 0.10:  # post-only at the far touch: the venue rejects it
            price = tick.ask_price if buy else tick.bid_price
            self.submit_order(factory.limit(iid, side, instrument.make_qty(100_000), price, post_only=True))
        elif r < 0.105:  # over the instrument's maximum quantity: denied
            self.submit_order(factory.market(iid, side, instrument.make_qty(20_000_000)))
        elif r < 0.11:  # good till a time already past: denied
            price = tick.bid_price if buy else tick.ask_price
            past = self.clock.utc_now() - pd.Timedelta(seconds=1)
            qty = instrument.make_qty(100_000)
            self.submit_order(factory.limit(iid, side, qty, price, time_in_force=TimeInForce.GTD, expire_time=past))
        elif r < 0.16:  # cancel the oldest open order
            for order in self.cache.orders_open(instrument_id=iid)[:1]:
                self.cancel_order(order)

    def on_stop(self) -> None:
        for symbol in SYMBOLS:
            self.cancel_all_orders(TestInstrumentProvider.default_fx_ccy(symbol, VENUE).id)


def synthetic_quotes(instrument: Any, start: float, n: int, seed: int) -> list[QuoteTick | TradeTick]:
    """``n`` quotes of a random-walk mid, a 1-pip spread and top-of-book sizes of 100k-500k,
    100 ms apart, and a trade at the mid after every tenth quote."""
    rng = random.Random(seed)
    mid, data = start, []
    for k in range(n):
        mid = max(0.1, mid + rng.gauss(0.0, 0.0001))
        ts = T0 + k * 100_000_000 + rng.randrange(1000)
        bid, ask = instrument.make_price(mid - 0.00005), instrument.make_price(mid + 0.00005)
        sizes = [instrument.make_qty(rng.choice((100_000, 200_000, 500_000))) for _ in range(2)]
        data.append(QuoteTick(instrument.id, bid, ask, sizes[0], sizes[1], ts, ts))
        if k % 10 == 9:
            data.append(TradeTick(instrument.id, instrument.make_price(mid), instrument.make_qty(100_000),
                                  AggressorSide.BUYER, TradeId(f"T{k}"), ts + 1, ts + 1))  # fmt: skip
    return data


def build_engine(
    quotes: int, *, seed: int = 1, telemetry: bool = True, every_quote: bool = False
) -> tuple[BacktestEngine, TelemetryActor | None]:
    """The engine with its venue, instruments, data and two strategies (and the actor)."""
    engine = BacktestEngine(BacktestEngineConfig(logging=LoggingConfig(bypass_logging=True)))
    engine.add_venue(VENUE, OmsType.NETTING, AccountType.MARGIN, [Money(10_000_000, USD)], base_currency=USD,
                     default_leverage=Decimal(50))  # fmt: skip
    for i, (symbol, start) in enumerate(zip(SYMBOLS, START, strict=True)):
        instrument = TestInstrumentProvider.default_fx_ccy(symbol, VENUE)
        engine.add_instrument(instrument)
        engine.add_data(synthetic_quotes(instrument, start, quotes, seed * 100 + i))
    for k in range(2):
        engine.add_strategy(MixStrategy(MixConfig(strategy_id=f"MIX-00{k + 1}", seed=seed * 10 + k,
                                                  every_quote=every_quote)))  # fmt: skip
    actor = None
    if telemetry:
        actor = TelemetryActor(TelemetryActorConfig(portfolio_interval_secs=1.0))
        engine.add_actor(actor)
    return engine, actor


def books(engine: BacktestEngine) -> dict[str, float]:
    """The engine's own counts and sums: its orders, their events, and the account's
    ledger (realized PnL net of commissions is what moved the margin account's balance)."""
    orders = engine.cache.orders()
    status = [o.status_string() for o in orders]
    events = [e for o in orders for e in o.events]
    fills = [e for e in events if isinstance(e, OrderFilled)]
    return {
        "quotes and trades received": engine.iteration,
        "1-minute bars": min(s.bars for s in engine.trader.strategies()),
        "orders submitted": sum(any(isinstance(e, OrderSubmitted) for e in o.events) for o in orders),
        "orders filled": status.count("FILLED"),
        "orders ended partially filled": sum(
            o.status_string() in ("CANCELED", "EXPIRED", "REJECTED") and o.filled_qty.as_double() > 0 for o in orders
        ),
        "orders canceled": status.count("CANCELED"),
        "orders expired": status.count("EXPIRED"),
        "orders rejected (venue)": status.count("REJECTED"),
        "orders denied (risk)": status.count("DENIED"),
        "fill events": len(fills),
        "commission (USD)": round(sum(f.commission.as_double() for f in fills), 2),
        "realized PnL (USD)": round(
            sum(
                a.balance_total(USD).as_double() - a.starting_balances()[USD].as_double()
                for a in engine.cache.accounts()
            ),
            2,
        ),
    }


def _balance_change(account: Any) -> float:
    return float(account.balance_total(USD).as_double() - account.starting_balances()[USD].as_double())


def ours(capture: Any, actor: TelemetryActor) -> dict[str, float]:
    """The same figures from our metrics (a :class:`~trading_telemetry.testing.TelemetryCapture`)."""
    strategies = sorted(actor.strategies)
    realized = [capture.gauge("pnl_realized_usd", strategy=s) or 0.0 for s in strategies]
    return {
        "quotes and trades received": int(capture.total("ticks_received")),
        "1-minute bars": int(capture.total("bars_received", duration="1m")),
        "orders submitted": int(capture.total("orders_submitted")),
        "orders filled": int(capture.total("orders_filled", status="FILLED")),
        "orders ended partially filled": int(capture.total("orders_filled", status="PARTIAL_FILL")),
        "orders canceled": int(capture.total("orders_canceled")),
        "orders expired": int(capture.total("orders_expired")),
        "orders rejected (venue)": int(capture.total("orders_rejected")),
        "orders denied (risk)": int(capture.total("risk_rejections")),
        "fill events": capture.observations("slippage_bps"),
        "commission (USD)": round(capture.total("commission_usd"), 2),
        "realized PnL (USD)": round(math.fsum(realized), 2),
    }


def main() -> None:
    from trading_telemetry import TelemetryConfig
    from trading_telemetry.testing import TelemetryCapture

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quotes", type=int, default=5000, help="quotes per instrument (default 5000)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    capture = TelemetryCapture(TelemetryConfig(metrics_exporters=(), traces_exporters=(),
                                               resource_attributes={"service.namespace": "backtest"}))  # fmt: skip
    capture.start()
    engine, actor = build_engine(args.quotes, seed=args.seed)
    engine.run()
    assert actor is not None
    theirs, mine = books(engine), ours(capture, actor)
    print(f"{'':32} {'engine':>14} {'trading-telemetry':>18}")
    for key, value in theirs.items():
        print(f"{key:32} {value:>14,} {mine[key]:>18,}  {'ok' if value == mine[key] else 'DIFFERENT'}")
    engine.dispose()


if __name__ == "__main__":
    main()
