"""NautilusTrader: the catalog's Data, Order and Strategy metrics from the engine's own events.

Add :class:`TelemetryActor` to a ``BacktestEngine`` or a ``TradingNode``; the engine is
not modified and no strategy changes::

    from trading_telemetry.integrations.nautilus import TelemetryActor, TelemetryActorConfig

    engine.add_actor(TelemetryActor(TelemetryActorConfig(portfolio_interval_secs=1.0)))

The actor listens on the message bus, passively (it subscribes to no market data itself):

- ``data.quotes.*``, ``data.trades.*``: ``ticks_received`` and ``data_freshness``
  (``ts_init - ts_event``), labels ``source`` = the venue, ``symbol`` = the instrument id;
  ``data.bars.*``: ``bars_received`` for 1-minute, 5-minute, 1-hour and 1-day bars.
- ``events.order.*``: every order through :class:`~trading_telemetry.OrderLifecycle`,
  timed by the events' ``ts_event`` (engine nanoseconds: simulated time in a backtest).
  Venue rejects become ``orders_rejected{reason}`` with ``reason`` a code of
  :data:`REJECT_CODES`; risk-engine denials become ``orders_risk_rejections{check_type}``
  with a code of :data:`DENIAL_CODES`; free text never becomes a label.
- ``events.position.*``: realized PnL per strategy.
- a timer (``portfolio_interval_secs``) and ``on_stop``: the Strategy plane's PnL gauges
  per strategy and the portfolio gauges (gross, signed net exposure, value) in USD.

Events are queued as they come and recorded on the timer (at once after stop, or with
``portfolio_interval_secs=0``). Add the actor before the engine runs: the bus does not
give a wildcard subscription made later the topics already published.

Backtest or live: a backtest's planes belong to ``service.namespace=backtest`` (see
:func:`prepare`), so that its series never mix with the live desk's.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta
from typing import Any

try:
    from nautilus_trader.common.actor import Actor
    from nautilus_trader.common.component import TestClock
    from nautilus_trader.config import ActorConfig
    from nautilus_trader.model.currencies import USD
    from nautilus_trader.model.data import Bar, QuoteTick, TradeTick
    from nautilus_trader.model.enums import BarAggregation, OrderSide, OrderType, PriceType
    from nautilus_trader.model.events import (
        OrderAccepted,
        OrderCanceled,
        OrderDenied,
        OrderExpired,
        OrderFilled,
        OrderInitialized,
        OrderRejected,
        OrderSubmitted,
        OrderUpdated,
        PositionChanged,
        PositionClosed,
        PositionOpened,
    )
except ImportError as error:  # pragma: no cover - the message is the point
    raise ImportError(
        "trading_telemetry.integrations.nautilus needs NautilusTrader: "
        f"pip install 'trading-telemetry[nautilus]' ({error})"
    ) from error

from trading_telemetry import _state
from trading_telemetry._recorder import PlaneMetrics
from trading_telemetry._sdk import DEFAULT_NAMESPACE
from trading_telemetry.catalog import Plane
from trading_telemetry.lifecycle import OrderLifecycle

__all__ = [
    "BACKTEST_NAMESPACE",
    "DENIAL_CODES",
    "ENDED_ORDERS_KEPT",
    "REJECT_CODES",
    "TelemetryActor",
    "TelemetryActorConfig",
    "denial_check_type",
    "prepare",
    "reject_code",
]

logger = logging.getLogger("trading_telemetry")

_TIMER = "trading-telemetry-portfolio"
_QUOTES_SEARCHED = 1000
"""How far back the arrival quote of an order is searched in the engine's cache."""
BACKTEST_NAMESPACE = "backtest"
"""The ``service.namespace`` of a backtest's planes (live planes keep ``trading``)."""
ENDED_ORDERS_KEPT = 4096
"""How many ended orders the actor keeps (the latest to end), so that a fill resent after
its order's end, or one that raced a cancel, reaches its order: counted once."""

