"""Backtest shapes a desk runs, each one small real NautilusTrader ``BacktestEngine`` with
:class:`TelemetryActor`, and the figures the actor must report computed from the engine's
own books.

A scenario builder (``quotes_only``, ``trades_only``, ... ; :data:`SHAPES` lists the data
shapes the overhead benchmark uses) makes the engine: venue(s), instruments, deterministic
synthetic data from a seed, and :class:`ShapeStrategy` instances that send market, limit
(GTD), post-only, emulated stop, bracket and amended orders, cancel, and close positions,
on whatever data the shape has. It returns a :class:`Scenario`: the engine, the actor (or
None) and a :class:`Feed`, the record of the data fed to the engine.

:func:`engine_books` computes every figure of the actor's contract from the engine's own
books; :func:`actor_figures` reads the same figures from our metrics; :func:`differences`
lists where they disagree (counts exactly, money within 0.05 %).
"""

from __future__ import annotations

import bisect
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pandas as pd
from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
from nautilus_trader.backtest.models import FixedFeeModel
from nautilus_trader.config import LoggingConfig, StrategyConfig
from nautilus_trader.model.book import OrderBook
from nautilus_trader.model.currencies import BTC, JPY, USD, USDT
from nautilus_trader.model.data import (
    Bar,
    BarType,
    BookOrder,
    OrderBookDelta,
    OrderBookDeltas,
    QuoteTick,
    TradeTick,
)
from nautilus_trader.model.enums import (
    AccountType,
    AggressorSide,
    BarAggregation,
    BookAction,
    BookType,
    ContingencyType,
    OmsType,
    OrderSide,
    OrderStatus,
    OrderType,
    PositionSide,
    PriceType,
    RecordFlag,
    TimeInForce,
    TriggerType,
)
from nautilus_trader.model.events import OrderFilled, OrderInitialized, OrderSubmitted
from nautilus_trader.model.identifiers import AccountId, InstrumentId, PositionId, TradeId, Venue
from nautilus_trader.model.instruments import CryptoPerpetual, CurrencyPair, Instrument
from nautilus_trader.model.objects import Currency, Money, Price, Quantity
from nautilus_trader.model.position import Position
from nautilus_trader.test_kit.providers import TestInstrumentProvider
from nautilus_trader.trading.strategy import Strategy

from trading_telemetry import _state
from trading_telemetry.catalog import Plane, lookup
from trading_telemetry.integrations.nautilus import TelemetryActor, TelemetryActorConfig

if TYPE_CHECKING:
    from trading_telemetry.testing import TelemetryCapture

T0 = 1_700_000_000_000_000_000  # 2023-11-14, UNIX nanoseconds
SECOND = 1_000_000_000
MINUTE = 60 * SECOND
REL_TOL = 5e-4
"""Money converted at a mid: within 0.05 % (the contract's tolerance)."""

SIM = Venue("SIM")

# -- Synthetic data ------------------------------------------------------------------------


@dataclass(frozen=True)
class Market:
    """One instrument's synthetic market: a random-walk mid from ``start`` (``drift`` and
    ``vol``, relative, per step), a spread of ``spread_ticks`` price increments, sizes in
    multiples of ``unit``."""

    instrument: Instrument
    start: float
    unit: float
    spread_ticks: int = 2
    vol: float = 1e-4
    drift: float = 0.0

    @property
    def id(self) -> InstrumentId:
        return self.instrument.id

    def walk(self, n: int, seed: int) -> list[float]:
        """``n`` mids of a random walk (the same seed, the same walk)."""
        rng = random.Random(seed)
        mid, out = self.start, []
        for _ in range(n):
            mid *= 1.0 + self.drift + rng.gauss(0.0, self.vol)
            out.append(mid)
        return out

    def touch(self, mid: float) -> tuple[Price, Price]:
        """Bid and ask around ``mid``: ``spread_ticks`` apart, on the price grid."""
        inc = self.instrument.price_increment.as_double()
        bid = math.floor((mid - self.spread_ticks * inc / 2) / inc + 1e-9) * inc
        return self.instrument.make_price(bid), self.instrument.make_price(bid + self.spread_ticks * inc)

    def size(self, rng: random.Random, choices: tuple[int, ...] = (1, 2, 5)) -> Quantity:
        return self.instrument.make_qty(self.unit * rng.choice(choices))


def quotes(m: Market, path: list[float], *, seed: int, step: int = 100_000_000, offset: int = 0,
           t0: int = T0) -> list[Any]:  # fmt: skip
    """A quote per mid of ``path``, ``step`` ns apart from ``t0 + offset`` (ts_init 1 µs after ts_event)."""
    rng = random.Random(seed)
    out = []
    for k, mid in enumerate(path):
        ts = t0 + offset + k * step
        bid, ask = m.touch(mid)
        out.append(QuoteTick(m.id, bid, ask, m.size(rng), m.size(rng), ts - 1000, ts))
    return out


def trades(m: Market, path: list[float], *, seed: int, step: int = 100_000_000, offset: int = 0,
           t0: int = T0) -> list[Any]:  # fmt: skip
    """A trade per mid of ``path``, at its bid or ask, ``step`` ns apart."""
    rng = random.Random(seed)
    out = []
    for k, mid in enumerate(path):
        ts = t0 + offset + k * step
        bid, ask = m.touch(mid)
        buyer = rng.random() < 0.5
        out.append(TradeTick(m.id, ask if buyer else bid, m.size(rng), AggressorSide.BUYER if buyer else
                             AggressorSide.SELLER, TradeId(f"{m.id.symbol}-{seed}-{k}"), ts - 1000, ts))  # fmt: skip
    return out


