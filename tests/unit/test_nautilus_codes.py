"""NautilusTrader's reject and denial reasons as bounded codes: every message shape of
NautilusTrader 1.220 and 1.221, ids that contain every code word, real events, and a real
BacktestEngine whose strategy and instruments are named with code words."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
from nautilus_trader.common.component import TestClock
from nautilus_trader.common.factories import OrderFactory
from nautilus_trader.config import LoggingConfig, StrategyConfig
from nautilus_trader.core.datetime import format_iso8601, unix_nanos_to_dt
from nautilus_trader.core.uuid import UUID4
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import QuoteTick
from nautilus_trader.model.enums import AccountType, OmsType, OrderSide, TimeInForce
from nautilus_trader.model.events import OrderDenied, OrderRejected
from nautilus_trader.model.identifiers import (
    AccountId,
    ClientOrderId,
    InstrumentId,
    OrderListId,
    PositionId,
    StrategyId,
    Symbol,
    TradeId,
    TraderId,
    Venue,
)
from nautilus_trader.model.instruments import CurrencyPair
from nautilus_trader.model.objects import Money, Quantity
from nautilus_trader.model.position import Position
from nautilus_trader.test_kit.providers import TestInstrumentProvider
from nautilus_trader.test_kit.stubs.events import TestEventStubs
from nautilus_trader.trading.strategy import Strategy

from trading_telemetry.integrations._nautilus_codes import (
    DENIAL_CODE_NAMES,
    DENIAL_CODES,
    DENIAL_SHAPES,
    REJECT_CODE_NAMES,
    REJECT_CODES,
    REJECT_SHAPES,
    denial_check_type,
    denied_check_type,
    reject_code,
    rejected_code,
)

T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z, in UNIX nanoseconds
BOOK = "bid=1.10374, ask=1.10384"


@dataclass(frozen=True)
class Ids:
    """The identifiers an order event carries, which the engine quotes in its reasons."""

    strategy: StrategyId
    instrument: InstrumentId
    order: ClientOrderId
    trader: TraderId
    account: AccountId

    @property
    def market_order(self) -> Any:
        """A real order with these ids (its repr is quoted by the short-selling reject)."""
        factory = OrderFactory(trader_id=self.trader, strategy_id=self.strategy, clock=TestClock())
        return factory.market(self.instrument, OrderSide.SELL, Quantity.from_int(100), client_order_id=self.order)

    @property
    def position(self) -> Any:
        """A real NETTING position of this strategy in this instrument (``{position}``)."""
        data = CurrencyPair.to_dict(TestInstrumentProvider.default_fx_ccy("EUR/USD"))
        data["id"], data["raw_symbol"] = self.instrument.value, self.instrument.symbol.value
        instrument = CurrencyPair.from_dict(data)
        factory = OrderFactory(trader_id=self.trader, strategy_id=self.strategy, clock=TestClock())
        order = factory.market(self.instrument, OrderSide.BUY, Quantity.from_int(100_000))
        fill = TestEventStubs.order_filled(order, instrument, position_id=self.netting_position,
                                          account_id=self.account, trade_id=TradeId("E-1"))  # fmt: skip
        return Position(instrument, fill)

    @property
    def netting_position(self) -> PositionId:
        """The id of a NETTING position, ``{instrument_id}-{strategy_id}``."""
        return PositionId(f"{self.instrument}-{self.strategy}")

    @property
    def given_position(self) -> PositionId:
        """A position id the strategy chose, made of the instrument and order ids."""
        return PositionId(f"{self.instrument}-{self.order}")

    @property
    def order_list(self) -> OrderListId:
        """An order list id made of the order id."""
        return OrderListId(f"OL-{self.order}")


PLAIN = Ids(
    strategy=StrategyId("EMACross-001"),
    instrument=InstrumentId.from_str("EUR/USD.SIM"),
    order=ClientOrderId("O-20231114-221320-001-001-1"),
    trader=TraderId("TRADER-001"),
    account=AccountId("SIM-001"),
)

Shape = tuple[str, str, str]
"""A name, the reason as NautilusTrader writes it (``{i.order}``: the event's ids), its code."""


def render(template: str, ids: Ids) -> str:
    """The reason of ``template`` with ``ids`` quoted as the engine quotes them."""
    return template.format(i=ids)


BOOK = "bid=1.10374, ask=1.10384"
ISO = format_iso8601(unix_nanos_to_dt(T0))
GTD = unix_nanos_to_dt(T0 - 1_000_000_000)

# backtest/engine.pyx (OrderMatchingEngine) and the live adapters; the same in 1.220 and 1.221.
REJECT_SHAPES_RENDERED: list[Shape] = [
    ("post only limit", f"POST_ONLY LIMIT BUY order limit px of 1.10384 would have been a TAKER: {BOOK}", "post_only"),
    ("post only stop limit", f"POST_ONLY STOP_LIMIT SELL order limit px of 1.10374 would have been a TAKER: {BOOK}",
     "post_only"),
    ("reduce only", "REDUCE_ONLY MARKET BUY order would have increased position", "reduce_only"),
    ("reduce only limit", "REDUCE_ONLY LIMIT SELL order would have increased position", "reduce_only"),
    ("size precision", "Invalid size precision for order {i.order}, was 1 when {i.instrument} size precision is 0",
     "invalid_precision"),
    ("price precision", "Invalid price precision for order {i.order}, was 6 when {i.instrument} price precision is 5",
     "invalid_precision"),
    ("trigger precision", "Invalid trigger price precision for order {i.order}, was 6 when {i.instrument} price "
     "precision is 5", "invalid_precision"),
    ("activation precision", "Invalid activation price precision for order {i.order}, was 6 when {i.instrument} "
     "price precision is 5", "invalid_precision"),
    ("stop market", f"STOP_MARKET BUY order stop px of 1.10374 was in the market: {BOOK}", "stop_in_market"),
    ("market if touched", f"MARKET_IF_TOUCHED SELL order stop px of 1.10384 was in the market: {BOOK}",
     "stop_in_market"),
    ("stop limit", f"STOP_LIMIT BUY order trigger stop px of 1.10374 was in the market: {BOOK}", "stop_in_market"),
    ("trailing stop activation", f"TRAILING_STOP_MARKET SELL order activation px of 1.10384 was in the market: {BOOK}",
     "stop_in_market"),
    ("no market", "no market for {i.instrument}", "no_market"),
    ("no market no fills", "no market with no fills for {i.instrument}", "no_market"),
    ("short selling, no position", "SHORT SELLING not permitted on a CASH account with position None and order "
     "{i.market_order!r}", "short_selling"),
    ("short selling, a position", "SHORT SELLING not permitted on a CASH account with position {i.position} and "
     "order {i.market_order!r}", "short_selling"),
    ("contract not yet active", f"Contract {{i.instrument}} not yet active, activation {ISO}", "market_closed"),
    ("contract expired", f"Contract {{i.instrument}} has expired, expiration {ISO}", "market_closed"),
    ("OTO parent rejected", "REJECT OTO from {i.order}", "contingent"),
    ("contingent closed", "Contingent order {i.order} already closed", "contingent"),
    # adapters/interactive_brokers/execution.py
    ("IB list", "The order has been rejected due to the rejection of the order with {i.order!r} in the list",
     "contingent"),
    # adapters/binance: str(BinanceError.message), a dict or its JSON text
    ("Binance post only", "{{'code': -5022, 'msg': 'Due to the order could not be executed as maker, the Post Only "
     "order will be rejected.'}}", "post_only"),
    ("Binance reduce only", "{{'code': -2022, 'msg': 'ReduceOnly Order is rejected.'}}", "reduce_only"),
    ("Binance precision", '{{"code":-1111,"msg":"Precision is over the maximum defined for this asset."}}',
     "invalid_precision"),
    ("Binance trigger", "{{'code': -2021, 'msg': 'Order would immediately trigger.'}}", "stop_in_market"),
    ("Binance margin", "{{'code': -2019, 'msg': 'Margin is insufficient.'}}", "insufficient_funds"),
    ("Binance balance", "{{'code': -2018, 'msg': 'Balance is insufficient.'}}", "insufficient_funds"),
    ("Binance too many orders", "{{'code': -1015, 'msg': 'Too many new orders; current limit is 50 orders per 10 "
     "SECOND.'}}", "rate_limit"),
    ("Binance duplicate", "{{'code': -4116, 'msg': 'ClientOrderId is duplicated.'}}", "duplicate"),
    ("Binance min notional", "{{'code': -4164, 'msg': \"Order's notional must be no smaller than 5 (unless you "
     "choose reduce only).\"}}", "other"),
    # A venue's own words, quoting the order's ids.
    ("venue margin", "Order {i.order} on {i.instrument} for {i.strategy}: Insufficient margin", "insufficient_funds"),
    ("venue buying power", "{i.order!r}: not enough buying power", "insufficient_funds"),
    ("IB initial margin", "Order rejected - reason:YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED "
     "POSITION YOUR EQUITY WITH LOAN VALUE [1000.00 USD] MUST EXCEED THE INITIAL MARGIN [2000.00 USD]",
     "insufficient_funds"),
    ("venue rate limit", "rate limit exceeded for account {i.account}", "rate_limit"),
    ("venue throttled", "Request throttled, try again", "rate_limit"),
    ("IB max rate", "Max rate of messages per second has been exceeded:max=50 rec=51", "rate_limit"),
    ("venue duplicate", "Duplicate order id {i.order}", "duplicate"),
    ("venue short sale", "{i.instrument}: short sale restricted", "short_selling"),
    ("venue halted", "Trading halted in {i.instrument.symbol}", "market_closed"),
    ("venue market closed", "market is closed", "market_closed"),
    ("venue OCO", "OCO sibling of {i.order} filled", "contingent"),
    ("venue no market", "No market for {i.instrument.symbol} right now", "no_market"),
    ("venue post only", "post-only order would take liquidity", "post_only"),
    ("venue reduce only", "reduce-only {i.order} would flip the position", "reduce_only"),
    ("venue stop", "stop price was in the market", "stop_in_market"),
    ("venue precision", "{i.instrument}: bad price precision", "invalid_precision"),
    # live/reconciliation.py, Binance futures' websocket, unknown words
    ("reconciliation unknown", "UNKNOWN", "other"),
    ("reconciliation not found", "ORDER_NOT_FOUND_AT_VENUE", "other"),
    ("Binance futures websocket", "REJECTED", "other"),
    ("venue quoting ids only", "Order {i.order!r} of {i.strategy} in {i.instrument} refused", "other"),
    ("venue quoting a position", "{i.netting_position!r} locked", "other"),
    ("venue starting with an id", "{i.instrument} halted", "market_closed"),
]  # fmt: skip

# risk/engine.pyx (RiskEngine), trading/strategy.pyx, execution/engine.pyx, the adapters.
DENIAL_SHAPES_RENDERED: list[Shape] = [
    ("reduce only, netting position", "Reduce only order would increase position {i.netting_position!r}",
     "reduce_only"),
    ("reduce only, a given position", "Reduce only order would increase position {i.given_position!r}",
     "reduce_only"),
    ("instrument not found", "Instrument for {i.instrument} not found", "unknown_instrument"),
    ("list instrument not found", "no instrument found for {i.instrument}", "unknown_instrument"),
    ("GTD passed", f"GTD {GTD} already passed", "gtd_expired"),
    ("price precision", "price 1.103745 invalid (precision 6 > 5)", "precision"),
    ("trigger precision", "trigger price 1.103745 invalid (precision 6 > 5)", "precision"),
    ("price not positive", "price -1.10374 invalid (not positive)", "invalid_price"),
    ("trigger not positive", "trigger price 0.00000 invalid (not positive)", "invalid_price"),
    ("quantity precision", "quantity 1000.5 invalid (precision 1 > 0)", "precision"),
    ("maximum trade size", "quantity 20000000 invalid (> maximum trade size of 10000000)", "max_quantity"),
    ("minimum trade size", "quantity 1 invalid (< minimum trade size of 1000)", "min_quantity"),
    ("1.221 effective maximum", "QUANTITY_EXCEEDS_MAXIMUM: effective_quantity=20000000, max_quantity=10000000",
     "max_quantity"),
    ("1.221 effective minimum", "QUANTITY_BELOW_MINIMUM: effective_quantity=1, min_quantity=1000", "min_quantity"),
    ("max notional per order", "NOTIONAL_EXCEEDS_MAX_PER_ORDER: max_notional=2000000.00 USD, "
     "notional=5500000.00 USD", "max_notional_per_order"),
    ("instrument min notional", "NOTIONAL_LESS_THAN_MIN_FOR_INSTRUMENT: min_notional=10.00 USD , "
     "notional=1.00 USD", "instrument_notional"),
    ("instrument max notional", "NOTIONAL_GREATER_THAN_MAX_FOR_INSTRUMENT: max_notional=1000000.00 USD, "
     "notional=5500000.00 USD", "instrument_notional"),
    ("free balance", "NOTIONAL_EXCEEDS_FREE_BALANCE: free=1.00 USD, balance_impact=-9.00 USD", "balance"),
    ("1.220 free balance", "NOTIONAL_EXCEEDS_FREE_BALANCE: free=1.00 USD, notional=-9.00 USD", "balance"),
    ("cumulative free balance", "CUM_NOTIONAL_EXCEEDS_FREE_BALANCE: free=1.00 USD, cum_notional=9.00 USD",
     "balance"),
    ("submit rate", "Exceeded MAX_ORDER_SUBMIT_RATE", "rate_limit"),
    ("modify rate", "Exceeded MAX_ORDER_MODIFY_RATE", "rate_limit"),
    ("halted", "TradingState.HALTED", "trading_state"),
    ("reducing long", "BUY when TradingState.REDUCING and LONG {i.instrument}", "trading_state"),
    ("reducing short", "SELL when TradingState.REDUCING and SHORT {i.instrument}", "trading_state"),
    ("list reducing long", "OrderList contains BUY when TradingState.REDUCING and LONG {i.instrument}",
     "trading_state"),
    ("list reducing short", "OrderList contains SELL when TradingState.REDUCING and SHORT {i.instrument}",
     "trading_state"),
    ("modify halted", "TradingState is HALTED", "trading_state"),
    ("modify reducing", "TradingState is REDUCING and update will increase exposure", "trading_state"),
    ("duplicate order", "duplicate {i.order!r}", "duplicate"),
    ("duplicate list", "duplicate {i.order_list!r}", "duplicate"),
    # execution/engine.pyx, and the risk engine's literal (not an f-string) list denial
    ("no price to convert", "no-price-to-convert-quote-qty {i.instrument}", "other"),
    ("order list literal", "OrderList {{command.order_list.id.to_str()}} DENIED", "other"),
    # the adapters' own denials (Polymarket, Binance), and words quoting the ids
    ("adapter reduce only", "REDUCE_ONLY_NOT_SUPPORTED", "reduce_only"),
    ("adapter post only", "POST_ONLY_NOT_SUPPORTED", "other"),
    ("adapter OCO", "UNSUPPORTED_OCO_CONDITIONAL_ORDERS", "other"),
    ("adapter balance", "{i.order} for {i.instrument}: balance too low", "balance"),
    ("adapter rate", "rate limit for {i.strategy}", "rate_limit"),
    ("adapter halted", "{i.instrument} halted", "trading_state"),
    ("adapter precision", "price precision of {i.instrument}", "precision"),
    ("adapter GTD", "GTD not supported for {i.order!r}", "gtd_expired"),
    ("adapter duplicate", "duplicated {i.order}", "duplicate"),
    ("adapter instrument", "unknown instrument {i.instrument}", "unknown_instrument"),
    ("adapter max size", "{i.instrument}: maximum trade size is 100", "max_quantity"),
    ("adapter min size", "{i.instrument}: minimum trade size is 1", "min_quantity"),
    ("adapter quoting ids only", "{i.order!r} for {i.strategy} at {i.instrument} refused", "other"),
]  # fmt: skip

# Every word of every table, and of the engine's fixed texts, as an id may contain it.
CODE_WORDS = sorted(
    REJECT_CODE_NAMES
    | DENIAL_CODE_NAMES
    | {
        "REBALANCE", "post-only", "post only", "PostOnly", "POST_ONLY LIMIT BUY order", "would have been a TAKER",
        "executed as maker", "reduce-only", "reduce only", "ReduceOnly", "REDUCE_ONLY MARKET BUY order",
        "would have increased position", "Reduce only order would increase position", "Invalid price precision",
        "was in the market", "STOP_MARKET BUY order stop px of", "would immediately trigger", "no market",
        "no market for", "short selling", "SHORT SELLING", "short sale", "halt", "halted", "market closed",
        "closed market", "Contract", "not yet active", "has expired", "insufficient", "margin", "balance",
        "buying power", "rate limit", "too many", "throttle", "max rate", "duplicate", "duplicated", "oto",
        "oco", "ouo", "OTO", "REJECT OTO from", "contingent", "Contingent order", "already closed",
        "The order has been rejected due to the rejection of the order with", "maximum trade size",
        "minimum trade size", "QUANTITY_EXCEEDS_MAXIMUM:", "QUANTITY_BELOW_MINIMUM:",
        "NOTIONAL_EXCEEDS_MAX_PER_ORDER:", "NOTIONAL_LESS_THAN_MIN_FOR_INSTRUMENT:",
        "NOTIONAL_GREATER_THAN_MAX_FOR_INSTRUMENT:", "NOTIONAL_EXCEEDS_FREE_BALANCE:",
        "CUM_NOTIONAL_EXCEEDS_FREE_BALANCE:", "free_balance", "Exceeded MAX_ORDER_SUBMIT_RATE",
        "MAX_ORDER_MODIFY_RATE", "TradingState.HALTED", "TradingState.REDUCING", "TradingState is", "reducing",
        "gtd", "GTD", "already passed", "no instrument", "unknown instrument", "instrument not found",
        "Instrument for", "not found", "invalid (not positive)", "invalid (precision", "price 1.1 invalid",
        "quantity 1 invalid", "trigger", "{'code': -2019", '{"code":-5022', "UNKNOWN",
    }
)  # fmt: skip


def _id_text(draw: st.DrawFn) -> str:
    """Every code word, shuffled, each in its own case or upper or lower case, joined."""
    words = draw(st.permutations(CODE_WORDS))
    cased = [draw(st.sampled_from((w, w.upper(), w.lower()))) for w in words]
    return draw(st.sampled_from(("-", " ", ".", "/", "_", ""))).join(cased)


@st.composite
def hostile_ids(draw: st.DrawFn) -> Ids:
    """Strategy, instrument (symbol and venue), order, trader and account ids made of code words."""
    venue = draw(st.sampled_from(("SIM", "MARGIN", "HALTED", "TradingState.HALTED", "BALANCE")))
    return Ids(
        strategy=StrategyId(f"{_id_text(draw)}-{draw(st.sampled_from(('REBALANCE', 'POST_ONLY-001', '001')))}"),
        instrument=InstrumentId(Symbol(_id_text(draw)), Venue(venue)),
        order=ClientOrderId(draw(st.sampled_from(("POST_ONLY-001", "O-REBALANCE-1"))) + _id_text(draw)),
        trader=TraderId(f"{_id_text(draw)}-001"),
        account=AccountId(f"{venue}-{_id_text(draw)}"),
    )


def _names(shapes: list[Shape]) -> list[str]:
    return [name for name, _, _ in shapes]


def _rejected(ids: Ids, reason: str, due_post_only: bool = False) -> OrderRejected:
    return OrderRejected(ids.trader, ids.strategy, ids.instrument, ids.order, ids.account, reason, UUID4(), T0, T0,
                         due_post_only=due_post_only)  # fmt: skip


def _denied(ids: Ids, reason: str) -> OrderDenied:
    return OrderDenied(ids.trader, ids.strategy, ids.instrument, ids.order, reason, UUID4(), T0)


@pytest.mark.parametrize(("template", "code"), [s[1:] for s in REJECT_SHAPES_RENDERED],
                         ids=_names(REJECT_SHAPES_RENDERED))  # fmt: skip
def test_every_reject_shape_has_its_code(template: str, code: str) -> None:
    """A venue reject rendered as NautilusTrader renders it maps to its documented code, from the event too."""
    reason = render(template, PLAIN)
    assert reject_code(reason) == code
    assert rejected_code(_rejected(PLAIN, reason)) == code


@pytest.mark.parametrize(("template", "code"), [s[1:] for s in DENIAL_SHAPES_RENDERED],
                         ids=_names(DENIAL_SHAPES_RENDERED))  # fmt: skip
def test_every_denial_shape_has_its_code(template: str, code: str) -> None:
    """A denial rendered as NautilusTrader renders it maps to its documented check type, from the event too."""
    reason = render(template, PLAIN)
    assert denial_check_type(reason) == code
    assert denied_check_type(_denied(PLAIN, reason)) == code


@pytest.mark.parametrize(
    ("rules", "shapes", "rendered"),
    [(REJECT_CODES, REJECT_SHAPES, REJECT_SHAPES_RENDERED), (DENIAL_CODES, DENIAL_SHAPES, DENIAL_SHAPES_RENDERED)],
    ids=["reject", "denial"],
)
def test_every_rule_is_exercised(rules: Any, shapes: Any, rendered: list[Shape]) -> None:
    """Each rule of the tables decides the code of at least one rendered message above."""
    texts = [render(template, PLAIN) for _, template, _ in rendered]
    for pattern, code in rules:
        hit = pattern.match if (pattern, code) in shapes else pattern.search
        assert any(hit(text) for text in texts), f"no example for {pattern.pattern!r} -> {code}"


def test_the_code_names() -> None:
    """The codes are the documented ones; ``invalid_price`` is the risk engine's non-positive price check."""
    assert {
        "post_only", "reduce_only", "invalid_precision", "stop_in_market", "no_market", "short_selling",
        "market_closed", "insufficient_funds", "rate_limit", "duplicate", "contingent", "other",
    } == REJECT_CODE_NAMES  # fmt: skip
    assert {
        "max_quantity", "min_quantity", "max_notional_per_order", "instrument_notional", "balance", "rate_limit",
        "trading_state", "precision", "invalid_price", "reduce_only", "gtd_expired", "duplicate",
        "unknown_instrument", "other",
    } == DENIAL_CODE_NAMES  # fmt: skip


@settings(max_examples=5, derandomize=True, database=None, deadline=None)
@given(ids=hostile_ids())
def test_the_hostile_ids_hold_every_code_word(ids: Ids) -> None:
    """The properties below are meaningful: a drawn id's text contains every code word."""
    for value in (ids.strategy.value, ids.instrument.symbol.value, ids.order.value):
        assert all(word.lower() in value.lower() for word in CODE_WORDS)


@settings(max_examples=40, derandomize=True, database=None, deadline=None)
@given(ids=hostile_ids())
def test_ids_never_choose_the_code(ids: Ids) -> None:
    """Ids that contain every code word give every message shape the code it has with plain ids."""
    for name, template, code in REJECT_SHAPES_RENDERED:
        reason = render(template, ids)
        assert rejected_code(_rejected(ids, reason)) == code, (name, reason)
    for name, template, code in DENIAL_SHAPES_RENDERED:
        reason = render(template, ids)
        assert denied_check_type(_denied(ids, reason)) == code, (name, reason)


def _by_shape(rendered: list[Shape], shapes: Any) -> list[Shape]:
    """The messages whose code a fixed shape gives (the others are a venue's own words)."""
    return [s for s in rendered if any(pattern.match(render(s[1], PLAIN)) for pattern, _ in shapes)]


ENGINE_SHAPES = [(_by_shape(REJECT_SHAPES_RENDERED, REJECT_SHAPES), reject_code),
                 (_by_shape(DENIAL_SHAPES_RENDERED, DENIAL_SHAPES), denial_check_type)]  # fmt: skip


@settings(max_examples=30, derandomize=True, database=None, deadline=None)
@given(ids=hostile_ids())
def test_the_engine_shapes_need_no_ids(ids: Ids) -> None:
    """The fixed shapes get their code from the text alone, whatever ids it quotes."""
    for shapes, code_of in ENGINE_SHAPES:
        for name, template, code in shapes:
            assert code_of(render(template, ids)) == code, name


class _Hostile:
    """An object whose ``__str__`` and attributes raise."""

    def __str__(self) -> str:
        raise RuntimeError("no text")

    def __repr__(self) -> str:
        return "_Hostile()"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise RuntimeError(name)  # reason, due_post_only, strategy_id, ...


class _HostileStr(str):
    """A ``str`` whose methods raise."""

    def __str__(self) -> str:
        raise RuntimeError("no text")

    def __repr__(self) -> str:
        return "_HostileStr()"

    def lower(self) -> str:
        raise RuntimeError("no lower")


def _raising_ids() -> Iterator[str]:
    yield "EUR/USD.SIM"
    raise RuntimeError("no more ids")


anything = st.one_of(
    st.text(max_size=300), st.binary(max_size=50), st.none(), st.integers(), st.floats(), st.booleans(),
    st.lists(st.text(max_size=20), max_size=3), st.just(_Hostile()), st.just(_HostileStr("post_only")),
    st.sampled_from([render(t, PLAIN) for _, t, _ in REJECT_SHAPES_RENDERED + DENIAL_SHAPES_RENDERED]),
)  # fmt: skip


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(reason=anything, ids=st.lists(st.one_of(st.text(max_size=20), st.none(), st.integers()), max_size=4))
def test_any_object_gets_a_code_of_the_bounded_set(reason: object, ids: list[Any]) -> None:
    """Whatever the reason, the ids or the event, the code is one of the documented ones and nothing raises."""
    assert reject_code(reason, ids) in REJECT_CODE_NAMES
    assert denial_check_type(reason, ids) in DENIAL_CODE_NAMES
    assert rejected_code(reason) in REJECT_CODE_NAMES
    assert denied_check_type(reason) in DENIAL_CODE_NAMES


@pytest.mark.parametrize("reason", [b"post_only", None, 42, _Hostile(), _HostileStr("post_only")])
def test_what_is_not_text_is_other(reason: object) -> None:
    """Bytes, None, numbers, an object whose ``__str__`` raises: ``other``; a str subclass is read as its text."""
    expected = "post_only" if isinstance(reason, str) else "other"
    assert reject_code(reason) == expected
    assert denial_check_type(reason) == "other"
    assert rejected_code(_Hostile()) == "other"
    assert denied_check_type(_Hostile()) == "other"


def test_ids_that_raise_give_other() -> None:
    """An ids iterable that raises does not raise: the code is ``other``."""
    assert reject_code("no market for EUR/USD.SIM", _raising_ids()) == "other"
    assert denial_check_type("TradingState.HALTED", _raising_ids()) == "other"


def test_due_post_only_comes_first() -> None:
    """A reject the venue flagged ``due_post_only`` is ``post_only`` whatever its text."""
    assert rejected_code(_rejected(PLAIN, "Margin is insufficient.", due_post_only=True)) == "post_only"
    assert rejected_code(_rejected(PLAIN, "REJECTED", due_post_only=True)) == "post_only"
    assert rejected_code(_rejected(PLAIN, "REJECTED")) == "other"


def test_the_rebalance_strategy() -> None:
    """A strategy named REBALANCE: its reduce-only denial is ``reduce_only``, not ``balance``."""
    ids = Ids(StrategyId("REBALANCE-001"), InstrumentId.from_str("EUR/USD.SIM"), ClientOrderId("O-1"),
              TraderId("TRADER-001"), AccountId("SIM-001"))  # fmt: skip
    reason = f"Reduce only order would increase position {PositionId('EUR/USD.SIM-REBALANCE-001')!r}"
    assert denied_check_type(_denied(ids, reason)) == "reduce_only"
    assert denial_check_type(reason) == "reduce_only"


def test_the_event_ids_are_taken_out_of_venue_words() -> None:
    """Venue words are read without the event's ids: a MARGIN strategy's refusal is not insufficient funds."""
    ids = Ids(StrategyId("MARGIN-REBALANCE"), InstrumentId.from_str("HALT/USD.MARGIN"), ClientOrderId("O-OCO-1"),
              TraderId("THROTTLE-001"), AccountId("MARGIN-001"))  # fmt: skip
    reason = f"Order {ids.order} of {ids.strategy} on {ids.instrument} ({ids.instrument.symbol}) by {ids.trader}"
    assert rejected_code(_rejected(ids, reason)) == "other"
    assert rejected_code(_rejected(ids, reason + ": Insufficient margin")) == "insufficient_funds"
    assert denied_check_type(_denied(ids, reason)) == "other"
    venue_order = OrderRejected(ids.trader, ids.strategy, ids.instrument, ids.order, ids.account,
                                "DUPLICATE-7 refused", UUID4(), T0, T0)  # fmt: skip
    assert rejected_code(venue_order) == "duplicate"  # a word of the venue's own, not an id of the event
    assert reject_code("no fill for DUPLICATE-7", ids=["DUPLICATE-7"]) == "other"
    assert reject_code("PositionId('X-DUPLICATE-1') is flat") == "other"  # a quoted foreign id


# -- A real BacktestEngine -------------------------------------------------------------------------

VENUE = Venue("HALTED")
STRATEGY = "REBALANCE-MARGIN.POST_ONLY"
# The engine's spread detection reads "_" in a symbol: these symbols use none.
TRADED = InstrumentId(Symbol("EUR/USD post-only MARGIN no market"), VENUE)
QUIET = InstrumentId(Symbol("GBP/USD reduce-only balance TradingState.HALTED"), VENUE)  # never quoted


def _pair(instrument_id: InstrumentId, like: str) -> CurrencyPair:
    data = CurrencyPair.to_dict(TestInstrumentProvider.default_fx_ccy(like, VENUE))
    data["id"], data["raw_symbol"] = instrument_id.value, instrument_id.symbol.value
    return CurrencyPair.from_dict(data)


class _Refused(Strategy):  # type: ignore[misc]
    """Sends, on the first quote, orders the risk engine denies and the venue rejects."""

    def __init__(self, config: StrategyConfig) -> None:
        super().__init__(config)
        self.refused: list[Any] = []
        self.sent: dict[str, Any] = {}

    def on_start(self) -> None:
        self.subscribe_quote_ticks(TRADED)

    def on_quote_tick(self, tick: QuoteTick) -> None:
        if self.sent:
            return
        f, qty = self.order_factory, Quantity.from_int(100_000)
        past = self.clock.utc_now() - pd.Timedelta(seconds=1)
        orders = {
            "reduce_only denied": (f.market(TRADED, OrderSide.SELL, qty, reduce_only=True),
                                   PositionId(f"{TRADED}-{self.id}")),
            "reduce_only rejected": (f.market(TRADED, OrderSide.BUY, qty, reduce_only=True), None),
            "post_only": (f.limit(TRADED, OrderSide.BUY, qty, tick.ask_price, post_only=True), None),
            "max_quantity": (f.market(TRADED, OrderSide.BUY, Quantity.from_int(200_000_000)), None),
            "gtd_expired": (f.limit(TRADED, OrderSide.BUY, qty, tick.bid_price, time_in_force=TimeInForce.GTD,
                                    expire_time=past), None),
            "no_market": (f.market(QUIET, OrderSide.SELL, qty), None),
            "stop_in_market": (f.stop_market(TRADED, OrderSide.BUY, qty, tick.bid_price), None),
        }  # fmt: skip
        for what, (order, position_id) in orders.items():
            self.sent[order.client_order_id.value] = what
            self.submit_order(order, position_id=position_id)

    def on_order_rejected(self, event: OrderRejected) -> None:
        self.refused.append(event)

    def on_order_denied(self, event: OrderDenied) -> None:
        self.refused.append(event)


def test_a_backtest_with_code_words_in_every_id() -> None:
    """A real backtest: strategy REBALANCE-MARGIN.POST_ONLY on venue HALTED gets each refusal's own code."""
    engine = BacktestEngine(BacktestEngineConfig(logging=LoggingConfig(bypass_logging=True)))
    try:
        engine.add_venue(venue=VENUE, oms_type=OmsType.NETTING, account_type=AccountType.MARGIN, base_currency=USD,
                         starting_balances=[Money(1_000_000, USD)])  # fmt: skip
        traded = _pair(TRADED, "EUR/USD")
        engine.add_instrument(traded)
        engine.add_instrument(_pair(QUIET, "GBP/USD"))
        size = traded.make_qty(1_000_000)
        engine.add_data([QuoteTick(TRADED, traded.make_price(1.1), traded.make_price(1.1001), size, size,
                                   T0 + k * 10**9, T0 + k * 10**9) for k in range(3)])  # fmt: skip
        strategy = _Refused(StrategyConfig(strategy_id=STRATEGY, order_id_tag="REBALANCE"))
        engine.add_strategy(strategy)
        engine.run()
        codes = {
            strategy.sent[e.client_order_id.value]: rejected_code(e) if isinstance(e, OrderRejected)
            else denied_check_type(e)
            for e in strategy.refused
        }  # fmt: skip
    finally:
        engine.dispose()
    assert codes == {
        "reduce_only denied": "reduce_only",
        "reduce_only rejected": "reduce_only",
        "post_only": "post_only",
        "max_quantity": "max_quantity",
        "gtd_expired": "gtd_expired",
        "no_market": "no_market",
        "stop_in_market": "stop_in_market",
    }
    texts = " ".join(e.reason for e in strategy.refused)
    assert "REBALANCE" in str(strategy.id)
    assert "PositionId('EUR/USD post-only MARGIN no market.HALTED-REBALANCE" in texts  # the ids are quoted
    assert f"no market for {QUIET}" in texts
