"""NautilusTrader: the catalog's Data, Order and Strategy metrics from the engine's own events.

Add :class:`TelemetryActor` to a ``BacktestEngine`` or a ``TradingNode``; the engine is
not modified and no strategy changes::

    from trading_telemetry.integrations.nautilus import TelemetryActor, TelemetryActorConfig

    engine.add_actor(TelemetryActor(TelemetryActorConfig(usd_rates={"USDT": 1.0})))

The actor listens on the message bus, passively (it subscribes to no market data itself):

- ``data.quotes.*``, ``data.trades.*``: ``ticks_received`` and ``data_freshness``
  (``ts_init - ts_event``), labels ``source`` = the venue, ``symbol`` = the instrument id;
  ``data.bars.*``: ``bars_received`` for 1-minute, 5-minute, 1-hour and 1-day bars.
- ``events.order.*``: every order through :class:`~trading_telemetry.OrderLifecycle`,
  timed by the events' ``ts_event`` (engine nanoseconds: simulated time in a backtest),
  counted once (an order the OrderEmulator releases is initialised again by the engine:
  it keeps its first type and intent time). Each fill's slippage is measured from the
  arrival price, taken when the order is created. Venue rejects become
  ``orders_rejected{reason}``, risk-engine denials ``orders_risk_rejections{check_type}``,
  codes of the engine's fixed message shapes; free text never becomes a label.
- ``events.position.*``: realized PnL per strategy, converted to USD when booked.
- the Strategy plane's PnL gauges per strategy and the portfolio gauges (gross and signed
  net exposure, value), in USD, marked as the engine's portfolio marks.
- ``events.system.*``: a strategy stopped while the actor runs (``trader.stop_strategy``)
  has its PnL gauges retired (``PlaneMetrics.retire``), unless it still holds open
  positions; when the engine stops, the actor stops first, so a backtest's final PnL stays.
- ``data.venue.close_price.*``: an instrument close of type ``CONTRACT_EXPIRED`` retires
  the instrument's series (``symbol`` = its id) on every plane.
- trading calendars: each instrument the actor records is mapped to the desk's calendar
  of its venue (``data_symbol_calendar{symbol, calendar}``, see ``sessions``): the
  calendar named in ``venue_calendars``, else the one named like the venue (``XNAS``).

Money is converted into USD at the engine's mid rate, or at ``usd_rates`` for currencies
the engine has no rate for (stablecoins). A figure that cannot be computed (no rate, no
price) is not set: it is counted in the drop self-metric with a reason (``no_rate``,
``no_mark``, ``no_arrival_price``) and logged once per currency or instrument.

Events are queued as they come and recorded in batches: in a backtest every few thousand
events, the gauges at most every ``portfolio_interval_secs`` of wall-clock time (no timer
on simulated time); live, on a timer of ``portfolio_interval_secs``. After the actor
stops, each event is recorded at once and the gauges set again (positions that strategies
flatten in their own ``on_stop``). ``engine.reset()`` starts the gauges again; counters
keep counting. Add the actor before the engine runs: the bus does not give a wildcard
subscription made later the topics already published.

Backtest or live: a backtest's planes belong to ``service.namespace=backtest`` (see
:func:`prepare`), so that its series never mix with the live desk's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta
from typing import Any

try:
    from nautilus_trader.common.actor import Actor
    from nautilus_trader.common.component import TestClock
    from nautilus_trader.common.enums import ComponentState
    from nautilus_trader.common.messages import ComponentStateChanged
    from nautilus_trader.config import ActorConfig
    from nautilus_trader.model.currencies import USD
    from nautilus_trader.model.data import Bar, InstrumentClose
    from nautilus_trader.model.enums import (
        BarAggregation,
        InstrumentCloseType,
        OrderSide,
        OrderType,
        PositionSide,
        PriceType,
    )
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
        PositionClosed,
        PositionOpened,
    )
    from nautilus_trader.model.identifiers import Venue
    from nautilus_trader.model.objects import Currency
except ImportError as error:  # pragma: no cover - the message is the point
    raise ImportError(
        "trading_telemetry.integrations.nautilus needs NautilusTrader: "
        f"pip install 'trading-telemetry[nautilus]' ({error})"
    ) from error

from trading_telemetry import _state, sessions
from trading_telemetry._drops import DROPPED_METRIC
from trading_telemetry._recorder import PlaneMetrics
from trading_telemetry._sdk import DEFAULT_NAMESPACE
from trading_telemetry._sessions import SessionGauges
from trading_telemetry.catalog import Plane
from trading_telemetry.errors import ConfigError
from trading_telemetry.integrations._nautilus_codes import (
    DENIAL_CODE_NAMES,
    DENIAL_CODES,
    REJECT_CODE_NAMES,
    REJECT_CODES,
    denial_check_type,
    denied_check_type,
    reject_code,
    rejected_code,
)
from trading_telemetry.lifecycle import OrderLifecycle

__all__ = [
    "BACKTEST_NAMESPACE",
    "BATCH",
    "DENIAL_CODES",
    "DENIAL_CODE_NAMES",
    "ENDED_ORDERS_KEPT",
    "REJECT_CODES",
    "REJECT_CODE_NAMES",
    "TelemetryActor",
    "TelemetryActorConfig",
    "denial_check_type",
    "denied_check_type",
    "prepare",
    "reject_code",
    "rejected_code",
]

logger = logging.getLogger("trading_telemetry")

_TIMER = "trading-telemetry-portfolio"
_MISSING = {
    "no_rate": "no {0}/USD rate in the engine's cache: amounts in {0} are not recorded; give one in "
    "TelemetryActorConfig(usd_rates={{'{0}': ...}})",
    "no_mark": "no price to mark {0} at (no quote, trade, bar or order book): its PnL and exposure are not recorded",
    "no_arrival_price": "no price for {0} when its order was created (no quote, order book, bar or trade): "
    "its fills' slippage is not recorded",
}
BATCH = 256
"""How many events are queued before they are recorded (a batch costs a fraction of
recording each event between the engine's own work, whose memory traffic evicts ours)."""
BACKTEST_NAMESPACE = "backtest"
"""The ``service.namespace`` of a backtest's planes (live planes keep ``trading``)."""
ENDED_ORDERS_KEPT = 4096
"""How many ended orders the actor keeps (the latest to end), so that a fill resent after
its order's end, or one that raced a cancel, reaches its order: counted once."""

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
    """``portfolio_interval_secs``: how often, at most, the queued events are recorded and
    the PnL and portfolio gauges set, in wall-clock seconds (also on stop; 0: each event
    recorded as it comes, the gauges after every fill). ``record_data``: count quotes,
    trades and bars (off: orders and portfolio only). ``usd_rates``: fixed USD rates of
    currencies the engine cannot convert, such as ``{"USDT": 1.0, "USDC": 1.0}``; also
    used to convert through them (BTC at the engine's BTC/USDT rate times USDT's).
    ``venue_calendars``: the desk's calendar of each venue whose name is not one, such as
    ``{"SIM": "XNYS"}`` (an instrument of a venue named like a calendar takes that one)."""

    portfolio_interval_secs: float = 1.0
    record_data: bool = True
    usd_rates: dict[str, float] | None = None
    venue_calendars: dict[str, str] | None = None


def _checked_rates(rates: Any) -> dict[str, float]:
    """``usd_rates`` as {currency code: rate}, or ConfigError naming the entry."""
    if rates is None:
        return {}
    if not isinstance(rates, dict):
        raise ConfigError("TelemetryActorConfig.usd_rates", rates, "must be a dict of currency code -> USD rate")
    out: dict[str, float] = {}
    for code, rate in rates.items():
        field = f"TelemetryActorConfig.usd_rates[{code!r}]"
        if not isinstance(code, str) or not code.isalnum():
            raise ConfigError(field, code, "a currency code is letters and digits, such as 'USDT'")
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) or rate <= 0:
            raise ConfigError(field, rate, "the USD value of one unit: a finite number > 0, such as 1.0")
        out[code] = float(rate)
    return out