def bid_ask_bars(m: Market, path: list[float], per_bar: int, *, seed: int, offset: int = 0,
                 t0: int = T0) -> list[Any]:  # fmt: skip
    """1-minute BID and ASK EXTERNAL bars of ``path``, ``per_bar`` mids each (the bid and ask
    bar of a minute share their ts_init, the end of the minute: the venue executes on the pair)."""
    rng = random.Random(seed)
    types = {side: BarType.from_str(f"{m.id}-1-MINUTE-{side}-EXTERNAL") for side in ("BID", "ASK")}
    out = []
    for k in range(len(path) // per_bar):
        touches = [m.touch(mid) for mid in path[k * per_bar : (k + 1) * per_bar]]
        ts = t0 + offset + (k + 1) * MINUTE
        for side, index in (("BID", 0), ("ASK", 1)):
            prices = [t[index] for t in touches]
            volume = m.instrument.make_qty(m.unit * 4 * rng.choice((1, 2, 5)))
            out.append(Bar(types[side], prices[0], max(prices), min(prices), prices[-1], volume, ts, ts))
    return out


def book_deltas(m: Market, path: list[float], *, seed: int, step: int = 100_000_000, offset: int = 0,
                levels: int = 5, t0: int = T0) -> list[Any]:  # fmt: skip
    """An L2 (market-by-price) update per mid of ``path``, ``step`` ns apart, as ``OrderBookDeltas`` batches:
    a snapshot first (CLEAR and ADDs), then the difference to the next book (DELETE, ADD,
    UPDATE); the last delta of a batch carries F_LAST."""
    rng = random.Random(seed)
    inc = m.instrument.price_increment.as_double()
    previous: dict[tuple[OrderSide, float], float] = {}
    out = []
    for k, mid in enumerate(path):
        ts = t0 + offset + k * step
        bid, ask = m.touch(mid)
        book: dict[tuple[OrderSide, float], float] = {}
        for i in range(levels):
            book[(OrderSide.BUY, round(bid.as_double() - i * inc, 10))] = m.unit * rng.choice((1, 2, 3, 5))
            book[(OrderSide.SELL, round(ask.as_double() + i * inc, 10))] = m.unit * rng.choice((1, 2, 3, 5))
        items: list[tuple[BookAction, BookOrder | None]] = []
        if k == 0:
            items.append((BookAction.CLEAR, None))
        for key in sorted(previous.keys() - book.keys()):
            items.append((BookAction.DELETE, _order(m, key, previous[key])))
        for key, size in sorted(book.items()):
            if key not in previous:
                items.append((BookAction.ADD, _order(m, key, size)))
            elif previous[key] != size:
                items.append((BookAction.UPDATE, _order(m, key, size)))
        previous = book
        flags = RecordFlag.F_SNAPSHOT if k == 0 else 0
        deltas = [OrderBookDelta(m.id, action, order, flags | (RecordFlag.F_LAST if j == len(items) - 1 else 0),
                                 k, ts - 1000, ts) for j, (action, order) in enumerate(items)]  # fmt: skip
        out.append(OrderBookDeltas(m.id, deltas))
    return out


def _order(m: Market, key: tuple[OrderSide, float], size: float) -> BookOrder:
    side, price = key
    return BookOrder(side, m.instrument.make_price(price), m.instrument.make_qty(size), 0)


# -- What was fed: arrival prices, rates and counts from the data itself -------------------

_DURATIONS = {(1, BarAggregation.MINUTE): "1m", (5, BarAggregation.MINUTE): "5m", (60, BarAggregation.MINUTE): "1h",
              (1, BarAggregation.HOUR): "1h", (1, BarAggregation.DAY): "1d"}  # fmt: skip
"""The catalog's bar durations (``bars_received{duration}``) by (step, aggregation)."""


class Feed:
    """The data fed to the engine, kept as time series per instrument so that the reference
    side can ask "what was the latest quote / book / bar / trade at time t": ``quote_mid``,
    ``book_mid``, ``bid_bar``, ``ask_bar``, ``mid_bar``, ``last`` (trades and LAST bars) and
    ``bar`` (any bar's close); and the counts the engine publishes: quotes and trades per
    instrument, bars per duration."""

    def __init__(self, data: Iterable[Any]) -> None:
        self.ticks: Counter[str] = Counter()
        self.bars: Counter[str] = Counter()
        self._series: dict[tuple[InstrumentId, str], tuple[list[int], list[float]]] = {}
        self._books: dict[InstrumentId, OrderBook] = {}
        self.end = 0
        for item in sorted(data, key=lambda d: d.ts_init):
            self._add(item)

    def _put(self, iid: InstrumentId, kind: str, ts: int, value: float) -> None:
        times, values = self._series.setdefault((iid, kind), ([], []))
        times.append(ts)
        values.append(value)

    def _add(self, item: Any) -> None:
        ts = item.ts_init
        self.end = max(self.end, ts)
        if isinstance(item, QuoteTick):
            iid = item.instrument_id
            self.ticks[iid.value] += 1
            self._put(iid, "quote_mid", ts, (item.bid_price.as_double() + item.ask_price.as_double()) / 2)
        elif isinstance(item, TradeTick):
            iid = item.instrument_id
            self.ticks[iid.value] += 1
            self._put(iid, "last", ts, item.price.as_double())
        elif isinstance(item, Bar):
            bar_type = item.bar_type
            iid = bar_type.instrument_id
            spec = bar_type.spec
            duration = _DURATIONS.get((spec.step, spec.aggregation))
            if duration is not None:
                self.bars[duration] += 1
            close = item.close.as_double()
            kind = {PriceType.BID: "bid_bar", PriceType.ASK: "ask_bar", PriceType.MID: "mid_bar",
                    PriceType.LAST: "last"}[spec.price_type]  # fmt: skip
            self._put(iid, kind, ts, close)
            self._put(iid, "bar", ts, close)
        elif isinstance(item, OrderBookDeltas):
            iid = item.instrument_id
            book = self._books.get(iid)
            if book is None:
                book = self._books[iid] = OrderBook(iid, BookType.L2_MBP)
            book.apply_deltas(item)
            bid, ask = book.best_bid_price(), book.best_ask_price()
            if bid is not None and ask is not None:
                self._put(iid, "book_mid", ts, (bid.as_double() + ask.as_double()) / 2)

    def at(self, iid: InstrumentId, kind: str, ts: int) -> float | None:
        """The latest value of the series at ``ts`` (data with ts_init <= ts), or None."""
        series = self._series.get((iid, kind))
        if series is None:
            return None
        i = bisect.bisect_right(series[0], ts)
        return series[1][i - 1] if i else None

    def arrival(self, iid: InstrumentId, ts: int) -> float | None:
        """The contract's arrival price at ``ts``: the latest quote's mid; else the order
        book's mid; else the mid of the latest bid and ask bar closes; else a MID bar;
        else the last trade or LAST bar; None when there is no price at all."""
        for kind in ("quote_mid", "book_mid"):
            value = self.at(iid, kind, ts)
            if value is not None:
                return value
        bid, ask = self.at(iid, "bid_bar", ts), self.at(iid, "ask_bar", ts)
        if bid is not None and ask is not None:
            return (bid + ask) / 2
        for kind in ("mid_bar", "last"):
            value = self.at(iid, kind, ts)
            if value is not None:
                return value
        return None

    def pair_mid(self, iid: InstrumentId, ts: int) -> float | None:
        """The mid the engine's exchange-rate table uses for a currency pair at ``ts``: the
        latest quote's, else the latest bid and ask bars' (``Cache._build_quote_table``)."""
        value = self.at(iid, "quote_mid", ts)
        if value is not None:
            return value
        bid, ask = self.at(iid, "bid_bar", ts), self.at(iid, "ask_bar", ts)
        return (bid + ask) / 2 if bid is not None and ask is not None else None


# -- The strategy --------------------------------------------------------------------------

ACTIONS: tuple[tuple[str, float], ...] = (
    ("market", 4), ("limit", 4), ("cross", 2), ("far_limit", 1), ("post_only", 1), ("deny", 0.5), ("cancel", 3),
    ("modify", 2), ("stop", 2), ("bracket", 1.5), ("close", 1),
)  # fmt: skip
"""Every action with its weight (a draw per acting event)."""
CASH_ACTIONS: tuple[tuple[str, float], ...] = (
    ("market", 5), ("limit", 3), ("cross", 1), ("far_limit", 1), ("deny", 0.5), ("cancel", 3), ("modify", 1),
)  # fmt: skip
"""What a cash account's long-only strategy does (never sells more than it holds)."""


class ShapeConfig(StrategyConfig, frozen=True, kw_only=True):
    """``instruments``: ids it trades, ``units``: each one's size unit; ``data``: what it
    subscribes to (``quotes``, ``trades``, ``bars``: the 1-minute BID and ASK external bars,
    ``book``: L2 deltas); ``act_on``: the data that makes it act, with probability ``act``;
    ``actions``: (action, weight) pairs; ``long_only``: never short (cash accounts);
    ``flatten``: close every position in ``on_stop`` (open orders are always canceled);
    ``opening``: a market order per instrument on start, before any data (no arrival price)."""

    instruments: tuple[str, ...]
    units: tuple[float, ...]
    seed: int = 1
    data: tuple[str, ...] = ("quotes",)
    act_on: tuple[str, ...] = ("quotes",)
    act: float = 0.2
    actions: tuple[tuple[str, float], ...] = ACTIONS
    long_only: bool = False
    flatten: bool = False
    opening: bool = False


class ShapeStrategy(Strategy):  # type: ignore[misc]
    """Market, GTD limit (filled, partly filled, expired), post-only (rejected by the venue),
    denied (GTD already past), emulated stop-market, bracket (OUO or OCO), amended (quantity
    and price) orders, cancels and position closes, drawn per event of the data it acts on."""

    def __init__(self, config: ShapeConfig) -> None:
        super().__init__(config)
        self.rng = random.Random(config.seed)
        self.ids = [InstrumentId.from_str(i) for i in config.instruments]
        self.units = dict(zip(self.ids, config.units, strict=True))
        self.touch: dict[InstrumentId, tuple[float, float]] = {}
        self.bid_bar: dict[InstrumentId, Bar] = {}
        names, weights = zip(*config.actions, strict=True)
        self.names: list[str] = list(names)
        self.cum = [sum(weights[: i + 1]) for i in range(len(weights))]
        self.quotes = "quotes" in config.data

    def on_start(self) -> None:
        for iid in self.ids:
            if "quotes" in self.config.data:
                self.subscribe_quote_ticks(iid)
            if "trades" in self.config.data:
                self.subscribe_trade_ticks(iid)
            if "bars" in self.config.data:
                for side in ("BID", "ASK"):
                    self.subscribe_bars(BarType.from_str(f"{iid}-1-MINUTE-{side}-EXTERNAL"))
            if "book" in self.config.data:
                self.subscribe_order_book_deltas(iid, BookType.L2_MBP)
            if self.config.opening:
                self.submit_order(self.order_factory.market(iid, OrderSide.BUY, self.cache.instrument(iid).make_qty(
                    self.units[iid])))  # fmt: skip

    def on_quote_tick(self, tick: QuoteTick) -> None:
        self.touch[tick.instrument_id] = (tick.bid_price.as_double(), tick.ask_price.as_double())
        if "quotes" in self.config.act_on:
            self._act(tick.instrument_id)

    def on_trade_tick(self, tick: TradeTick) -> None:
        if not self.quotes:
            px = tick.price.as_double()
            self.touch[tick.instrument_id] = (px, px)
        if "trades" in self.config.act_on:
            self._act(tick.instrument_id)

    def on_bar(self, bar: Bar) -> None:
        iid = bar.bar_type.instrument_id
        if bar.bar_type.spec.price_type == PriceType.BID:
            self.bid_bar[iid] = bar
            return
        bid = self.bid_bar.get(iid)
        if bid is None or bid.ts_init != bar.ts_init:
            return
        if not self.quotes:
            self.touch[iid] = (bid.close.as_double(), bar.close.as_double())
        if "bars" in self.config.act_on:
            self._act(iid)

    def on_order_book_deltas(self, deltas: Any) -> None:
        iid = deltas.instrument_id
        book = self.cache.order_book(iid)
        bid, ask = book.best_bid_price(), book.best_ask_price()
        if bid is None or ask is None:
            return
        self.touch[iid] = (bid.as_double(), ask.as_double())
        if "book" in self.config.act_on:
            self._act(iid)

    def _act(self, iid: InstrumentId) -> None:
        rng = self.rng
        if rng.random() >= self.config.act or iid not in self.touch:
            return
        action = self.names[bisect.bisect_left(self.cum, rng.random() * self.cum[-1])]
        getattr(self, f"_do_{action}")(iid, self.cache.instrument(iid))

    # -- actions ---------------------------------------------------------------------------

    def _side(self, iid: InstrumentId) -> OrderSide:
        if not self.config.long_only:
            return OrderSide.BUY if self.rng.random() < 0.5 else OrderSide.SELL
        return OrderSide.SELL if self._sellable(iid) > 0 and self.rng.random() < 0.5 else OrderSide.BUY

    def _sellable(self, iid: InstrumentId) -> float:
        """What a long-only strategy may still sell: its position less its open sell orders."""
        held = sum(p.quantity.as_double() for p in self.cache.positions_open(instrument_id=iid, strategy_id=self.id))
        selling = sum(o.leaves_qty.as_double() for o in self.cache.orders_open(instrument_id=iid, strategy_id=self.id)
                      if o.side == OrderSide.SELL)  # fmt: skip
        return held - selling

    def _qty(self, iid: InstrumentId, instrument: Instrument, side: OrderSide, choices: tuple[int, ...]) -> Quantity:
        qty = self.units[iid] * self.rng.choice(choices)
        if self.config.long_only and side == OrderSide.SELL:
            qty = min(qty, self._sellable(iid))
        return instrument.make_qty(qty)

    def _prices(self, iid: InstrumentId, instrument: Instrument) -> tuple[float, float, float]:
        bid, ask = self.touch[iid]
        return bid, ask, instrument.price_increment.as_double()

    def _do_market(self, iid: InstrumentId, instrument: Instrument) -> None:
        side = self._side(iid)
        qty = self._qty(iid, instrument, side, (1, 3, 6))
        if qty.as_double() > 0:
            self.submit_order(self.order_factory.market(iid, side, qty))

    def _do_limit(self, iid: InstrumentId, instrument: Instrument, away: tuple[int, ...] = (0, 0, 1, 2),
                  seconds: tuple[int, ...] = (2, 3, 5), sizes: tuple[int, ...] = (1, 2, 4, 10)) -> None:  # fmt: skip
        """A passive GTD limit ``away`` ticks from the near touch (-1: at the far touch)."""
        side = self._side(iid)
        bid, ask, tick = self._prices(iid, instrument)
        ticks = self.rng.choice(away)
        buy = side == OrderSide.BUY
        near, far = (bid, ask) if buy else (ask, bid)
        price = far if ticks < 0 else near - ticks * tick if buy else near + ticks * tick
        qty = self._qty(iid, instrument, side, sizes)
        if qty.as_double() <= 0 or price <= 0:
            return
        expire = self.clock.utc_now() + pd.Timedelta(seconds=self.rng.choice(seconds))
        self.submit_order(self.order_factory.limit(iid, side, qty, instrument.make_price(price),
                                                   time_in_force=TimeInForce.GTD, expire_time=expire))  # fmt: skip

    def _do_cross(self, iid: InstrumentId, instrument: Instrument) -> None:
        """A limit at the far touch, larger than it: fills in part, the rest rests, then expires."""
        self._do_limit(iid, instrument, away=(-1,), seconds=(1, 2), sizes=(6, 10))

    def _do_far_limit(self, iid: InstrumentId, instrument: Instrument) -> None:
        self._do_limit(iid, instrument, away=(30, 50, 80), seconds=(1, 2))  # expires

    def _do_post_only(self, iid: InstrumentId, instrument: Instrument) -> None:
        side = self._side(iid)
        bid, ask, _ = self._prices(iid, instrument)
        price = instrument.make_price(ask if side == OrderSide.BUY else bid)  # would take: rejected
        self.submit_order(self.order_factory.limit(iid, side, instrument.make_qty(self.units[iid]), price,
                                                   post_only=True))  # fmt: skip

    def _do_deny(self, iid: InstrumentId, instrument: Instrument) -> None:
        side = OrderSide.BUY
        bid, _, _ = self._prices(iid, instrument)
        past = self.clock.utc_now() - pd.Timedelta(seconds=1)
        self.submit_order(self.order_factory.limit(iid, side, instrument.make_qty(self.units[iid]),
                                                   instrument.make_price(bid), time_in_force=TimeInForce.GTD,
                                                   expire_time=past))  # fmt: skip

    def _do_cancel(self, iid: InstrumentId, instrument: Instrument) -> None:
        for order in self.cache.orders_open(instrument_id=iid, strategy_id=self.id)[:1]:
            self.cancel_order(order)
        for order in self.cache.orders_emulated(instrument_id=iid, strategy_id=self.id)[:1]:
            self.cancel_order(order)

    def _do_modify(self, iid: InstrumentId, instrument: Instrument) -> None:
        tick = instrument.price_increment.as_double()
        for order in self.cache.orders_open(instrument_id=iid, strategy_id=self.id):
            if order.order_type != OrderType.LIMIT or order.status != OrderStatus.ACCEPTED or order.is_post_only:
                continue  # amend accepted, plain limits only
            qty = order.quantity.as_double() + self.units[iid] * self.rng.choice((-1, 1, 2))
            if self.config.long_only and order.side == OrderSide.SELL:
                qty = min(qty, order.quantity.as_double() + self._sellable(iid))
            if qty <= 0:
                qty = order.quantity.as_double()
            away = tick * self.rng.choice((-1, 1))
            price = instrument.make_price(order.price.as_double() + (away if order.side == OrderSide.BUY else -away))
            self.modify_order(order, quantity=instrument.make_qty(qty), price=price)
            return

    def _trigger(self) -> TriggerType:
        return TriggerType.BID_ASK if self.quotes else TriggerType.NO_TRIGGER

    def _do_stop(self, iid: InstrumentId, instrument: Instrument) -> None:
        side = self._side(iid)
        bid, ask, tick = self._prices(iid, instrument)
        k = self.rng.choice((3, 5, 10))
        price = ask + k * tick if side == OrderSide.BUY else bid - k * tick
        self.submit_order(self.order_factory.stop_market(iid, side, self._qty(iid, instrument, side, (1, 2)),
                                                         instrument.make_price(price),
                                                         emulation_trigger=self._trigger()))  # fmt: skip

    def _do_bracket(self, iid: InstrumentId, instrument: Instrument) -> None:
        side = self._side(iid)
        bid, ask, tick = self._prices(iid, instrument)
        k = self.rng.choice((5, 10, 20))
        buy = side == OrderSide.BUY
        sl = (bid - k * tick) if buy else (ask + k * tick)
        tp = (ask + k * tick) if buy else (bid - k * tick)
        contingency = ContingencyType.OUO if self.rng.random() < 0.5 else ContingencyType.OCO
        bracket = self.order_factory.bracket(iid, side, self._qty(iid, instrument, side, (1, 2)),
                                             emulation_trigger=self._trigger(), contingency_type=contingency,
                                             sl_trigger_price=instrument.make_price(sl),
                                             tp_price=instrument.make_price(tp))  # fmt: skip
        self.submit_order_list(bracket)

    def _do_close(self, iid: InstrumentId, instrument: Instrument) -> None:
        """Close a position by a market order of its size, unless a close is still working.
        Not reduce-only: a reduce-only market order that fills in pieces can abort
        NautilusTrader 1.221 (the matching engine cuts the order's quantity to the position
        left, below what it has filled: a Quantity underflow panic), seen on L2 books."""
        if any(o.tags and "CLOSE" in o.tags for o in self.cache.orders_open(instrument_id=iid, strategy_id=self.id)):
            return
        positions = self.cache.positions_open(instrument_id=iid, strategy_id=self.id)
        if positions:
            self.close_position(self.rng.choice(positions), reduce_only=False, tags=["CLOSE"])

    def on_stop(self) -> None:
        for iid in self.ids:
            self.cancel_all_orders(iid)
            if self.config.flatten:
                self.close_all_positions(iid)


# -- Scenarios -------------------------------------------------------------------------------


@dataclass
class Scenario:
    """A backtest ready to run: the engine, the actor (None without telemetry), what was fed,
    and the USD rates the actor was configured with."""

    name: str
    engine: BacktestEngine
    actor: TelemetryActor | None
    feed: Feed
    usd_rates: dict[str, float] | None = None
    start: int | None = None
    """When the run starts (default: the first data's time)."""

    def run(self) -> None:
        self.engine.run(start=self.start)


def new_engine() -> BacktestEngine:
    return BacktestEngine(BacktestEngineConfig(logging=LoggingConfig(bypass_logging=True)))


def _finish(name: str, engine: BacktestEngine, data: list[Any], strategies: list[ShapeConfig], *, telemetry: bool,
            usd_rates: dict[str, float] | None = None) -> Scenario:  # fmt: skip
    engine.add_data(data)
    for config in strategies:
        engine.add_strategy(ShapeStrategy(config))
    actor = None
    if telemetry:
        kwargs: dict[str, Any] = {"portfolio_interval_secs": 1.0}
        if usd_rates is not None:
            kwargs["usd_rates"] = usd_rates
        actor = TelemetryActor(TelemetryActorConfig(**kwargs))
        engine.add_actor(actor)
    return Scenario(name, engine, actor, Feed(data), usd_rates)


def _strategies(markets: list[Market], n: int, seed: int, **kw: Any) -> list[ShapeConfig]:
    ids = tuple(m.id.value for m in markets)
    units = tuple(m.unit for m in markets)
    return [ShapeConfig(strategy_id=f"SHAPE-{k + 1:03d}", instruments=ids, units=units, seed=seed * 10 + k, **kw)
            for k in range(n)]  # fmt: skip


def fx(symbol: str, start: float, venue: Venue = SIM, **kw: Any) -> Market:
    instrument = TestInstrumentProvider.default_fx_ccy(symbol, venue)
    return Market(instrument, start, 100_000, spread_ticks=3 if symbol.endswith("JPY") else 10, **kw)


def _fx_venue(engine: BacktestEngine, venue: Venue = SIM, oms: OmsType = OmsType.NETTING,
              balances: tuple[Money, ...] = (Money(10_000_000, USD),), base: Any = USD,
              **options: Any) -> None:  # fmt: skip
    """A margin venue at 50x leverage; ``options``: add_venue's (what the venue executes on)."""
    engine.add_venue(venue, oms, AccountType.MARGIN, list(balances), base_currency=base,
                     default_leverage=Decimal(50), **options)  # fmt: skip


def quotes_only(*, telemetry: bool = True, size: int = 1, seed: int = 1, oms: OmsType = OmsType.NETTING,
                flatten: bool = False, actions: tuple[tuple[str, float], ...] = ACTIONS, opening: bool = False,
                act: float = 0.2) -> Scenario:  # fmt: skip
    """FX on a USD margin account: EUR/USD and GBP/USD quotes, 10 a second each, two strategies."""
    engine = new_engine()
    _fx_venue(engine, oms=oms)
    markets = [fx("EUR/USD", 1.10), fx("GBP/USD", 1.27)]
    data: list[Any] = []
    for i, m in enumerate(markets):
        engine.add_instrument(m.instrument)
        data += quotes(m, m.walk(600 * size, seed * 100 + i), seed=seed + i, offset=i * 7919)
    configs = _strategies(markets, 2, seed, act=act, flatten=flatten, actions=actions, opening=opening)
    s = _finish("quotes", engine, data, configs, telemetry=telemetry)
    if opening:  # start a second before the data: the opening orders have no price to arrive at
        s.start = T0 - SECOND
    return s


def busy_feed(*, telemetry: bool = True, seconds: int = 3, seed: int = 1) -> Scenario:
    """EUR/USD at 2,500 quotes a simulated second, one strategy acting on about one in 25."""
    engine = new_engine()
    _fx_venue(engine)
    m = fx("EUR/USD", 1.10, vol=2e-5)
    engine.add_instrument(m.instrument)
    per_second = 2500
    data = quotes(m, m.walk(per_second * seconds, seed * 100), seed=seed, step=SECOND // per_second)
    return _finish("busy feed", engine, data, _strategies([m], 1, seed, act=0.04), telemetry=telemetry)


CONTINGENT_ACTIONS: tuple[tuple[str, float], ...] = (
    ("market", 1), ("limit", 2), ("far_limit", 2), ("post_only", 0.5), ("deny", 0.5), ("cancel", 1), ("modify", 4),
    ("stop", 4), ("bracket", 4), ("close", 0.5),
)  # fmt: skip
"""Mostly emulated stops, brackets, amends and GTD limits that expire."""


def contingent(*, telemetry: bool = True, seed: int = 1) -> Scenario:
    """Emulated stop-market orders (``TriggerType.BID_ASK``: held by the OrderEmulator, released
    as MARKET), brackets (OUO and OCO children, emulated), amends, GTD limits that expire."""
    return quotes_only(telemetry=telemetry, seed=seed, actions=CONTINGENT_ACTIONS)


def trades_only(*, telemetry: bool = True, size: int = 1, seed: int = 1) -> Scenario:
    """FX trades only (the venue executes on trades): EUR/USD and GBP/USD."""
    engine = new_engine()
    _fx_venue(engine, trade_execution=True)
    markets = [fx("EUR/USD", 1.10), fx("GBP/USD", 1.27)]
    data: list[Any] = []
    for i, m in enumerate(markets):
        engine.add_instrument(m.instrument)
        data += trades(m, m.walk(600 * size, seed * 100 + i), seed=seed + i, offset=i * 7919)
    actions = tuple((a, w) for a, w in ACTIONS if a not in ("stop", "bracket"))  # no quotes: nothing to emulate on
    configs = _strategies(markets, 2, seed, data=("trades",), act_on=("trades",), act=0.2, actions=actions)
    return _finish("trades", engine, data, configs, telemetry=telemetry)


def bars_only(*, telemetry: bool = True, size: int = 1, seed: int = 1) -> Scenario:
    """FX on 1-minute BID and ASK external bars only (the venue executes on bars)."""
    engine = new_engine()
    _fx_venue(engine, bar_execution=True)
    markets = [fx("EUR/USD", 1.10, vol=3e-4), fx("GBP/USD", 1.27, vol=3e-4)]
    data: list[Any] = []
    for i, m in enumerate(markets):
        engine.add_instrument(m.instrument)
        data += bid_ask_bars(m, m.walk(150 * 20 * size, seed * 100 + i), 20, seed=seed + i, offset=i * 7919)
    actions = tuple((a, w) for a, w in ACTIONS if a not in ("stop", "bracket", "far_limit"))
    configs = _strategies(markets, 2, seed, data=("bars",), act_on=("bars",), act=0.6, actions=actions)
    return _finish("bars", engine, data, configs, telemetry=telemetry)


def book_only(*, telemetry: bool = True, size: int = 1, seed: int = 1) -> Scenario:
    """FX on L2 order book deltas only (``book_type`` L2_MBP on the venue)."""
    engine = new_engine()
    _fx_venue(engine, book_type=BookType.L2_MBP)
    markets = [fx("EUR/USD", 1.10), fx("GBP/USD", 1.27)]
    data: list[Any] = []
    for i, m in enumerate(markets):
        engine.add_instrument(m.instrument)
        data += book_deltas(m, m.walk(400 * size, seed * 100 + i), seed=seed + i, offset=i * 7919)
    actions = tuple((a, w) for a, w in ACTIONS if a not in ("stop", "bracket"))
    configs = _strategies(markets, 2, seed, data=("book",), act_on=("book",), act=0.2, actions=actions)
    return _finish("book", engine, data, configs, telemetry=telemetry)


def mixed(*, telemetry: bool = True, size: int = 1, seed: int = 1) -> Scenario:
    """FX quotes, trades and 1-minute BID/ASK bars together; the strategies act on quotes and trades."""
    engine = new_engine()
    _fx_venue(engine, trade_execution=True)
    markets = [fx("EUR/USD", 1.10), fx("GBP/USD", 1.27)]
    data: list[Any] = []
    for i, m in enumerate(markets):
        engine.add_instrument(m.instrument)
        path = m.walk(1200 * size, seed * 100 + i)  # 100 ms apart: quotes, a trade every 200 ms, 1-minute bars
        data += quotes(m, path, seed=seed + i, offset=i * 7919)
        data += trades(m, path[1::2], seed=seed + i, step=200_000_000, offset=150_000_000 + i * 7919)
        data += bid_ask_bars(m, path, 600, seed=seed + i, offset=i * 7919 - 1000)
    configs = _strategies(markets, 2, seed, data=("quotes", "trades", "bars"), act_on=("quotes", "trades"), act=0.12)
    return _finish("mixed", engine, data, configs, telemetry=telemetry)


SHAPES: dict[str, Callable[..., Scenario]] = {
    "quotes": quotes_only,
    "trades": trades_only,
    "bars": bars_only,
    "book": book_only,
    "mixed": mixed,
}
"""The data shapes (one venue, FX on a USD margin account), by name: the benchmark's rows."""


def multi_currency(*, telemetry: bool = True, seed: int = 1) -> Scenario:
    """A margin account without a base currency (USD and JPY balances) trading USD/JPY
    (PnL and commission in JPY) and EUR/USD."""
    engine = new_engine()
    _fx_venue(engine, balances=(Money(5_000_000, USD), Money(500_000_000, JPY)), base=None)
    markets = [fx("USD/JPY", 150.0, vol=5e-5, drift=3e-5), fx("EUR/USD", 1.10)]  # USD/JPY rises 2 % in the run
    data: list[Any] = []
    for i, m in enumerate(markets):
        engine.add_instrument(m.instrument)
        data += quotes(m, m.walk(600, seed * 100 + i), seed=seed + i, offset=i * 7919)
    return _finish("multi-currency", engine, data, _strategies(markets, 2, seed, act=0.1), telemetry=telemetry)


def cash_equity(*, telemetry: bool = True, seed: int = 1) -> Scenario:
    """AAPL on a NASDAQ-like venue, USD cash account, $1 a fill: a long-only strategy buys and sells."""
    engine = new_engine()
    venue = Venue("XNAS")
    engine.add_venue(venue, OmsType.NETTING, AccountType.CASH, [Money(10_000_000, USD)], base_currency=USD,
                     fee_model=FixedFeeModel(Money(1.00, USD), charge_commission_once=False))  # fmt: skip
    m = Market(TestInstrumentProvider.equity("AAPL", "XNAS"), 190.0, 100, spread_ticks=2, vol=2e-4)
    engine.add_instrument(m.instrument)
    data = quotes(m, m.walk(800, seed * 100), seed=seed)
    configs = _strategies([m], 2, seed, act=0.1, actions=CASH_ACTIONS, long_only=True)
    return _finish("cash equity", engine, data, configs, telemetry=telemetry)


def crypto_perp(*, telemetry: bool = True, seed: int = 1, usd_rates: dict[str, float] | None = None) -> Scenario:
    """BTCUSDT-PERP on a USDT margin account (Binance-like); ``usd_rates`` for the actor."""
    engine = new_engine()
    venue = Venue("BINANCE")
    engine.add_venue(venue, OmsType.NETTING, AccountType.MARGIN, [Money(1_000_000, USDT)], base_currency=USDT,
                     default_leverage=Decimal(10))  # fmt: skip
    m = Market(TestInstrumentProvider.btcusdt_perp_binance(), 40_000.0, 0.2, spread_ticks=2, vol=2e-4)
    engine.add_instrument(m.instrument)
    data = quotes(m, m.walk(800, seed * 100), seed=seed)
    return _finish("crypto perp", engine, data, _strategies([m], 2, seed, act=0.1), telemetry=telemetry,
                   usd_rates=usd_rates)  # fmt: skip


def crypto_spot(*, telemetry: bool = True, seed: int = 1, usd_rates: dict[str, float] | None = None) -> Scenario:
    """BTCUSDT spot on a cash account with BTC and USDT balances (no base currency)."""
    engine = new_engine()
    venue = Venue("BINANCE")
    engine.add_venue(venue, OmsType.NETTING, AccountType.CASH, [Money(1_000_000, USDT), Money(5, BTC)],
                     base_currency=None)  # fmt: skip
    m = Market(TestInstrumentProvider.btcusdt_binance(), 40_000.0, 0.05, spread_ticks=2, vol=2e-4)
    engine.add_instrument(m.instrument)
    data = quotes(m, m.walk(800, seed * 100), seed=seed)
    configs = _strategies([m], 2, seed, act=0.1, actions=CASH_ACTIONS, long_only=True)
    return _finish("crypto spot", engine, data, configs, telemetry=telemetry, usd_rates=usd_rates)


def two_venues(*, telemetry: bool = True, seed: int = 1) -> Scenario:
    """Two FX venues, two accounts: one strategy per venue and one trading both."""
    engine = new_engine()
    a, b = Venue("SIM"), Venue("SIM2")
    _fx_venue(engine, venue=a)
    _fx_venue(engine, venue=b, balances=(Money(3_000_000, USD),))
    ma, mb = fx("EUR/USD", 1.10, venue=a), fx("GBP/USD", 1.27, venue=b)
    data: list[Any] = []
    for i, m in enumerate((ma, mb)):
        engine.add_instrument(m.instrument)
        data += quotes(m, m.walk(600, seed * 100 + i), seed=seed + i, offset=i * 7919)
    configs = [
        ShapeConfig(strategy_id="A-001", instruments=(ma.id.value,), units=(ma.unit,), seed=seed * 10, act=0.2),
        ShapeConfig(strategy_id="B-001", instruments=(mb.id.value,), units=(mb.unit,), seed=seed * 10 + 1, act=0.2),
        ShapeConfig(strategy_id="AB-001", instruments=(ma.id.value, mb.id.value), units=(ma.unit, mb.unit),
                    seed=seed * 10 + 2, act=0.1),
    ]  # fmt: skip
    return _finish("two venues", engine, data, configs, telemetry=telemetry)


# -- Reference: the engine's own books ------------------------------------------------------


@dataclass
class Figures:
    """Named figures; ``tol`` holds the non-exact ones as (relative, absolute) tolerances,
    the others (counts) compare exactly. None: the figure is not set (cannot be computed)."""

    values: dict[str, float | None] = field(default_factory=dict)
    tol: dict[str, tuple[float, float]] = field(default_factory=dict)

    def money(self, key: str, terms: list[float | None], rel: float = REL_TOL) -> None:
        """The sum of ``terms`` (None if one of them could not be computed); each term is
        within ``rel``, so the sum is within ``rel`` of Σ|terms| (and of itself)."""
        if None in terms:
            self.values[key] = None
            return
        known = [t for t in terms if t is not None]
        self.values[key] = math.fsum(known)
        self.tol[key] = (rel, rel * math.fsum(abs(t) for t in known) + 1e-6)


class Rates:
    """The contract's conversion of a currency to USD: USD as is; else the configured
    ``usd_rates`` rate; else the venue's exchange rate; else the exchange rate to a configured
    currency K times K's rate. None: no rate.

    ``now``: the engine's rate at the end of the run, ``cache.get_xrate(venue, ccy, USD, MID)``.
    ``at(ts)``: the same from the data fed, the pair's mid at ``ts``: its latest quote, else
    its latest bid and ask bars (what ``Cache._build_quote_table`` reads), the pairs being the
    venue's currency pairs and perpetuals (the engine's exchange-rate symbols)."""

    def __init__(self, engine: BacktestEngine, feed: Feed, usd_rates: dict[str, float] | None) -> None:
        self.engine, self.feed, self.configured = engine, feed, usd_rates or {}

    def now(self, venue: Venue, currency: Currency) -> float | None:
        return self._rate(currency, lambda to: self.engine.cache.get_xrate(venue, currency, to, PriceType.MID))

    def at(self, venue: Venue, currency: Currency, ts: int) -> float | None:
        return self._rate(currency, lambda to: self._pair(venue, currency.code, to.code, ts))

    def _rate(self, currency: Currency, xrate: Callable[[Currency], float | None]) -> float | None:
        if currency == USD:
            return 1.0
        if currency.code in self.configured:
            return self.configured[currency.code]
        rate = xrate(USD)
        if rate:
            return float(rate)
        for code, k_rate in self.configured.items():
            rate = xrate(Currency.from_str(code))
            if rate:
                return float(rate) * k_rate
        return None

    def _pair(self, venue: Venue, base: str, quote: str, ts: int) -> float | None:
        for instrument in self.engine.cache.instruments(venue=venue):
            if not isinstance(instrument, CurrencyPair | CryptoPerpetual):
                continue
            pair = (instrument.base_currency.code, instrument.quote_currency.code)
            if pair in ((base, quote), (quote, base)):
                mid = self.feed.pair_mid(instrument.id, ts)
                if mid:
                    return mid if pair == (base, quote) else 1.0 / mid
        return None


_ORDER_TYPE = {
    OrderType.MARKET: "MARKET", OrderType.MARKET_TO_LIMIT: "MARKET", OrderType.LIMIT: "LIMIT",
    OrderType.LIMIT_IF_TOUCHED: "LIMIT", OrderType.STOP_MARKET: "STOP", OrderType.STOP_LIMIT: "STOP",
    OrderType.MARKET_IF_TOUCHED: "STOP", OrderType.TRAILING_STOP_MARKET: "STOP",
    OrderType.TRAILING_STOP_LIMIT: "STOP",
}  # fmt: skip
"""Nautilus order types -> the catalog's ``order_type`` label values."""
_ENDED_WITH_FILLS = (OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED)


def engine_books(s: Scenario) -> Figures:
    """Every figure of the actor's contract, from the engine's own books.

    Counts: the data fed (quotes and trades per venue and instrument, bars per duration: the
    engine publishes all of it) and ``engine.cache.orders()`` with their events: each order
    once, by its final status (PARTIAL_FILL: ended canceled, expired or rejected with a fill),
    its type the first ``OrderInitialized``'s (an emulated STOP released as MARKET stays STOP).

    Money (:class:`Rates` says which rate): slippage, per fill, against the arrival price at
    its order's first ``OrderInitialized`` (:meth:`Feed.arrival`; no conversion); commission,
    per fill, at the rate at the fill's ``ts_event``; realized PnL, per change of a position's
    realized PnL (net of commissions, in its settlement currency, every cycle), at the rate at
    the fill that booked it; unrealized PnL, exposures and portfolio value now, at the engine's
    rate now, each open position marked as the engine's Portfolio marks it (:func:`mark`).

    What a desk reconciling at day end would expect where the engine's own figures are
    ambiguous: a flipped NETTING position's closed cycle counts (the cache keeps it nowhere:
    :func:`realized_changes` replays the fills), and each position is marked on its own side
    (``Portfolio.unrealized_pnl`` marks all positions of an instrument at the first one's price).
    """
    f = Figures()
    _data_counts(f, s.feed)
    orders = s.engine.cache.orders()
    _order_counts(f, orders)
    rates = Rates(s.engine, s.feed, s.usd_rates)
    _costs(f, s, orders, rates)
    _pnl(f, s, rates)
    _portfolio(f, s, rates)
    return f


def _data_counts(f: Figures, feed: Feed) -> None:
    for iid, n in sorted(feed.ticks.items()):
        f.values[f"ticks_received[{InstrumentId.from_str(iid).venue}|{iid}]"] = n
    for duration, n in sorted(feed.bars.items()):
        f.values[f"bars_received[{duration}]"] = n


def _first_init(order: Any) -> Any:
    return next(e for e in order.events if isinstance(e, OrderInitialized))


def _order_counts(f: Figures, orders: list[Any]) -> None:
    v = f.values
    status = Counter(o.status for o in orders)
    v["orders_received"] = len(orders)
    for order_type, n in sorted(Counter(_ORDER_TYPE[_first_init(o).order_type] for o in orders).items()):
        v[f"orders_received[{order_type}]"] = n
    v["orders_submitted"] = sum(any(isinstance(e, OrderSubmitted) for e in o.events) for o in orders)
    v["orders_filled[FILLED]"] = status[OrderStatus.FILLED]
    v["orders_filled[PARTIAL_FILL]"] = sum(o.status in _ENDED_WITH_FILLS and o.filled_qty.as_double() > 0
                                           for o in orders)  # fmt: skip
    v["orders_canceled"] = status[OrderStatus.CANCELED]
    v["orders_expired"] = status[OrderStatus.EXPIRED]
    v["orders_rejected"] = status[OrderStatus.REJECTED]
    v["risk_rejections"] = status[OrderStatus.DENIED]


def _costs(f: Figures, s: Scenario, orders: list[Any], rates: Rates) -> None:
    """Slippage and commission, per fill."""
    fills = [(o, e) for o in orders for e in o.events if isinstance(e, OrderFilled)]
    f.values["fills"] = len(fills)
    bps: list[float | None] = []
    commissions: list[float | None] = []
    for order, fill in fills:
        arrival = s.feed.arrival(order.instrument_id, _first_init(order).ts_event)
        if arrival is not None:
            px = fill.last_px.as_double()
            bps.append((px - arrival if fill.order_side == OrderSide.BUY else arrival - px) / arrival * 1e4)
        rate = rates.at(order.instrument_id.venue, fill.commission.currency, fill.ts_event)
        commissions.append(None if rate is None else fill.commission.as_double() * rate)
    f.values["slippage_observations"] = len(bps)
    f.values["drops[slippage_bps,no_arrival_price]"] = len(fills) - len(bps)
    f.money("slippage_bps_sum", bps, rel=1e-9)
    known = [c for c in commissions if c is not None]
    f.money("commission_usd", known)  # a fill without a rate: not counted, a drop
    f.values["drops[commission_usd,no_rate]"] = len(commissions) - len(known)


def realized_changes(engine: BacktestEngine) -> list[tuple[str, AccountId, int, Currency, float]]:
    """Every change of a position's realized PnL as the engine booked it, fill by fill:
    (strategy, account, ts, settlement currency, change). Replays each position's fills in
    the venue's order (ts, then trade id) through the engine's own ``Position``, every cycle:
    a NETTING position closed and reopened (the cache snapshots the closed cycle) or flipped
    (a fill larger than the position, split as ``ExecutionEngine._flip_position`` splits it:
    the closed cycle is replaced in the cache, kept nowhere)."""
    fills: dict[PositionId, list[OrderFilled]] = {}
    for order in engine.cache.orders():
        for event in order.events:
            if isinstance(event, OrderFilled) and event.position_id is not None:
                fills.setdefault(event.position_id, []).append(event)
    out = []
    for events in fills.values():
        events.sort(key=lambda e: (e.ts_event, int(e.trade_id.value.rsplit("-", 1)[1])))
        instrument = engine.cache.instrument(events[0].instrument_id)
        position: Position | None = None
        booked = 0.0
        for fill in events:
            pieces = [fill]
            if position is not None and position.is_open and position.is_opposite_side(fill.order_side) \
                    and fill.last_qty > position.quantity:  # fmt: skip
                pieces = _split_flip(position, fill)
            for piece in pieces:
                if position is None or position.is_closed:
                    position, booked = Position(instrument, piece), 0.0
                else:
                    position.apply(piece)
                pnl = position.realized_pnl
                value = pnl.as_double() if pnl is not None else 0.0
                out.append((fill.strategy_id.value, fill.account_id, fill.ts_event, position.settlement_currency,
                            value - booked))  # fmt: skip
                booked = value
    return out


def _split_flip(position: Position, fill: OrderFilled) -> list[OrderFilled]:
    """The fill closing ``position`` and the fill opening the flipped one, the commission shared pro rata."""
    share = position.quantity.as_decimal() / fill.last_qty.as_decimal()
    first = Money(fill.commission.as_decimal() * share, fill.commission.currency)
    second = Money(fill.commission.as_decimal() - first.as_decimal(), fill.commission.currency)
    rest = Quantity(fill.last_qty.as_decimal() - position.quantity.as_decimal(), position.size_precision)

    def piece(qty: Quantity, commission: Money) -> OrderFilled:
        return OrderFilled(fill.trader_id, fill.strategy_id, fill.instrument_id, fill.client_order_id,
                           fill.venue_order_id, fill.account_id, fill.trade_id, fill.position_id, fill.order_side,
                           fill.order_type, qty, fill.last_px, fill.currency, commission, fill.liquidity_side,
                           fill.id, fill.ts_event, fill.ts_init)  # fmt: skip

    return [piece(position.quantity, first), piece(rest, second)]


def mark(engine: BacktestEngine, feed: Feed, position: Position) -> Price | None:
    """The price a position is marked at: the engine Portfolio's (``Portfolio._get_price``),
    BID for a long, ASK for a short (``cache.price``, falling back to EXTERNAL bars of that
    type), else LAST (trade or LAST bar), else the latest bar close; and, the actor's addition,
    the order book's best bid (long) or ask (short). None: no price at all."""
    iid = position.instrument_id
    cache = engine.cache
    price_type = PriceType.BID if position.side == PositionSide.LONG else PriceType.ASK
    price = cache.price(iid, price_type) or cache.price(iid, PriceType.LAST)
    if price is not None:
        return price
    close = feed.at(iid, "bar", feed.end)
    if close is not None:
        return cache.instrument(iid).make_price(close)
    book = cache.order_book(iid)
    if book is not None:
        return book.best_bid_price() if position.side == PositionSide.LONG else book.best_ask_price()
    return None


def _pnl(f: Figures, s: Scenario, rates: Rates) -> None:
    """Realized (each booked change at its time's rate), unrealized (now) and total, per strategy."""
    engine = s.engine
    strategies = sorted(str(sid) for sid in engine.trader.strategy_ids())
    realized: dict[str, list[float | None]] = {k: [] for k in strategies}
    for strategy, account_id, ts, currency, change in realized_changes(engine):
        rate = rates.at(Venue(account_id.get_issuer()), currency, ts)
        realized[strategy].append(None if rate is None else change * rate)
    unrealized: dict[str, list[float | None]] = {k: [] for k in strategies}
    for position in engine.cache.positions_open():
        price = mark(engine, s.feed, position)
        pnl = position.unrealized_pnl(price) if price is not None else None
        rate = rates.now(position.instrument_id.venue, pnl.currency) if pnl is not None else None
        unrealized[position.strategy_id.value].append(None if pnl is None or rate is None else pnl.as_double() * rate)
    for strategy in strategies:
        f.money(f"pnl_realized_usd[{strategy}]", realized[strategy])
        f.money(f"pnl_unrealized_usd[{strategy}]", unrealized[strategy])
        f.money(f"pnl_total_usd[{strategy}]", realized[strategy] + unrealized[strategy])


def _portfolio(f: Figures, s: Scenario, rates: Rates) -> None:
    """Exposures: Σ open positions' notional at their mark in USD, gross |.| and net signed.
    Value: Σ accounts Σ currencies ``balance_total`` in USD; plus, for a margin account, its
    venue's open positions' unrealized PnL; plus, for a cash account, the signed market value
    of open positions in instruments without a base currency (an equity holding is not a
    balance; a spot pair's base currency is)."""
    engine = s.engine
    cache = engine.cache
    gross: list[float | None] = []
    net: list[float | None] = []
    value: list[float | None] = []
    for account in cache.accounts():
        venue = Venue(account.id.get_issuer())
        for currency in account.currencies():
            rate = rates.now(venue, currency)
            value.append(None if rate is None else account.balance_total(currency).as_double() * rate)
        for position in cache.positions_open(venue=venue):
            price = mark(engine, s.feed, position)
            sign = 1.0 if position.side == PositionSide.LONG else -1.0
            notional = position.notional_value(price) if price is not None else None
            rate = rates.now(venue, notional.currency) if notional is not None else None
            usd = None if notional is None or rate is None else abs(notional.as_double()) * rate
            gross.append(usd)
            net.append(None if usd is None else sign * usd)
            if account.type == AccountType.MARGIN:
                pnl = position.unrealized_pnl(price) if price is not None else None
                rate = rates.now(venue, pnl.currency) if pnl is not None else None
                value.append(None if pnl is None or rate is None else pnl.as_double() * rate)
            elif getattr(cache.instrument(position.instrument_id), "base_currency", None) is None:
                value.append(None if usd is None else sign * usd)
    f.money("portfolio_gross_exposure_usd", gross)
    f.money("portfolio_net_exposure_usd", net)
    f.money("portfolio_value_usd", value)


def engine_cross_checks(s: Scenario) -> dict[str, tuple[float, float]]:
    """The reference against the engine's own aggregates, (ours, the engine's): Σ realized
    changes per account and currency vs the margin account's balance change (its ledger);
    per instrument, Σ unrealized PnL vs ``portfolio.unrealized_pnl`` and Σ |notional| vs
    ``portfolio.net_exposure``, where the engine has a price and the instrument's open
    positions are all on one side (``Portfolio._calculate_unrealized_pnl`` marks every
    position of an instrument at the first one's price: BID for all when the first is long)."""
    engine = s.engine
    cache = engine.cache
    out: dict[str, tuple[float, float]] = {}
    changes: Counter[tuple[AccountId, str]] = Counter()
    for _, account_id, _, currency, change in realized_changes(engine):
        changes[(account_id, currency.code)] += change
    for account in cache.accounts():
        if account.type != AccountType.MARGIN:
            continue
        for currency in account.currencies():
            start = account.starting_balances().get(currency)
            ledger = account.balance_total(currency).as_double() - (start.as_double() if start else 0.0)
            out[f"ledger[{account.id}][{currency.code}]"] = (changes[(account.id, currency.code)], ledger)
    by_instrument: dict[InstrumentId, list[Position]] = {}
    for position in cache.positions_open():
        by_instrument.setdefault(position.instrument_id, []).append(position)
    for iid, positions in sorted(by_instrument.items(), key=lambda item: item[0].value):
        side = PriceType.BID if positions[0].side == PositionSide.LONG else PriceType.ASK
        price = cache.price(iid, side) or cache.price(iid, PriceType.LAST)
        if price is None or len({p.side for p in positions}) > 1:
            continue
        pnl = math.fsum(p.unrealized_pnl(price).as_double() for p in positions)
        out[f"unrealized[{iid}]"] = (pnl, engine.portfolio.unrealized_pnl(iid).as_double())
        exposure = math.fsum(abs(p.notional_value(price).as_double()) for p in positions)
        out[f"exposure[{iid}]"] = (exposure, engine.portfolio.net_exposure(iid).as_double())
    return out


# -- Our side: the metrics -------------------------------------------------------------------


def drops() -> dict[tuple[str, str], int]:
    """The drop self-metric's counts of every plane: (metric, reason) -> n."""
    out: Counter[tuple[str, str]] = Counter()
    for plane in Plane:
        for key, n in _state.get_metrics(plane).policy.counts().items():
            out[key] += n
    return dict(out)


def _histogram(capture: TelemetryCapture, key: str) -> list[Any]:
    spec = lookup(key)
    assert spec is not None, key
    return list(capture._points(spec).values())


_COUNTERS = ("orders_received", "orders_submitted", "orders_canceled", "orders_expired", "orders_rejected",
             "risk_rejections", "commission_usd")  # fmt: skip
_GAUGES = ("pnl_realized_usd", "pnl_unrealized_usd", "pnl_total_usd", "portfolio_gross_exposure_usd",
           "portfolio_net_exposure_usd", "portfolio_value_usd")  # fmt: skip


def actor_figures(capture: TelemetryCapture, expected: Figures) -> Figures:
    """The figures ``expected`` names, from our metrics (a TelemetryCapture): counters' totals
    over their series, the slippage histogram's count and sum, gauges' last values (None:
    never set), and the drop counts."""
    f = Figures()
    counted = drops()
    slippage = _histogram(capture, "slippage_bps")
    observed = sum(p.count for p in slippage)
    for key in expected.values:
        name, _, label = key.partition("[")
        label = label.rstrip("]")
        value: float | None
        if name == "ticks_received":
            source, symbol = label.split("|")
            value = capture.total(name, source=source, symbol=symbol)
        elif name == "bars_received":
            value = capture.total(name, duration=label)
        elif name == "orders_received" and label:
            value = capture.total(name, order_type=label)
        elif name == "orders_filled":
            value = capture.total(name, status=label)
        elif name in _COUNTERS:
            value = capture.total(name)
        elif name == "fills":  # each fill is observed, or its slippage dropped
            value = observed + counted.get(("slippage_bps", "no_arrival_price"), 0)
        elif name == "slippage_observations":
            value = observed
        elif name == "slippage_bps_sum":
            value = math.fsum(p.sum for p in slippage)
        elif name in _GAUGES:
            value = capture.gauge(name, strategy=label) if label else capture.gauge(name)
        elif name == "drops":
            metric, reason = label.split(",")
            value = counted.get((metric, reason), 0)
        else:
            raise AssertionError(f"no reading for {key}")
        f.values[key] = value
    return f


def differences(expected: Figures, got: Figures) -> list[str]:
    """Each figure that differs, "key: expected X, got Y": counts exactly, the others within
    their tolerance, None (not set) only equal to None."""
    out = []
    for key, want in expected.values.items():
        have = got.values.get(key)
        if want is None or have is None:
            same = want is None and have is None
        elif key in expected.tol:
            rel, abs_tol = expected.tol[key]
            same = math.isclose(have, want, rel_tol=rel, abs_tol=abs_tol)
        else:
            same = have == want
        if not same:
            out.append(f"{key}: expected {want}, got {have}")
    return out