# (words in the engine's free-text reason, lower-cased, -> code), first match wins.
REJECT_CODES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("post_only", "post-only", "would have been a taker"), "post_only"),
    (("reduce_only", "reduce-only", "reduce only", "would have increased position"), "reduce_only"),
    (("precision",), "invalid_precision"),
    (("was in the market",), "stop_in_market"),
    (("no market",), "no_market"),
    (("short selling",), "short_selling"),
    (("has expired", "not yet active", "halt", "market closed", "closed market"), "market_closed"),
    (("insufficient", "margin", "balance", "buying power"), "insufficient_funds"),
    (("rate limit", "too many", "throttl"), "rate_limit"),
    (("duplicate",), "duplicate"),
    (("oto", "contingent", "oco"), "contingent"),
)
"""Venue and broker reject reasons reduced to ``orders_rejected_total{reason}`` codes;
anything else is ``other``."""

DENIAL_CODES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("maximum trade size", "quantity_exceeds_maximum"), "max_quantity"),
    (("minimum trade size", "quantity_below_minimum"), "min_quantity"),
    (("notional_exceeds_max_per_order",), "max_notional_per_order"),
    (("notional_less_than_min", "notional_greater_than_max"), "instrument_notional"),
    (("free_balance", "balance"), "balance"),
    (("max_order_submit_rate", "max_order_modify_rate"), "rate_limit"),
    (("tradingstate", "trading_state", "halted", "reducing"), "trading_state"),
    (("precision",), "precision"),
    (("reduce only", "reduce_only"), "reduce_only"),
    (("gtd",), "gtd_expired"),
    (("already",), "duplicate"),
    (("instrument", "no instrument"), "unknown_instrument"),
)
"""Risk-engine denial reasons reduced to ``orders_risk_rejections_total{check_type}`` codes;
anything else is ``other``."""


def _code(table: tuple[tuple[tuple[str, ...], str], ...], reason: object) -> str:
    text = str(reason).lower()
    for words, code in table:
        if any(w in text for w in words):
            return code
    return "other"


def reject_code(reason: object) -> str:
    """The bounded code of a venue's reject reason: ``post_only``, ``reduce_only``, ... or ``other``."""
    return _code(REJECT_CODES, reason)


def denial_check_type(reason: object) -> str:
    """The bounded ``check_type`` of a risk-engine denial: ``max_quantity``,
    ``max_notional_per_order``, ... or ``other``."""
    return _code(DENIAL_CODES, reason)


# Nautilus order types -> the catalog's closed order_type set.
_ORDER_TYPES = {
    OrderType.MARKET: "MARKET",
    OrderType.MARKET_TO_LIMIT: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.LIMIT_IF_TOUCHED: "LIMIT",
    OrderType.STOP_MARKET: "STOP",
    OrderType.STOP_LIMIT: "STOP",
    OrderType.MARKET_IF_TOUCHED: "STOP",
    OrderType.TRAILING_STOP_MARKET: "STOP",
    OrderType.TRAILING_STOP_LIMIT: "STOP",
}
_DIRECTIONS = {OrderSide.BUY: "BUY", OrderSide.SELL: "SELL"}
# Bar specifications (step, aggregation name) -> the catalog's closed duration set.
_DURATIONS = {
    (1, BarAggregation.MINUTE): "1m",
    (5, BarAggregation.MINUTE): "5m",
    (60, BarAggregation.MINUTE): "1h",
    (1, BarAggregation.HOUR): "1h",
    (1, BarAggregation.DAY): "1d",
}


class TelemetryActorConfig(ActorConfig, frozen=True, kw_only=True):
    """``portfolio_interval_secs``: how often the queued events are recorded and the PnL
    and portfolio gauges set (also on stop; 0: no timer, each event recorded as it comes).
    ``record_data``: count quotes, trades and bars (off: orders and portfolio only)."""

    portfolio_interval_secs: float = 1.0
    record_data: bool = True