def _checked_venue_calendars(mapping: Any) -> dict[str, str]:
    """``venue_calendars`` as {venue: calendar name}, or ConfigError naming the entry."""
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise ConfigError("TelemetryActorConfig.venue_calendars", mapping, "must be a dict of venue -> calendar name")
    for venue, calendar in mapping.items():
        if not isinstance(venue, str) or not isinstance(calendar, str):
            raise ConfigError(f"TelemetryActorConfig.venue_calendars[{venue!r}]", calendar,
                              "a venue and a calendar are names, such as 'SIM': 'XNYS'")  # fmt: skip
    return dict(mapping)


def _running_gauges(venue_calendars: dict[str, str]) -> SessionGauges | None:
    """The data plane's running session gauges; ConfigError for a calendar in
    ``venue_calendars`` they do not have (the catalog file does not declare it)."""
    gauges = sessions.running()
    declared = gauges.sessions.calendars if gauges is not None else {}
    for venue, calendar in venue_calendars.items():
        if calendar not in declared:
            known = ", ".join(sorted(declared)) or "none: the catalog file declares no calendars"
            raise ConfigError(f"TelemetryActorConfig.venue_calendars[{venue!r}]", calendar,
                              f"not a calendar of the desk's catalog file (declared: {known})")  # fmt: skip
    return gauges


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
            resource = existing.sdk.resource
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
        self._fixed_rates = _checked_rates(config.usd_rates)
        self._venue_calendars = _checked_venue_calendars(config.venue_calendars)
        self._gauges: SessionGauges | None = None
        self._mapped: set[Any] = set()  # the instruments whose calendar was looked for
        self._via: list[tuple[Any, float]] = [(Currency.from_str(c), r) for c, r in self._fixed_rates.items()]
        self._data_handles: dict[Any, tuple[Any, Any]] = {}
        self._bar_handles: dict[Any, Any] = {}
        self._bar_types: dict[Any, Any] = {}  # bar type -> (instrument, price type, seconds), False if internal
        self._subscribed = False
        self._warned: set[tuple[str, str]] = set()
        self.backtest = False
        """Whether the engine runs on a simulated clock (set on start)."""
        self._data: PlaneMetrics | None = None
        self._order: PlaneMetrics | None = None
        self._strategy: PlaneMetrics | None = None
        # Queued as they come: data events, and (handler, event, what was read when it came).
        self._data_pending: list[Any] = []
        self._pending: list[tuple[Callable[[Any, Any], None], Any, Any]] = []
        self._immediate = True
        self._running = False
        self._last_record = 0.0
        self._clear()
        self._order_handlers: dict[type, Callable[[Any, Any], None]] = {
            OrderInitialized: self._initialized,
            OrderDenied: self._denied,
            OrderSubmitted: self._submitted,
            OrderAccepted: self._accepted,
            OrderRejected: self._rejected,
            OrderFilled: self._filled,
            OrderCanceled: self._canceled,
            OrderExpired: self._expired,
            OrderUpdated: self._updated,
        }

    def _clear(self) -> None:
        """What one run accumulates (a new run after ``engine.reset()`` starts from none)."""
        # The orders the engine has open, by client order id; the latest ENDED_ORDERS_KEPT
        # to end, oldest first.
        self._orders: dict[Any, OrderLifecycle] = {}
        self._ended: OrderedDict[Any, OrderLifecycle] = OrderedDict()
        # Realized PnL: per strategy, the USD booked so far; amounts not yet converted (no
        # rate when booked) by (strategy, venue, currency); each open position cycle's
        # realized PnL so far (in its currency), by position id.
        self._realized_usd: dict[str, float] = {}
        self._unconverted: dict[tuple[str, Any, Any], float] = {}
        self._cycle_realized: dict[Any, float] = {}
        self._strategies: set[str] = set()
        # The latest close of an EXTERNAL bar per instrument (what the engine's portfolio
        # marks at when it has neither quotes nor trades); per (instrument, price type), the
        # (bar length, close) of the latest bar of the shortest length (what the engine's
        # cache prices at without quotes or trades), kept as bars come.
        self._bar_close: dict[Any, Any] = {}
        self._bar_price: dict[tuple[Any, Any], tuple[float, Any]] = {}

    # -- life cycle --------------------------------------------------------------------

    @property
    def strategies(self) -> frozenset[str]:
        """The strategies whose orders, positions or PnL the actor has recorded."""
        return frozenset(self._strategies)

    def on_start(self) -> None:
        self.backtest = isinstance(self.clock, TestClock)
        prepare(backtest=self.backtest)
        self._gauges = _running_gauges(self._venue_calendars)
        self._mapped.clear()
        self._data = _state.plane_metrics(Plane.DATA)
        self._order = _state.plane_metrics(Plane.ORDER)
        self._strategy = _state.plane_metrics(Plane.STRATEGY)
        self._immediate = self._interval <= 0
        self._running = True
        self._last_record = time.monotonic()
        if not self._subscribed:  # once: a wildcard subscribed mid-run misses topics already used
            self._subscribed = True
            bus = self.msgbus
            bus.subscribe(topic="events.order.*", handler=self._on_order_event)
            bus.subscribe(topic="events.position.*", handler=self._on_position_event)
            bus.subscribe(topic="data.bars.*", handler=self._on_bar_event)  # prices, counted if record_data
            bus.subscribe(topic="events.system.*", handler=self._on_system_event)
            bus.subscribe(topic="data.venue.close_price.*", handler=self._on_instrument_close)
            if self._record_data:
                bus.subscribe(topic="data.quotes.*", handler=self._on_data)
                bus.subscribe(topic="data.trades.*", handler=self._on_data)
        if not self._immediate and not self.backtest:  # a backtest's clock is simulated: batches instead
            self.clock.set_timer(name=_TIMER, interval=timedelta(seconds=self._interval), callback=self._on_timer)

    def on_stop(self) -> None:
        # Record what is queued and set the gauges; from now on record each event as it
        # comes and set the gauges after each fill, so that what the strategies do as they
        # stop (cancel, flatten) is recorded too.
        if _TIMER in self.clock.timer_names:
            self.clock.cancel_timer(_TIMER)
        self._immediate = True
        self._running = False  # strategies the engine stops after the actor keep their PnL
        self.record_portfolio()

    def on_reset(self) -> None:
        """A new run (``engine.reset()``): the PnL gauges start again from zero; counters
        keep counting."""
        self.flush()
        m = self._strategy
        if m is not None:
            for strategy in self._strategies:
                for key in ("pnl_realized_usd", "pnl_unrealized_usd", "pnl_total_usd"):
                    m.set(key, 0.0, strategy=strategy)
        self._clear()

    def on_dispose(self) -> None:
        self.flush()
        if self._subscribed:
            self._subscribed = False
            bus = self.msgbus
            bus.unsubscribe(topic="events.order.*", handler=self._on_order_event)
            bus.unsubscribe(topic="events.position.*", handler=self._on_position_event)
            bus.unsubscribe(topic="data.bars.*", handler=self._on_bar_event)
            bus.unsubscribe(topic="events.system.*", handler=self._on_system_event)
            bus.unsubscribe(topic="data.venue.close_price.*", handler=self._on_instrument_close)
            if self._record_data:
                bus.unsubscribe(topic="data.quotes.*", handler=self._on_data)
                bus.unsubscribe(topic="data.trades.*", handler=self._on_data)

    # -- retirement --------------------------------------------------------------------

    def _on_system_event(self, event: Any) -> None:
        """A strategy stopped while the actor runs: its PnL gauges are retired, once what is
        queued is recorded, unless it still holds open positions (their PnL still moves)."""
        try:
            if event.__class__ is not ComponentStateChanged or event.state != ComponentState.STOPPED:
                return
            strategy = event.component_id.value
            if not self._running or strategy not in self._strategies:
                return
            self.flush()
            if any(p.strategy_id.value == strategy for p in self.cache.positions_open()):
                return
            self._strategies.discard(strategy)
            self._realized_usd.pop(strategy, None)
            m = self._strategy
            if m is not None:
                for key in ("pnl_realized_usd", "pnl_unrealized_usd", "pnl_total_usd"):
                    m.retire(key, strategy=strategy)
        except Exception as error:  # noqa: BLE001 - never into the engine
            self._failed(self._strategy, error, "pnl_total_usd")

    def _on_instrument_close(self, close: Any) -> None:
        """An expired contract: its series retired on every plane (its handles made anew
        should it trade again)."""
        try:
            if close.__class__ is not InstrumentClose or close.close_type != InstrumentCloseType.CONTRACT_EXPIRED:
                return
            self.flush()
            instrument_id = close.instrument_id
            self._data_handles.pop(instrument_id, None)
            if self._gauges is not None and instrument_id in self._mapped:
                self._gauges.remove_symbol(instrument_id.value)
            self._mapped.discard(instrument_id)
            for bar_type in [b for b in self._bar_handles if b.instrument_id == instrument_id]:
                del self._bar_handles[bar_type]
            for m in (self._data, self._order, self._strategy):
                if m is not None and any("symbol" in s.labels for s in m.store.specs.values()):
                    m.retire(symbol=instrument_id.value)
        except Exception as error:  # noqa: BLE001 - never into the engine
            self._failed(self._data, error, "ticks_received")

    # -- the queue ---------------------------------------------------------------------

    def _on_data(self, event: Any) -> None:
        pending = self._data_pending
        pending.append(event)
        if self._immediate or len(pending) >= BATCH:
            self._batch_done()

    def _on_bar_event(self, bar: Any) -> None:
        """Keeps an EXTERNAL bar's close as it comes (the arrival price of an order created
        next may be it); queues the bar to be counted."""
        try:
            bar_type = bar.bar_type
            info: Any = self._bar_types.get(bar_type)
            if info is None:
                spec = bar_type.spec
                info = self._bar_types[bar_type] = (
                    (bar_type.instrument_id, spec.price_type, spec.timedelta.total_seconds())
                    if bar_type.is_externally_aggregated()
                    else False
                )
            if info is not False:
                instrument_id, price_type, seconds = info
                close = bar.close
                self._bar_close[instrument_id] = close
                key = (instrument_id, price_type)
                held = self._bar_price.get(key)
                if held is None or seconds <= held[0]:
                    self._bar_price[key] = (seconds, close)
        except Exception as error:  # noqa: BLE001 - never into the engine (strict: MeasurementError)
            self._failed(self._data, error, "bars_received")
        if self._record_data:
            self._on_data(bar)

    def _on_order_event(self, event: Any) -> None:
        """Queues an order event with what must be read as it comes: the arrival price of a
        new order, the USD rate of a fill's commission."""
        try:
            cls = event.__class__
            handler = self._order_handlers.get(cls)
            if handler is None:
                return
            extra: Any = None
            if cls is OrderInitialized:
                extra = self._arrival_price(event.instrument_id)
            elif cls is OrderFilled:
                commission = event.commission
                currency = commission.currency
                extra = (commission, 1.0 if currency == USD else self._rate(currency, event.instrument_id.venue))
            pending = self._pending
            pending.append((handler, event, extra))
            if self._immediate:
                self.flush()
                if cls is OrderFilled:
                    self.record_portfolio()
            elif len(pending) >= BATCH:
                self._batch_done()
        except Exception as error:  # noqa: BLE001 - never into the engine (strict: MeasurementError)
            self._failed(self._order, error, "orders_received")

    def _on_position_event(self, event: Any) -> None:
        """Queues a position event with the USD rate of its realized PnL now (when booked)."""
        try:
            pnl = event.realized_pnl
            rate = None
            if pnl is not None:
                currency = pnl.currency
                rate = 1.0 if currency == USD else self._rate(currency, event.instrument_id.venue)
            pending = self._pending
            pending.append((self._position, event, (pnl, rate)))
            if self._immediate:
                self.record_portfolio()
            elif len(pending) >= BATCH:
                self._batch_done()
        except Exception as error:  # noqa: BLE001
            self._failed(self._strategy, error, "pnl_realized_usd")

    def _batch_done(self) -> None:
        """Record the queue; in a backtest, set the gauges too when ``portfolio_interval_secs``
        of wall-clock time has passed since they were last set."""
        if self._immediate or not self.backtest:
            self.flush()
            return
        now = time.monotonic()
        if now - self._last_record >= self._interval:
            self.record_portfolio()
        else:
            self.flush()

    def flush(self) -> None:
        """Record the queued events now, in the order they came (data first)."""
        data, self._data_pending = self._data_pending, []
        for event in data:
            if event.__class__ is Bar:
                self._on_bar(event)
            else:
                self._on_tick(event)
        events, self._pending = self._pending, []
        for handler, event, extra in events:
            try:
                handler(event, extra)
            except Exception as error:  # noqa: BLE001 - never into the engine (strict: MeasurementError)
                # What an order event's handler let out: counted against the order plane.
                self._failed(self._order, error, "orders_received")

    # -- Data plane --------------------------------------------------------------------

    def _on_tick(self, tick: Any) -> None:
        try:
            handles = self._data_handles.get(tick.instrument_id)
            if handles is None:
                handles = self._bind_data(tick.instrument_id)
            handles[0].record_unchecked(1)
            handles[1].observe((tick.ts_init - tick.ts_event) / 1e9)
        except Exception as error:  # noqa: BLE001 - never into the engine (strict: MeasurementError)
            self._failed(self._data, error, "ticks_received")

    def _map_calendar(self, instrument_id: Any) -> None:
        """The first time the actor records ``instrument_id``: its symbol mapped to its
        venue's calendar, if the desk declares one."""
        gauges = self._gauges
        if gauges is None or instrument_id in self._mapped:
            return
        self._mapped.add(instrument_id)
        venue = instrument_id.venue.value
        calendar = self._venue_calendars.get(venue, venue)
        if calendar in gauges.sessions.calendars:
            gauges.add_symbol(instrument_id.value, calendar)

    def _bind_data(self, instrument_id: Any) -> tuple[Any, Any]:
        assert self._data is not None
        self._map_calendar(instrument_id)
        labels = {"source": instrument_id.venue.value, "symbol": instrument_id.value}
        handles = (self._data.bind("ticks_received", **labels), self._data.bind("data_freshness", **labels))
        self._data_handles[instrument_id] = handles
        return handles

    def _on_bar(self, bar: Any) -> None:
        try:
            bar_type = bar.bar_type
            handle = self._bar_handles.get(bar_type)
            if handle is None:
                handle = self._bind_bar(bar_type)
            if handle is not False:
                handle.record_unchecked(1)
        except Exception as error:  # noqa: BLE001
            self._failed(self._data, error, "bars_received")

    def _bind_bar(self, bar_type: Any) -> Any:
        assert self._data is not None
        spec = bar_type.spec
        duration = _DURATIONS.get((spec.step, spec.aggregation))
        instrument_id = bar_type.instrument_id
        self._map_calendar(instrument_id)
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
                              self._arrival_price(event.instrument_id))  # fmt: skip
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
        if instrument_id not in self._mapped:
            self._map_calendar(instrument_id)
        return OrderLifecycle(
            strategy=strategy,
            symbol=instrument_id.value,
            direction=_DIRECTIONS.get(side, "BUY"),
            order_type=_ORDER_TYPES.get(order_type, "MARKET"),
            quantity=quantity.as_double() if quantity is not None else None,
            reference_price=price,
            metrics=self._order,
        )

    def _arrival_price(self, instrument_id: Any) -> float | None:
        """The mid now, what an order created now has its fills' slippage measured from:
        the latest quote's; else the order book's (best bid and ask); else the latest bid
        and ask bars' closes; else the MID bars' close, the last trade or the LAST bars'."""
        cache = self.cache
        quote = cache.quote_tick(instrument_id)
        if quote is not None:
            return float(quote.bid_price.as_double() + quote.ask_price.as_double()) / 2
        book = cache.order_book(instrument_id)
        if book is not None:
            bid, ask = book.best_bid_price(), book.best_ask_price()
            if bid is not None and ask is not None:
                return float(bid.as_double() + ask.as_double()) / 2
        bars = self._bar_price
        if bars:
            bid, ask = bars.get((instrument_id, PriceType.BID)), bars.get((instrument_id, PriceType.ASK))
            if bid is not None and ask is not None:
                return float(bid[1].as_double() + ask[1].as_double()) / 2
            mid = bars.get((instrument_id, PriceType.MID))
            if mid is not None:
                return float(mid[1].as_double())
        trade = cache.trade_tick(instrument_id)
        if trade is not None:
            return float(trade.price.as_double())
        last = bars.get((instrument_id, PriceType.LAST))
        return float(last[1].as_double()) if last is not None else None

    def _initialized(self, e: Any, price: float | None) -> None:
        key = e.client_order_id
        if key in self._orders or key in self._ended:
            return  # an emulated order released (transformed, initialised again): the same order
        order = self._new(e.strategy_id, e.instrument_id, e.side, e.order_type, e.quantity, price)
        self._orders[key] = order
        order.intent(at=e.ts_event)

    def _denied(self, e: Any, _: Any) -> None:
        order = self._lifecycle(e)
        order.denied(denied_check_type(e), at=e.ts_event)
        self._retire(e.client_order_id, order)

    def _submitted(self, e: Any, _: Any) -> None:
        self._lifecycle(e).submitted(at=e.ts_event)

    def _accepted(self, e: Any, _: Any) -> None:
        self._lifecycle(e).acked(at=e.ts_event)

    def _rejected(self, e: Any, _: Any) -> None:
        order = self._lifecycle(e)
        order.rejected(rejected_code(e), at=e.ts_event)
        self._retire(e.client_order_id, order)

    def _filled(self, e: Any, read: tuple[Any, float | None]) -> None:
        """``read``: the commission and its USD rate, read as the fill came."""
        commission, rate = read
        order = self._lifecycle(e)
        usd: float | None = None
        if rate is not None:
            usd = commission.as_double() * rate
        elif commission.as_double() != 0:
            self._missing(self._order, "commission_usd", "no_rate", commission.currency.code)
        if order.reference_price is None:
            self._missing(self._order, "slippage_bps", "no_arrival_price", e.instrument_id.value)
        order.fill(
            e.last_qty.as_double(),
            price=e.last_px.as_double(),
            at=e.ts_event,
            fill_id=e.trade_id.value,
            commission_usd=usd if usd is not None and usd >= 0 else None,
        )
        if order.ended:
            self._retire(e.client_order_id, order)

    def _canceled(self, e: Any, _: Any) -> None:
        order = self._lifecycle(e)
        order.canceled(at=e.ts_event)
        self._retire(e.client_order_id, order)

    def _expired(self, e: Any, _: Any) -> None:
        order = self._lifecycle(e)
        order.expired(at=e.ts_event)
        self._retire(e.client_order_id, order)

    def _updated(self, e: Any, _: Any) -> None:
        if e.quantity is not None:
            self._lifecycle(e).quantity = e.quantity.as_double()

    # -- Strategy plane: PnL and portfolio ---------------------------------------------

    def _position(self, event: Any, read: tuple[Any, float | None]) -> None:
        """Books the change of a position cycle's realized PnL (net of commissions, what
        moves a margin account's balance) in USD at the rate when it came; an amount with
        no rate then is kept in its currency and converted when the gauges are set."""
        try:
            pnl, rate = read  # the realized PnL and its USD rate, read as the event came
            position_id = event.position_id
            amount = pnl.as_double() if pnl is not None else 0.0
            previous = 0.0 if event.__class__ is PositionOpened else self._cycle_realized.get(position_id, 0.0)
            if event.__class__ is PositionClosed:
                self._cycle_realized.pop(position_id, None)
            else:
                self._cycle_realized[position_id] = amount
            strategy = event.strategy_id.value
            self._strategies.add(strategy)
            change = amount - previous
            if rate is not None:
                self._realized_usd[strategy] = self._realized_usd.get(strategy, 0.0) + change * rate
            elif change:
                key = (strategy, event.instrument_id.venue, pnl.currency)
                self._unconverted[key] = self._unconverted.get(key, 0.0) + change
            else:
                self._realized_usd.setdefault(strategy, 0.0)
        except Exception as error:  # noqa: BLE001
            self._failed(self._strategy, error, "pnl_realized_usd")

    def realized_pnl(self) -> dict[str, float | None]:
        """Each strategy's realized PnL in USD (``pnl_realized_usd``): the sum of its
        position cycles' realized PnL, closed and open, converted when booked; None for a
        strategy with an amount that has no USD rate yet."""
        out: dict[str, float | None] = dict(self._realized_usd)
        for (strategy, venue, currency), amount in tuple(self._unconverted.items()):
            rate = self._rate(currency, venue)
            if rate is None:
                out[strategy] = None
                self._warn_missing("no_rate", currency.code)
                continue
            del self._unconverted[(strategy, venue, currency)]
            self._realized_usd[strategy] = self._realized_usd.get(strategy, 0.0) + amount * rate
            total = out.get(strategy, 0.0)
            if total is not None:
                out[strategy] = total + amount * rate
        return out

    def _on_timer(self, event: Any) -> None:
        self.record_portfolio()

    def record_portfolio(self) -> None:
        """Record the queued events, then set the PnL gauges of every strategy seen and the
        portfolio gauges now: those that can be computed in full; each of the others is
        counted as a drop (``no_rate``, ``no_mark``) and keeps its last value."""
        self.flush()
        self._last_record = time.monotonic()
        m = self._strategy
        if m is None:
            return
        try:
            self._record_portfolio(m)
        except Exception as error:  # noqa: BLE001
            self._failed(m, error, "portfolio_value_usd")

    def _record_portfolio(self, m: PlaneMetrics) -> None:
        cache = self.cache
        gross = net = 0.0
        missing: str | None = None  # why an open position could not be marked or converted
        unrealized: dict[str, float] = {}
        unmarked: dict[str, str] = {}  # strategy -> why its unrealized PnL is unknown
        # Per account: the open positions' unrealized PnL (a margin account's value adds it),
        # and the market value of holdings that are not balances (a cash account's).
        account_unrealized: dict[Any, float] = {}
        account_holdings: dict[Any, float] = {}
        venues: set[Any] = set()  # where the positions trade: rates for an account's balances
        for position in cache.positions_open():
            iid = position.instrument_id
            strategy = position.strategy_id.value
            self._strategies.add(strategy)
            price = self._mark(position)
            if price is None:
                missing = unmarked[strategy] = "no_mark"
                self._warn_missing("no_mark", iid.value)
                continue
            pnl = position.unrealized_pnl(price)
            notional = position.notional_value(price)
            pnl_rate = self._rate(pnl.currency, iid.venue)
            notional_rate = self._rate(notional.currency, iid.venue)
            if pnl_rate is None or notional_rate is None:
                missing = unmarked[strategy] = "no_rate"
                self._warn_missing("no_rate", (pnl.currency if pnl_rate is None else notional.currency).code)
                continue
            usd = pnl.as_double() * pnl_rate
            unrealized[strategy] = unrealized.get(strategy, 0.0) + usd
            account = position.account_id
            venues.add(iid.venue)
            account_unrealized[account] = account_unrealized.get(account, 0.0) + usd
            size = notional.as_double() * notional_rate
            signed = size if position.side == PositionSide.LONG else -size
            gross += size
            net += signed
            instrument = cache.instrument(iid)
            if instrument is not None and instrument.get_base_currency() is None:
                account_holdings[account] = account_holdings.get(account, 0.0) + signed
        realized = self.realized_pnl()
        for strategy in self._strategies:
            r = realized.get(strategy, 0.0)
            u = None if strategy in unmarked else unrealized.get(strategy, 0.0)
            self._set(m, "pnl_realized_usd", r, "no_rate", strategy=strategy)
            self._set(m, "pnl_unrealized_usd", u, unmarked.get(strategy, ""), strategy=strategy)
            total = r + u if r is not None and u is not None else None
            self._set(m, "pnl_total_usd", total, "no_rate" if r is None else unmarked.get(strategy, ""),
                      strategy=strategy)  # fmt: skip
        value: float | None = 0.0
        for account in cache.accounts():
            venue = Venue(account.id.get_issuer())
            for currency, money in account.balances_total().items():
                rate = self._rate(currency, venue)
                for other in venues if rate is None else ():  # a broker's account, its venues' rates
                    rate = self._rate(currency, other)
                    if rate is not None:
                        break
                if rate is None or value is None:
                    if rate is None:
                        self._warn_missing("no_rate", currency.code)
                    value = None
                    missing = missing or "no_rate"
                    continue
                value += money.as_double() * rate
            if value is not None:
                held = account_holdings if account.is_cash_account else account_unrealized
                value += held.get(account.id, 0.0)
        complete = missing is None
        self._set(m, "portfolio_gross_exposure_usd", gross if complete else None, missing or "")
        self._set(m, "portfolio_net_exposure_usd", net if complete else None, missing or "")
        self._set(m, "portfolio_value_usd", value if complete else None, missing or "")

    @staticmethod
    def _set(m: PlaneMetrics, key: str, value: float | None, reason: str, **labels: str) -> None:
        """Set a gauge, or count why it could not be computed."""
        if value is not None:
            m.set(key, value, **labels)
        else:
            m.count_drop(key, reason)

    def _mark(self, position: Any) -> Any:
        """The price an open position is marked at, as the engine's portfolio marks it: the
        bid for a long, the ask for a short (the quotes', else the bars' of that price
        type), else the last trade (or LAST bar), else the latest EXTERNAL bar's close;
        then the order book's best bid (long) or ask (short)."""
        cache = self.cache
        iid = position.instrument_id
        side = position.side
        kind = PriceType.BID if side == PositionSide.LONG else PriceType.ASK
        price = cache.price(iid, kind)
        if price is None:
            price = cache.price(iid, PriceType.LAST)
        if price is None:
            price = self._bar_close.get(iid)
        if price is None:
            book = cache.order_book(iid)
            if book is not None:
                price = book.best_bid_price() if side == PositionSide.LONG else book.best_ask_price()
        return price

    def _rate(self, currency: Any, venue: Any) -> float | None:
        """USD per unit of ``currency``: 1 for USD; the configured rate; the engine's mid
        rate at ``venue``; else the engine's rate into a configured currency times its
        rate. None when there is none."""
        code = currency.code
        if code == "USD":
            return 1.0
        fixed = self._fixed_rates.get(code)
        if fixed is not None:
            return fixed
        rate = self._xrate(venue, currency, USD)
        if rate is not None:
            return rate
        for other, other_rate in self._via:
            rate = self._xrate(venue, currency, other)
            if rate is not None:
                return rate * other_rate
        return None

    def _xrate(self, venue: Any, from_currency: Any, to_currency: Any) -> float | None:
        try:
            rate = self.cache.get_xrate(venue, from_currency, to_currency, PriceType.MID)
        except Exception:  # noqa: BLE001 - a currency the engine cannot look up: no rate
            return None
        if rate is None or not rate or math.isnan(rate):
            return None
        return float(rate)

    def _missing(self, metrics: PlaneMetrics | None, metric: str, reason: str, subject: str) -> None:
        """A figure that cannot be computed: counted in the drop self-metric, logged once
        per (currency or instrument, reason) with what to do."""
        if metrics is not None:
            metrics.count_drop(metric, reason)
        self._warn_missing(reason, subject)

    def _warn_missing(self, reason: str, subject: str) -> None:
        """Log once per (currency or instrument, reason) what cannot be computed and what to do."""
        if (subject, reason) in self._warned:
            return
        self._warned.add((subject, reason))
        with contextlib.suppress(Exception):  # a log handler's failure is not the engine's
            logger.warning("%s [counted in %s_total{reason=%s}]", _MISSING[reason].format(subject), DROPPED_METRIC,
                           reason)  # fmt: skip

    @staticmethod
    def _failed(metrics: PlaneMetrics | None, error: BaseException, metric: str) -> None:
        if metrics is not None:
            metrics.record_failure(error, metric)
