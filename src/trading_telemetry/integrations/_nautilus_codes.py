"""NautilusTrader's free-text reject and denial reasons reduced to bounded label codes.

An ``OrderRejected`` (the venue said no) becomes ``orders_rejected_total{reason}`` and an
``OrderDenied`` (the risk engine, the strategy or the execution client said no before the
venue saw the order) becomes ``orders_risk_rejections_total{check_type}``. The reason texts
quote identifiers (strategy, instrument, order and position ids), which are free text
chosen by the user: a strategy named ``REBALANCE`` must not turn a reduce-only denial into
``balance``. So a code comes, in this order, from:

1. the event's structured field: ``OrderRejected.due_post_only`` is ``post_only``;
2. a fixed message shape: the start of a message as NautilusTrader 1.220 and 1.221 write
   it (the matching engine, the risk engine, the strategy, the Binance and Interactive
   Brokers adapters), an anchored pattern whose fixed words come first and whose
   identifiers are wildcards. No engine message begins with an identifier, so a match
   that one of the event's ids runs past (a venue text that begins with the id) is not
   one, and a wildcard that quotes the event's instrument must hold one of its ids;
3. words of a venue's own free text (``Margin is insufficient.``), searched only after the
   event's identifiers and any quoted ``...Id('...')`` are taken out of the text (so a
   venue word that is, whole and in the same case, one of the ids is taken out too);
4. else ``other``.

Any object is accepted as a reason; what is not a ``str`` is ``other``, and nothing here
raises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "DENIAL_CODES",
    "DENIAL_CODE_NAMES",
    "DENIAL_SHAPES",
    "DENIAL_WORDS",
    "OTHER",
    "REJECT_CODES",
    "REJECT_CODE_NAMES",
    "REJECT_SHAPES",
    "REJECT_WORDS",
    "denial_check_type",
    "denied_check_type",
    "reject_code",
    "rejected_code",
]

OTHER = "other"
"""The code of a reason no rule knows."""

Rules = tuple[tuple[re.Pattern[str], str], ...]


def _shapes(*rules: tuple[str, str]) -> Rules:
    # Each pattern is the engine's message from its start; ``.*`` stands for an identifier,
    # ``(?P<id>.+)`` for one of the event's own.
    return tuple((re.compile(r"\A" + pattern, re.DOTALL), code) for pattern, code in rules)


def _words(*rules: tuple[str, str]) -> Rules:
    return tuple((re.compile(pattern, re.IGNORECASE), code) for pattern, code in rules)


_NUMBER = r"\S+"  # a Price, Quantity or Money as NautilusTrader prints it: no blank inside
_TYPE_SIDE = r"[A-Z_]+ (?:BUY|SELL) order "  # order.type_string(), order.side_string()
_BINANCE = r"""\{\s*['"]code['"]\s*:\s*"""  # a Binance error body, a dict or its JSON

REJECT_SHAPES: Rules = _shapes(
    # backtest/engine.pyx, OrderMatchingEngine.process_order and _process_*_order
    (r"POST_ONLY " + _TYPE_SIDE + r"limit px of " + _NUMBER + r" would have been a TAKER", "post_only"),
    (r"REDUCE_ONLY " + _TYPE_SIDE + r"would have increased position", "reduce_only"),
    (r"Invalid (?:size|price|trigger price|activation price) precision for order ", "invalid_precision"),
    (_TYPE_SIDE + r"(?:stop px|trigger stop px|activation px) of " + _NUMBER + r" was in the market", "stop_in_market"),
    (r"no market (?:with no fills )?for ", "no_market"),
    (r"SHORT SELLING not permitted on a CASH account ", "short_selling"),
    (r"Contract (?P<id>.+) (?:not yet active, activation|has expired, expiration) ", "market_closed"),
    (r"REJECT OTO from ", "contingent"),
    (r"Contingent order .* already closed", "contingent"),
    # adapters/interactive_brokers/execution.py: another order of the same list was refused
    (r"The order has been rejected due to the rejection of the order with ", "contingent"),
    # adapters/binance: the error body's code (BinanceErrorCode)
    (_BINANCE + r"-5022\b", "post_only"),  # GTX_ORDER_REJECT
    (_BINANCE + r"-2022\b", "reduce_only"),  # REDUCE_ONLY_REJECT
    (_BINANCE + r"(?:-1111|-4014|-4029|-4030)\b", "invalid_precision"),  # BAD_PRECISION, tick and step size
    (_BINANCE + r"-2021\b", "stop_in_market"),  # ORDER_WOULD_IMMEDIATELY_TRIGGER
    (_BINANCE + r"(?:-2018|-2019)\b", "insufficient_funds"),  # BALANCE_ / MARGIN_NOT_SUFFICIENT
    (_BINANCE + r"(?:-1003|-1015)\b", "rate_limit"),  # TOO_MANY_REQUESTS, TOO_MANY_ORDERS
    (_BINANCE + r"-4116\b", "duplicate"),  # ClientOrderId is duplicated
    # MIN_NOTIONAL: no code for a notional floor; its text ends "(unless you choose reduce only)"
    (_BINANCE + r"-4164\b", OTHER),
)
"""Venue rejects as NautilusTrader's simulated venue and adapters write them, first match wins."""

REJECT_WORDS: Rules = _words(
    (r"post[ _-]?only|would have been a taker|executed as maker", "post_only"),
    (r"reduce[ _-]?only|would have increased position", "reduce_only"),
    (r"precision", "invalid_precision"),
    (r"was in the market|would immediately trigger", "stop_in_market"),
    (r"\bno market\b", "no_market"),
    (r"short[ _-]?sell|short sale", "short_selling"),
    (r"\bhalt(?:ed)?\b|market (?:is )?closed|closed market|not yet active", "market_closed"),
    (r"insufficient|\bmargin\b|\bbalance\b|buying power", "insufficient_funds"),
    (r"rate[ _-]?limit|too many|too much request|throttl|max rate", "rate_limit"),
    (r"duplicat", "duplicate"),
    (r"\bo[tcu]o\b|contingent", "contingent"),
)
"""A venue's own free text (``Margin is insufficient.``), searched after the identifiers
are taken out, first match wins."""

REJECT_CODES: Rules = (*REJECT_SHAPES, *REJECT_WORDS)
"""Every reject rule, ``(pattern, code)``: the shapes, then the words."""

REJECT_CODE_NAMES: frozenset[str] = frozenset(code for _, code in REJECT_CODES) | {OTHER}
"""Every ``orders_rejected_total{reason}`` value."""

DENIAL_SHAPES: Rules = _shapes(
    # risk/engine.pyx, RiskEngine._handle_submit_order and _check_* (the same in 1.220)
    (r"Reduce only order would increase position ", "reduce_only"),
    (r"Instrument for (?P<id>.+) not found", "unknown_instrument"),
    (r"no instrument found for ", "unknown_instrument"),
    (r"GTD \d{4}-\d\d-\d\d[ T]\S+ already passed", "gtd_expired"),  # str(datetime)
    (r"(?:trigger )?price " + _NUMBER + r" invalid \(precision ", "precision"),
    (r"(?:trigger )?price " + _NUMBER + r" invalid \(not positive\)", "invalid_price"),
    (r"quantity " + _NUMBER + r" invalid \(precision ", "precision"),
    (r"quantity " + _NUMBER + r" invalid \(> maximum trade size of ", "max_quantity"),
    (r"quantity " + _NUMBER + r" invalid \(< minimum trade size of ", "min_quantity"),
    (r"QUANTITY_EXCEEDS_MAXIMUM: ", "max_quantity"),  # 1.221: a quote quantity, converted
    (r"QUANTITY_BELOW_MINIMUM: ", "min_quantity"),  # 1.221
    (r"NOTIONAL_EXCEEDS_MAX_PER_ORDER: ", "max_notional_per_order"),
    (r"NOTIONAL_(?:LESS_THAN_MIN|GREATER_THAN_MAX)_FOR_INSTRUMENT: ", "instrument_notional"),
    (r"(?:CUM_)?NOTIONAL_EXCEEDS_FREE_BALANCE: ", "balance"),
    (r"Exceeded MAX_ORDER_(?:SUBMIT|MODIFY)_RATE", "rate_limit"),
    (r"TradingState\.HALTED", "trading_state"),
    (r"(?:OrderList contains )?(?:BUY|SELL) when TradingState\.REDUCING and (?:LONG|SHORT) ", "trading_state"),
    (r"TradingState is (?:HALTED|REDUCING)", "trading_state"),  # a modify refused
    # trading/strategy.pyx, Strategy.submit_order and submit_order_list
    (r"duplicate (?:ClientOrderId|OrderListId)\(", "duplicate"),
)
"""Denials as the risk engine and the strategy write them, first match wins."""

DENIAL_WORDS: Rules = _words(
    (r"maximum trade size|quantity_exceeds_maximum", "max_quantity"),
    (r"minimum trade size|quantity_below_minimum", "min_quantity"),
    (r"notional_exceeds_max_per_order", "max_notional_per_order"),
    (r"notional_less_than_min|notional_greater_than_max", "instrument_notional"),
    (r"free_balance|\bbalance\b", "balance"),
    (r"max_order_(?:submit|modify)_rate|rate[ _-]?limit|too many", "rate_limit"),
    (r"tradingstate|trading_state|\bhalted\b|\breducing\b", "trading_state"),
    (r"precision", "precision"),
    (r"reduce[ _-]?only", "reduce_only"),
    (r"\bgtd\b", "gtd_expired"),
    (r"duplicat", "duplicate"),
    (r"no instrument|unknown instrument|instrument not found", "unknown_instrument"),
)
"""An execution client's own denial text, searched after the identifiers are taken out,
first match wins."""

DENIAL_CODES: Rules = (*DENIAL_SHAPES, *DENIAL_WORDS)
"""Every denial rule, ``(pattern, code)``: the shapes, then the words."""

DENIAL_CODE_NAMES: frozenset[str] = frozenset(code for _, code in DENIAL_CODES) | {OTHER}
"""Every ``orders_risk_rejections_total{check_type}`` value."""

# An identifier quoted by its repr, ClientOrderId('O-1'), PositionId('EUR/USD.SIM-S-1'): the
# messages quote other orders' and positions' ids this way.
_WORD = re.compile(r"\w")
_QUOTED_ID = re.compile(r"\b[A-Z][A-Za-z]*Id\('[^']*'\)")
# The identifiers an event carries, as attributes of the event.
_ID_FIELDS = ("strategy_id", "instrument_id", "client_order_id", "trader_id", "account_id", "venue_order_id")


def reject_code(reason: object, ids: Iterable[str] = ()) -> str:
    """The ``orders_rejected_total{reason}`` code of a venue's reject reason, one of
    :data:`REJECT_CODE_NAMES`; ``ids``: the identifiers the text may quote.

    >>> reject_code("REDUCE_ONLY MARKET BUY order would have increased position")
    'reduce_only'
    """
    return _code(REJECT_SHAPES, REJECT_WORDS, reason, ids)


def denial_check_type(reason: object, ids: Iterable[str] = ()) -> str:
    """The ``orders_risk_rejections_total{check_type}`` code of a denial reason, one of
    :data:`DENIAL_CODE_NAMES`; ``ids``: the identifiers the text may quote.

    >>> denial_check_type("Reduce only order would increase position PositionId('EUR/USD.SIM-REBALANCE-001')")
    'reduce_only'
    """
    return _code(DENIAL_SHAPES, DENIAL_WORDS, reason, ids)


def rejected_code(event: object) -> str:
    """The code of an ``OrderRejected``: ``post_only`` when the venue flagged it
    (``due_post_only``), else the code of its reason, the event's identifiers aside."""
    try:
        if getattr(event, "due_post_only", False) is True:
            return "post_only"
        return reject_code(getattr(event, "reason", None), _event_ids(event))
    except Exception:  # noqa: BLE001 - an attribute that raises: recording never raises
        return OTHER


def denied_check_type(event: object) -> str:
    """The ``check_type`` of an ``OrderDenied``: the code of its reason, the event's
    identifiers aside."""
    try:
        return denial_check_type(getattr(event, "reason", None), _event_ids(event))
    except Exception:  # noqa: BLE001 - an attribute that raises: recording never raises
        return OTHER


def _code(shapes: Rules, words: Rules, reason: object, ids: Iterable[str]) -> str:
    if not isinstance(reason, str):
        return OTHER
    try:
        text = str.__str__(reason)  # a plain str, whatever a subclass overrides
        values = {i for i in ids if isinstance(i, str) and i}
        for pattern, code in shapes:
            match = pattern.match(text)
            if match and _is_the_shape(match, text, values):
                return code
        text = _without_ids(text, values)
        for pattern, code in words:
            if pattern.search(text):
                return code
    except Exception:  # noqa: BLE001 - an ``ids`` iterable that raises: recording never raises
        return OTHER
    return OTHER


def _is_the_shape(match: re.Match[str], text: str, ids: set[str]) -> bool:
    """Whether the shape matched the engine's fixed words, not words inside the event's ids."""
    if not ids:
        return True
    if any(len(i) > match.end() and text.startswith(i) for i in ids):
        return False  # the text begins with an id that holds all the shape matched
    quoted = match.groupdict().get("id")
    return quoted is None or quoted in ids


def _without_ids(text: str, ids: set[str]) -> str:
    """``text`` with every whole occurrence of ``ids`` (longest first) and of quoted
    ``...Id('...')`` replaced by a blank."""
    values = sorted(ids, key=len, reverse=True)
    if values:
        # A word character at an end of an id must not continue a word of the text.
        alternatives = (
            ("(?<!\\w)" if _WORD.match(v[0]) else "") + re.escape(v) + ("(?!\\w)" if _WORD.match(v[-1]) else "")
            for v in values
        )
        text = re.sub("|".join(alternatives), " ", text)
    return _QUOTED_ID.sub(" ", text)


def _event_ids(event: object) -> list[str]:
    """The identifiers an order event carries, and the netting position id made of two."""
    values: dict[str, str] = {}
    for field in _ID_FIELDS:
        value = getattr(getattr(event, field, None), "value", None)
        if isinstance(value, str):
            values[field] = value
    symbol = getattr(getattr(getattr(event, "instrument_id", None), "symbol", None), "value", None)
    ids = list(values.values())
    if isinstance(symbol, str):
        ids.append(symbol)
    if "instrument_id" in values and "strategy_id" in values:
        ids.append(f"{values['instrument_id']}-{values['strategy_id']}")  # a NETTING PositionId
    return ids