def prepare(*, backtest: bool) -> None:
    """Initialise the three planes for a backtest (``service.namespace=backtest``, unless
    ``OTEL_RESOURCE_ATTRIBUTES`` sets one) or for live trading (the configuration as it is).
    The actor calls it on start; call it first to choose yourself. Planes already
    initialised are kept: a backtest recording into the live namespace is warned about."""
    config = _state.current_config()
    if backtest and "service.namespace" not in config.resource_attributes:
        attributes = {**config.resource_attributes, "service.namespace": BACKTEST_NAMESPACE}
        config = dataclasses.replace(config, resource_attributes=attributes)
    for plane in Plane:
        existing = _state.planes.get(plane)
        if existing is None:
            _state.init_metrics_exporter(plane, config=config)
        elif backtest:
            resource = existing._sdk.resource
            namespace = resource.attributes.get("service.namespace") if resource is not None else None
            if namespace == DEFAULT_NAMESPACE:
                logger.warning(
                    "a backtest is recording into %s, initialised for live trading (service.namespace=%s): "
                    "its series will mix with the live desk's; set OTEL_RESOURCE_ATTRIBUTES="
                    "service.namespace=%s for backtests",
                    plane.value,
                    namespace,
                    BACKTEST_NAMESPACE,
                )


class TelemetryActor(Actor):  # type: ignore[misc]
    """Records the catalog's metrics from a NautilusTrader engine's events (module docstring)."""

    def __init__(self, config: TelemetryActorConfig | None = None) -> None:
        config = config or TelemetryActorConfig()
        super().__init__(config)
        self._interval = float(config.portfolio_interval_secs)
        self._record_data = bool(config.record_data)
        # The orders the engine has open, by client order id; the latest ENDED_ORDERS_KEPT
        # to end, oldest first.
        self._orders: dict[Any, OrderLifecycle] = {}
        self._ended: OrderedDict[Any, OrderLifecycle] = OrderedDict()
        self._data_handles: dict[Any, tuple[Any, Any]] = {}
        self._bar_handles: dict[Any, Any] = {}
        # position id -> (strategy id, (realized PnL of its current cycle, instrument id));
        # closed cycles' (strategy id, realized PnL, instrument id) not yet summed; strategy
        # -> the sum of its closed cycles in USD. Money is converted when the gauges are set.
        self._cycles: dict[Any, tuple[Any, Any]] = {}
        self._closed: list[tuple[Any, Any, Any]] = []
        self._closed_usd: dict[str, float] = {}
        self._strategies: set[str] = set()
        self._warned: set[str] = set()
        self._subscribed = False
        self.backtest = False
        """Whether the engine runs on a simulated clock (set on start)."""
        self._data: PlaneMetrics | None = None
        self._order: PlaneMetrics | None = None
        self._strategy: PlaneMetrics | None = None
        # Events queued as they come, recorded on the timer; after stop, or without a
        # timer, recorded at once.
        self._pending: list[Any] = []
        self._immediate = True
        self._dispatch: dict[type, Callable[[Any], None]] = {
            OrderInitialized: self._initialized,
            OrderDenied: self._denied,
            OrderSubmitted: self._submitted,
            OrderAccepted: self._accepted,
            OrderRejected: self._rejected,
            OrderFilled: self._filled,
            OrderCanceled: self._canceled,
            OrderExpired: self._expired,
            OrderUpdated: self._updated,
            QuoteTick: self._on_tick,
            TradeTick: self._on_tick,
            Bar: self._on_bar,
            PositionOpened: self._on_position_event,
            PositionChanged: self._on_position_event,
            PositionClosed: self._on_position_event,
        }

    # -- life cycle --------------------------------------------------------------------

    def on_start(self) -> None:
        self.backtest = isinstance(self.clock, TestClock)
        prepare(backtest=self.backtest)
        self._data = _state.plane_metrics(Plane.DATA)
        self._order = _state.plane_metrics(Plane.ORDER)
        self._strategy = _state.plane_metrics(Plane.STRATEGY)
        self._immediate = self._interval <= 0
        if not self._subscribed:  # once: a wildcard subscribed mid-run misses topics already used
            self._subscribed = True
            bus = self.msgbus
            topics = ["events.order.*", "events.position.*"]
            if self._record_data:
                topics += ["data.quotes.*", "data.trades.*", "data.bars.*"]
            for topic in topics:
                bus.subscribe(topic=topic, handler=self._enqueue)
        if not self._immediate:
            self.clock.set_timer(name=_TIMER, interval=timedelta(seconds=self._interval), callback=self._on_timer)

    def on_stop(self) -> None:
        # Record what is queued and set the gauges; from now on record each event as it
        # comes, so that the orders the strategies cancel as they stop are counted too.
        if _TIMER in self.clock.timer_names:
            self.clock.cancel_timer(_TIMER)
        self._immediate = True
        self.record_portfolio()

    def on_dispose(self) -> None:
        self.flush()
        if self._subscribed:
            self._subscribed = False
            for topic in ("events.order.*", "events.position.*", "data.quotes.*", "data.trades.*", "data.bars.*"):
                self.msgbus.unsubscribe(topic=topic, handler=self._enqueue)

    def _enqueue(self, event: Any) -> None:
        """Queue an event; the queue is recorded on the timer (in one go: a batch costs a
        fraction of recording each event between the engine's own work, whose memory
        traffic evicts ours), and at once when there is no timer or the actor stopped."""
        self._pending.append(event)
        if self._immediate:
            self.flush()

    def flush(self) -> None:
        """Record the queued events now, in the order they came."""
        events, self._pending = self._pending, []
        dispatch = self._dispatch
        for event in events:
            try:
                handler = dispatch.get(event.__class__)
                if handler is not None:
                    handler(event)
            except Exception as error:  # noqa: BLE001 - never into the engine (strict: MeasurementError)
                # What an order event's handler let out (the data and position handlers
                # catch their own): counted against the order plane.
                self._failed(self._order, error, "orders_received")

    # -- Data plane --------------------------------------------------------------------

    def _on_tick(self, tick: Any) -> None:
        try:
            handles = self._data_handles.get(tick.instrument_id)
            if handles is None:
                handles = self._bind_data(tick.instrument_id)
            handles[0]._apply(1)
            handles[1].observe((tick.ts_init - tick.ts_event) / 1e9)
        except Exception as error:  # noqa: BLE001 - never into the engine (strict: MeasurementError)
            self._failed(self._data, error, "ticks_received")

    def _bind_data(self, instrument_id: Any) -> tuple[Any, Any]:
        assert self._data is not None
        labels = {"source": instrument_id.venue.value, "symbol": instrument_id.value}
        handles = (self._data.bind("ticks_received", **labels), self._data.bind("data_freshness", **labels))
        self._data_handles[instrument_id] = handles
        return handles

    def _on_bar(self, bar: Any) -> None:
        try:
            handle = self._bar_handles.get(bar.bar_type)
            if handle is None:
                handle = self._bind_bar(bar.bar_type)
            if handle is not False:
                handle._apply(1)
        except Exception as error:  # noqa: BLE001
            self._failed(self._data, error, "bars_received")

    def _bind_bar(self, bar_type: Any) -> Any:
        assert self._data is not None
        spec = bar_type.spec
        duration = _DURATIONS.get((spec.step, spec.aggregation))
        instrument_id = bar_type.instrument_id
        handle: Any = False  # a bar duration the catalog does not list: not counted
        if duration is not None:
            handle = self._data.bind(
                "bars_received", source=instrument_id.venue.value, symbol=instrument_id.value, duration=duration
            )
        self._bar_handles[bar_type] = handle
        return handle

    # -- Order plane -------------------------------------------------------------------

    def _lifecycle(self, event: Any) -> OrderLifecycle:
        """The order's lifecycle, open or ended; for an order this actor did not see created
        (it started later, the order was reconciled, or it ended long ago), one made from
        the event, kept with the ended orders if the engine has closed it."""
        key = event.client_order_id
        order = self._orders.get(key) or self._ended.get(key)
        if order is None:
            cached = self.cache.order(key)
            order = self._new(event.strategy_id, event.instrument_id, cached.side if cached else None,
                              cached.order_type if cached else None, cached.quantity if cached else None,
                              self._arrival_price(event.instrument_id, event.ts_event))  # fmt: skip
            if cached is not None and not cached.is_closed:
                self._orders[key] = order
            else:
                self._retire(key, order)
        return order

    def _retire(self, key: Any, order: OrderLifecycle) -> None:
        """An order that ended: out of the open orders, into the latest ENDED_ORDERS_KEPT ended."""
        self._orders.pop(key, None)
        ended = self._ended
        ended[key] = order
        if len(ended) > ENDED_ORDERS_KEPT:
            ended.popitem(last=False)

    def _new(self, strategy_id: Any, instrument_id: Any, side: Any, order_type: Any, quantity: Any,
             price: float | None) -> OrderLifecycle:  # fmt: skip
        strategy = strategy_id.value
        self._strategies.add(strategy)
        return OrderLifecycle(
            strategy=strategy,
            symbol=instrument_id.value,
            direction=_DIRECTIONS.get(side, "BUY"),
            order_type=_ORDER_TYPES.get(order_type, "MARKET"),
            quantity=quantity.as_double() if quantity is not None else None,
            reference_price=price,
            metrics=self._order,
        )

    def _arrival_price(self, instrument_id: Any, at: int) -> float | None:
        """The mid of the instrument's latest quote at ``at`` (else of its last trade): what
        slippage is measured from. Events are recorded in batches, so the cache is searched
        back from its newest quote."""
        cache = self.cache
        for k in range(_QUOTES_SEARCHED):
            quote = cache.quote_tick(instrument_id, index=k)
            if quote is None:
                break
            if quote.ts_init <= at:
                return float(quote.bid_price.as_double() + quote.ask_price.as_double()) / 2
        trade = cache.trade_tick(instrument_id)
        return float(trade.price.as_double()) if trade is not None else None

    def _initialized(self, e: Any) -> None:
        price = self._arrival_price(e.instrument_id, e.ts_event)
        order = self._new(e.strategy_id, e.instrument_id, e.side, e.order_type, e.quantity, price)
        self._orders[e.client_order_id] = order
        order.intent(at=e.ts_event)

    def _denied(self, e: Any) -> None:
        order = self._lifecycle(e)
        order.denied(denial_check_type(e.reason), at=e.ts_event)
        self._retire(e.client_order_id, order)

    def _submitted(self, e: Any) -> None:
        self._lifecycle(e).submitted(at=e.ts_event)

    def _accepted(self, e: Any) -> None:
        self._lifecycle(e).acked(at=e.ts_event)

    def _rejected(self, e: Any) -> None:
        code = "post_only" if getattr(e, "due_post_only", False) else reject_code(e.reason)
        order = self._lifecycle(e)
        order.rejected(code, at=e.ts_event)
        self._retire(e.client_order_id, order)

    def _filled(self, e: Any) -> None:
        order = self._lifecycle(e)
        commission = self._usd(e.commission, e.instrument_id)
        order.fill(
            e.last_qty.as_double(),
            price=e.last_px.as_double(),
            at=e.ts_event,
            fill_id=e.trade_id.value,
            commission_usd=commission if commission is not None and commission >= 0 else None,
        )
        if order.ended:
            self._retire(e.client_order_id, order)

    def _canceled(self, e: Any) -> None:
        order = self._lifecycle(e)
        order.canceled(at=e.ts_event)
        self._retire(e.client_order_id, order)

    def _expired(self, e: Any) -> None:
        order = self._lifecycle(e)
        order.expired(at=e.ts_event)
        self._retire(e.client_order_id, order)

    def _updated(self, e: Any) -> None:
        if e.quantity is not None:
            self._lifecycle(e).quantity = e.quantity.as_double()

    # -- Strategy plane: PnL and portfolio ---------------------------------------------

    def _on_position_event(self, event: Any) -> None:
        """Keeps each position cycle's realized PnL (net of commissions, what moves a margin
        account's balance): the current cycle's, and the closed cycles'. Converted to USD
        and summed per strategy when the gauges are set."""
        try:
            if event.__class__ is PositionClosed:
                self._cycles.pop(event.position_id, None)
                self._closed.append((event.strategy_id, event.realized_pnl, event.instrument_id))
            else:
                self._cycles[event.position_id] = (event.strategy_id, (event.realized_pnl, event.instrument_id))
        except Exception as error:  # noqa: BLE001
            self._failed(self._strategy, error, "pnl_realized_usd")

    def realized_pnl(self) -> dict[str, float]:
        """Each strategy's realized PnL in USD as this actor defines it (``pnl_realized_usd``):
        the sum of its position cycles' realized PnL, closed and open."""
        closed, self._closed = self._closed, []  # one assignment: an event appending meanwhile is kept
        for strategy_id, money, instrument_id in closed:
            strategy = strategy_id.value
            self._closed_usd[strategy] = self._closed_usd.get(strategy, 0.0) + (self._usd(money, instrument_id) or 0.0)
        out = dict(self._closed_usd)
        for strategy_id, pnl in tuple(self._cycles.values()):
            out[strategy_id.value] = out.get(strategy_id.value, 0.0) + (self._usd(*pnl) or 0.0)
        return out

    def _on_timer(self, event: Any) -> None:
        self.record_portfolio()

    def record_portfolio(self) -> None:
        """Record the queued order events, then set the PnL gauges of every strategy seen and
        the portfolio gauges now."""
        self.flush()
        m = self._strategy
        if m is None:
            return
        try:
            gross = net = unrealized_all = 0.0
            unrealized: dict[str, float] = {}
            for position in self.cache.positions_open():
                price = self._mark(position.instrument_id)
                if price is None:
                    continue
                strategy = position.strategy_id.value
                pnl = self._usd(position.unrealized_pnl(price), position.instrument_id) or 0.0
                unrealized[strategy] = unrealized.get(strategy, 0.0) + pnl
                unrealized_all += pnl
                notional = self._usd(position.notional_value(price), position.instrument_id)
                if notional is not None:
                    signed = notional if position.signed_qty >= 0 else -notional
                    gross += abs(signed)
                    net += signed
            realized = self.realized_pnl()
            for strategy in self._strategies | set(realized):
                r, u = realized.get(strategy, 0.0), unrealized.get(strategy, 0.0)
                m.set("pnl_realized_usd", r, strategy=strategy)
                m.set("pnl_unrealized_usd", u, strategy=strategy)
                m.set("pnl_total_usd", r + u, strategy=strategy)
            m.set("portfolio_gross_exposure_usd", gross)
            m.set("portfolio_net_exposure_usd", net)
            balance = 0.0
            for account in self.cache.accounts():
                total = account.balance_total(USD) if USD in account.currencies() else None
                if total is not None:
                    balance += total.as_double()
            m.set("portfolio_value_usd", balance + unrealized_all)
        except Exception as error:  # noqa: BLE001
            self._failed(m, error, "portfolio_value_usd")

    def _mark(self, instrument_id: Any) -> Any:
        """The price open positions are marked at: the quotes' mid, else the last trade."""
        price = self.cache.price(instrument_id, PriceType.MID)
        return price if price is not None else self.cache.price(instrument_id, PriceType.LAST)

    def _usd(self, money: Any, instrument_id: Any) -> float | None:
        """``money`` in USD: as is, or at the engine's exchange rate; None when it has none."""
        if money is None:
            return None
        amount = money.as_double()
        currency = money.currency
        if currency == USD:
            return float(amount)
        rate = self.cache.get_xrate(instrument_id.venue, currency, USD, PriceType.MID)
        if rate is None or not rate or math.isnan(rate):
            if currency.code not in self._warned:
                self._warned.add(currency.code)
                logger.warning("no %s/USD rate in the engine's cache: amounts in %s are not recorded",
                               currency.code, currency.code)  # fmt: skip
            return None
        return float(amount * rate)

    @staticmethod
    def _failed(metrics: PlaneMetrics | None, error: BaseException, metric: str) -> None:
        if metrics is not None:
            metrics._policy.failed(error, metric)
