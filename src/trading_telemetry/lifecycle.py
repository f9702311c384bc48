"""Follow one order through intent -> submit -> ack -> fills -> its end (filled,
canceled, expired, rejected by the broker or denied by a risk check) and record the
Order plane's lifecycle metrics from the step timestamps."""

from __future__ import annotations

import math
import numbers
import operator
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from trading_telemetry import _numbers, _state
from trading_telemetry._handles import BoundMetric
from trading_telemetry._numbers import QUANTITY_LIMIT, TOLERANT, Number
from trading_telemetry._recorder import PlaneMetrics
from trading_telemetry._safe import safe_repr
from trading_telemetry.catalog import Plane
from trading_telemetry.errors import InvalidValueError

__all__ = ["LATENCY_STEPS", "LATE_FILLS_KEPT", "OrderLifecycle"]

# The latency histograms, by index: (from step, to step) recorded once both are known.
_LATENCY_KEYS = ("intent_to_submit_latency", "submit_to_ack_latency", "ack_to_fill_latency", "total_fill_latency")
_LATENCIES = (("intent", "submitted"), ("submitted", "acked"), ("acked", "filled"), ("intent", "filled"))
LATENCY_STEPS: dict[str, tuple[str, str]] = dict(zip(_LATENCY_KEYS, _LATENCIES, strict=True))
"""The latency histograms OrderLifecycle records, each with the steps it runs from and to."""
# For each step, the latencies it starts or ends: (index, the other step, whether this
# step is the latency's end).
_BY_STEP: dict[str, tuple[tuple[int, str, bool], ...]] = {
    step: tuple((i, b if step == a else a, step == b) for i, (a, b) in enumerate(_LATENCIES) if step in (a, b))
    for step in ("intent", "submitted", "acked", "filled")
}
# The metric a bad timestamp of each step is counted against.
_STEP_METRIC = {
    "intent": "intent_to_submit_latency",
    "submitted": "submit_to_ack_latency",
    "acked": "ack_to_fill_latency",
    "fill": "total_fill_latency",
    "filled": "total_fill_latency",
    "canceled": "orders_canceled",
    "expired": "orders_expired",
    "rejected": "orders_rejected",
    "denied": "risk_rejections",
}
# What a bad argument is counted as: (metric, reason, what is wrong with it).
_NUMBER = "(int, float, Decimal, or an engine's Quantity/Price with as_decimal())"
_BAD_ARGUMENT = {
    "quantity": ("orders_filled", "invalid_quantity", f"is not a finite positive number {_NUMBER}"),
    "price": ("slippage_bps", "invalid_price", f"is not a finite positive number {_NUMBER}"),
    "reference_price": ("slippage_bps", "invalid_price", f"is not a finite positive number {_NUMBER}"),
    "slippage_bps": ("slippage_bps", "invalid_slippage", f"is not a finite number {_NUMBER}"),
    "commission_usd": ("commission_usd", "invalid_commission", f"is not a finite number >= 0 {_NUMBER}"),
    "fill_id": ("orders_filled", "invalid_fill_id", "is not hashable"),
}
_INTENT, _SUBMITTED, _ACKED, _FILLED = (_BY_STEP[step] for step in ("intent", "submitted", "acked", "filled"))
_ANONYMOUS = object()
"""Keys fills reported without a ``fill_id`` as ``(_ANONYMOUS, id(cell))``: every such call is a new fill."""
_FIRST = operator.itemgetter(0)
_CANCELED = operator.attrgetter("canceled")
_EXPIRED = operator.attrgetter("expired")
_MAX = sys.float_info.max
HANDLE_SETS_KEPT = 4096
"""Most (strategy, symbol, direction, order type) handle sets a plane keeps for orders."""
_OUTCOMES_KEPT = 64
LATE_FILLS_KEPT = 64
"""Most fills an order takes after its end (fills that raced a cancel); further ones are
dropped as ``late_fill_limit``, so that an ended order's state stays bounded."""


def _plain(value: Any) -> Any:
    """A label value as a plain ``str`` if it is a string (a subclass gives its characters,
    whatever its ``__eq__``/``__hash__`` say), else unchanged (``bind`` refuses it): only
    plain strings key the handle caches, so that no object can pass for a cached label."""
    if type(value) is str:
        return value
    try:
        return str.__str__(value)  # TypeError unless a str, whatever its __class__ claims
    except TypeError:
        return value


class _OrderHandles:
    """The bound handles the orders of one (strategy, symbol, direction, order type)
    record on, shared by all of them: an order then costs a few handle calls."""

    __slots__ = ("base", "canceled", "commission", "denied", "expired", "filled", "latencies", "metrics", "received",
                 "rejected", "slippage", "submitted")  # fmt: skip

    def __init__(self, m: PlaneMetrics, strategy: str, symbol: str, direction: str, order_type: str) -> None:
        order = {"strategy": strategy, "symbol": symbol, "direction": direction, "order_type": order_type}
        latency = {"strategy": strategy, "symbol": symbol, "order_type": order_type}
        self.metrics = m
        self.base = {"strategy": strategy, "symbol": symbol}
        self.received = m.bind("orders_received", **order)
        self.submitted = m.bind("orders_submitted", **order)
        self.canceled = m.bind("orders_canceled", **order)
        self.expired = m.bind("orders_expired", **order)
        self.latencies = tuple(m.bind(key, **latency) for key in _LATENCY_KEYS)
        self.slippage = m.bind("slippage_bps", **self.base, direction=direction)
        self.commission = m.bind("commission_usd", **self.base)
        self.filled: dict[str, BoundMetric] = {}
        self.rejected: dict[str, BoundMetric] = {}
        self.denied: dict[str, BoundMetric] = {}

    def outcome(self, kept: dict[str, BoundMetric], key: str, label: str, value: Any, **labels: Any) -> BoundMetric:
        """The handle of the outcome ``value`` (a fill status, a reject reason, a check type):
        from ``kept`` if it is a string, else bound (and kept, up to _OUTCOMES_KEPT)."""
        value = _plain(value)
        plain = type(value) is str
        if plain:
            handle = kept.get(value)
            if handle is not None:
                return handle
        handle = self.metrics.bind(key, **self.base, **labels, **{label: value})
        if plain and len(kept) < _OUTCOMES_KEPT:
            kept[value] = handle
        return handle


def _handles(m: PlaneMetrics, key: tuple[Any, ...], plain: bool) -> _OrderHandles:
    handles = _OrderHandles(m, *key)
    kept: dict[tuple[Any, ...], Any] = m.order_handles
    if plain and len(kept) < HANDLE_SETS_KEPT:
        kept[key] = handles
    return handles


class OrderLifecycle:
    """One order's way through the Order plane.

    Call the steps as they happen: ``intent()``, ``submitted()``, ``acked()``, ``fill()``
    for each fill (partial or not), and one end: the order completes when its fills reach
    ``quantity`` (or on ``filled()``), or ends with ``canceled()``, ``expired()``,
    ``rejected(reason)`` (the broker or venue said no) or ``denied(check_type)`` (a
    pre-trade risk check said no; the order never left). It records
    ``orders_received/submitted/filled/canceled/expired/rejected_total``,
    ``orders_risk_rejections_total``, the four latency histograms, and each fill's slippage
    and commission. An order that ends with part of its quantity filled counts as
    ``orders_filled_total{status="PARTIAL_FILL"}``, besides its end.

    Numbers: quantities, prices and costs may be ints, floats, Decimals, numpy scalars or
    an engine's own types (NautilusTrader's ``Quantity``, ``Price``, ``Money``: anything
    with ``as_decimal()``). Ints and Decimals add up exactly; once a float is involved, the
    fills complete the order within a relative 1e-9 (0.1 + 0.2 fills 0.3). ``bool``,
    strings, ``None``, NaN, infinities, negatives and other objects are bad input.

    A fill is recorded whole or not at all: its parts (quantity, price, ``at``,
    ``fill_id``, commission, slippage) are all checked before anything is stored, and a bad
    one drops the fill, counted once under that part's reason (strict mode raises, naming
    it). ``filled()`` checks its costs the same way.

    Times: each step takes ``at=``, or reads ``clock`` (``time.monotonic`` unless given).
    A float is seconds, an int nanoseconds (``time.monotonic_ns()``, an engine's event
    timestamps): give every step of an order ``at=`` from one clock, or none and inject
    that clock. The fill latencies end at the fill that completes the order (an order that
    ends partially filled: its latest fill).

    Steps may arrive out of order (a fill report before the ack) or twice (a resent
    report): each step counts once and the first time given wins; a fill repeated with the
    same ``fill_id`` counts once, before or after the order's end; each latency is recorded
    once both its ends are known; a latency that would be negative (clocks that disagree)
    is counted as an ``invalid_timestamp`` drop, not recorded. The first end wins. A fill
    after the end (it raced a cancel) still records its costs, up to LATE_FILLS_KEPT of
    them. Thread-safe without locks: broker callbacks may arrive on other threads.

    Example::

        order = OrderLifecycle(strategy="OFI", symbol="SPY", direction="BUY", order_type="LIMIT",
                               quantity=300, reference_price=501.20)
        order.intent()
        order.submitted()
        order.acked()
        order.fill(100, price=501.22, commission_usd=0.12)
        order.fill(200, price=501.21, commission_usd=0.23)   # complete: counted FILLED
    """

    __slots__ = ("_clock", "_exact", "_h", "_key", "_ref", "_times", "_wanted", "metrics")

    def __init__(
        self,
        *,
        strategy: str,
        symbol: str,
        direction: str,
        order_type: str,
        quantity: Any = None,
        reference_price: Any = None,
        metrics: PlaneMetrics | None = None,
        clock: Callable[[], float | int] = time.monotonic,
    ) -> None:
        if metrics is None:
            metrics = _state.plane_metrics(Plane.ORDER)
        self.metrics = metrics
        self._clock = clock
        # step -> (time,) of the call that claimed it; "end" -> (time, step) of the end;
        # a latency's index -> the cell of the call that recorded it; "fills" -> {fill_id
        # (or (_ANONYMOUS, id)): (quantity, time)}, made by the first fill; "late" -> one
        # entry per fill taken after the end. Claims are single dict.setdefault calls,
        # atomic under the GIL: broker threads need no lock.
        self._times: dict[Any, Any] = {}
        self._wanted: Number | None = None
        self._ref: float | None = None
        self._exact = False  # a Decimal among the quantities: sums are made exactly
        key = (strategy, symbol, direction, order_type)
        plain = type(strategy) is str and type(symbol) is str and type(direction) is str and type(order_type) is str
        if not plain:
            key = tuple(map(_plain, key))
            plain = all(type(v) is str for v in key)
        self._key = key
        try:
            h = metrics.order_handles.get(key) if plain else None
            self._h: _OrderHandles | None = h or _handles(metrics, key, plain)
        except Exception as error:  # noqa: BLE001 - strict mode raises a MeasurementError here
            self._h = None
            metrics.record_failure(error, "orders_received")
        if quantity is not None:
            if (type(quantity) is int and 0 < quantity < QUANTITY_LIMIT) or (
                type(quantity) is float and quantity > 0 and quantity - quantity == 0.0
            ):
                self._wanted = quantity
            else:
                self._set("quantity", quantity)
        if reference_price is not None:
            if type(reference_price) is float and reference_price > 0 and reference_price - reference_price == 0.0:
                self._ref = reference_price
            else:
                self._set("reference_price", reference_price)

    @property
    def strategy(self) -> str:
        return self._key[0]

    @property
    def symbol(self) -> str:
        return self._key[1]

    @property
    def direction(self) -> str:
        return self._key[2]

    @property
    def order_type(self) -> str:
        return self._key[3]

    @property
    def quantity(self) -> Number | None:
        """The order's quantity (an int, float or Decimal; an engine's Quantity gives its
        Decimal): fills that reach it complete the order (None: only ``filled()`` does).
        Setting a bad value keeps the previous one (strict mode raises)."""
        return self._wanted

    @quantity.setter
    def quantity(self, value: Any) -> None:
        self._set("quantity", value)

    @property
    def reference_price(self) -> float | None:
        """The price each fill's slippage is measured from (the arrival mid, the limit
        price), as a float; None: slippage only when a fill gives ``slippage_bps``."""
        return self._ref

    @reference_price.setter
    def reference_price(self, value: Any) -> None:
        self._set("reference_price", value)

    def _set(self, name: str, value: Any) -> None:
        try:
            if value is None or (type(value) is float and value > 0 and value - value == 0.0):
                read: Any = value
            elif name == "quantity":
                read = _numbers.quantity(value)
            else:
                read = _numbers.price(value)
            if read is None and value is not None:
                self._bad("OrderLifecycle", name, value)
            elif name == "quantity":
                if type(read) is Decimal:
                    self._exact = True
                self._wanted = read
            else:
                self._ref = read
        except Exception as error:  # noqa: BLE001 - never into the caller (strict: MeasurementError)
            self.metrics.record_failure(error, _BAD_ARGUMENT[name][0])

    @property
    def state(self) -> str:
        """The furthest step reached: ``new``, ``intent``, ``submitted``, ``acked``,
        ``partially_filled``, or the end: ``filled``, ``canceled``, ``expired``,
        ``rejected``, ``denied``."""
        times = self._times
        end = times.get("end")
        if end is not None:
            return str(end[1])
        if times.get("fills"):
            return "partially_filled"
        for step in ("acked", "submitted", "intent"):
            if step in times:
                return step
        return "new"

    @property
    def ended(self) -> bool:
        """Whether the order has reached its end (filled, canceled, expired, rejected, denied)."""
        return "end" in self._times

    @property
    def filled_quantity(self) -> Number:
        """The quantity filled so far (each ``fill_id`` once): an int or float, or a Decimal
        once a Decimal is among the quantities."""
        fills = self._times.get("fills")
        if not fills:
            return 0
        if not self._exact:
            try:
                total = sum(map(_FIRST, fills.values()))  # C-level: no thread switch inside
                if type(total) is float or type(total) is int:
                    return total
            except Exception:  # noqa: BLE001 - a Decimal came in meanwhile: summed exactly below
                pass
        return _numbers.exact_total(map(_FIRST, tuple(fills.values())))[0]

    def _bad(self, step: str, name: str, value: object) -> None:
        """Count (production) or raise (strict) the bad argument ``name`` of ``step``."""
        metric, reason, problem = _BAD_ARGUMENT[name]
        self.metrics.reject(
            InvalidValueError(
                lambda: f"{metric}: {step}: {name}={safe_repr(value)} {problem}",
                reason=reason,
                metric=metric,
                value=value,
            )
        )

    def _read(self, step: str, at: object) -> int | float | None:
        """The time of ``step`` as given (``at``, else the clock's): an int of nanoseconds or
        a finite float of seconds; None, with the drop counted (strict: raised), if it is
        neither. Nothing is stored."""
        given = self._clock() if at is None else at
        try:
            kind = type(given)
            if kind is int or (kind is float and given - given == 0.0):  # type: ignore[operator]
                return given  # type: ignore[return-value]
            if kind is not bool:
                if isinstance(given, numbers.Integral):  # a numpy int64 of nanoseconds
                    ns = operator.index(given)
                    if type(ns) is int:
                        return ns
                elif isinstance(given, numbers.Real):
                    seconds = float.__float__(given) if isinstance(given, float) else float(given)
                    if type(seconds) is float and seconds - seconds == 0.0:
                        return seconds
        except Exception:  # noqa: BLE001 - a hostile number: judged below
            pass
        metric = _STEP_METRIC[step]
        self.metrics.reject(
            InvalidValueError(
                lambda: (
                    f"{metric}: OrderLifecycle.{step}: timestamp at={safe_repr(given)} is not a finite number "
                    "(float seconds or int nanoseconds)"
                ),
                reason="invalid_timestamp",
                metric=metric,
                value=given,
            )
        )
        return None

    def _seconds(self, when: int | float) -> float:
        """A time read by _read in seconds: ints (nanoseconds) kept exact as seconds since
        the order's first int time (its "epoch")."""
        if type(when) is int:
            return (when - self._times.setdefault("epoch", when)) / 1e9  # type: ignore[no-any-return]
        return when

    def _time(self, step: str, at: object) -> float:
        """The step's time in seconds, or NaN when it is not a finite number (strict mode
        raises; production counts the drop): the step still counts, but no latency that
        starts or ends at it is recorded (NaN makes each such latency NaN)."""
        when = self._read(step, at)
        return math.nan if when is None else self._seconds(when)

    def _clocks_disagree(self, i: int, seconds: float) -> None:
        a, b = _LATENCIES[i]
        self.metrics.reject(
            InvalidValueError(
                lambda: (
                    f"OrderLifecycle: {_LATENCY_KEYS[i]}: {b} came {-seconds:.6g} s before {a}: the steps' "
                    "times come from clocks that disagree (give every step at= from one clock, or inject it)"
                ),
                reason="invalid_timestamp",
                metric=_LATENCY_KEYS[i],
                value=seconds,
            )
        )

    def _step(self, step: str, pairs: tuple[tuple[int, str, bool], ...], cell: tuple[Any, ...]) -> Any:
        """Claim ``step`` for this call, whose ``cell`` holds its time first, and record
        the latencies it completes (those whose other end is known); the order's handles
        if this call counts the step, else None."""
        when = cell[0]
        times = self._times
        if times.setdefault(step, cell) is not cell:
            return None
        h = self._h
        if h is None:
            return h
        for i, other, is_end in pairs:
            then = times.get(other)
            if then is None:
                continue
            t0 = then[0]
            seconds = when - t0 if is_end else t0 - when
            # Each latency once, whichever of its two steps' threads gets here first.
            if times.setdefault(i, cell) is not cell:
                continue
            if seconds >= 0 and seconds - seconds == 0.0:  # x - x: 0.0 iff finite
                h.latencies[i].record_unchecked(seconds)
            elif seconds < 0:  # NaN (a step without a usable time) is neither
                self._clocks_disagree(i, seconds)
        return h

    def _end(self, step: str, at: object) -> Any:
        """Claim the order's one end for this call: the handles if it won, else None."""
        when = at if type(at) is float and at - at == 0.0 else self._time(step, at)
        cell = (when, step)
        if self._times.setdefault("end", cell) is not cell:
            return None
        return self._h

    def _count_filled(self, h: _OrderHandles, status: str, when: float) -> None:
        """The order's fill status, counted once (its end is claimed), and the fill latencies."""
        h.outcome(h.filled, "orders_filled", "status", status, direction=self._key[2]).record_unchecked(1)
        self._step("filled", _FILLED, (when,))

    def _ended_with_fills(self, h: _OrderHandles) -> None:
        """An order that ended otherwise than complete: PARTIAL_FILL if anything filled,
        its fill latencies ending at the latest fill."""
        fills = self._times.get("fills")
        if fills:
            fills = tuple(fills.values())
            self._count_filled(h, "PARTIAL_FILL", _latest(fills))

    def intent(self, at: float | None = None) -> None:
        """The order intent arrived from a strategy."""
        try:
            when = at if type(at) is float and at - at == 0.0 else self._time("intent", at)
            h = self._step("intent", _INTENT, (when,))
            if h is not None:
                h.received.record_unchecked(1)  # a count of one needs no check
        except Exception as error:  # noqa: BLE001 - never into the broker callback (strict: MeasurementError)
            self.metrics.record_failure(error, "orders_received")

    def submitted(self, at: float | None = None) -> None:
        """The order went to the broker."""
        try:
            when = at if type(at) is float and at - at == 0.0 else self._time("submitted", at)
            h = self._step("submitted", _SUBMITTED, (when,))
            if h is not None:
                h.submitted.record_unchecked(1)
        except Exception as error:  # noqa: BLE001
            self.metrics.record_failure(error, "orders_submitted")

    def acked(self, at: float | None = None) -> None:
        """The broker acknowledged (accepted) the order."""
        try:
            when = at if type(at) is float and at - at == 0.0 else self._time("acked", at)
            self._step("acked", _ACKED, (when,))
        except Exception as error:  # noqa: BLE001
            self.metrics.record_failure(error, "submit_to_ack_latency")

    def fill(
        self,
        quantity: Any,
        price: Any = None,
        at: float | None = None,
        *,
        fill_id: Any = None,
        commission_usd: Any = None,
        slippage_bps: Any = None,
    ) -> None:
        """One fill of ``quantity`` at ``price``: records its slippage (given, or from
        ``price`` and the order's ``reference_price``) and its commission. The fill that
        brings the filled quantity to the order's ``quantity`` completes the order
        (``orders_filled_total{status="FILLED"}``). A fill reported again with the same
        ``fill_id`` counts once; fills without one each count. A fill after the order's
        end (a fill racing a cancel) still records its costs and quantity (up to
        LATE_FILLS_KEPT of them). A fill with a bad part is dropped whole."""
        try:
            # Every part is read and checked first: nothing is stored for a bad fill.
            q = quantity
            if not (type(q) is float and q > 0 and q - q == 0.0) and not (type(q) is int and 0 < q < QUANTITY_LIMIT):
                q = _numbers.quantity(q)
                if q is None:
                    return self._bad("OrderLifecycle.fill", "quantity", quantity)
            bps = slippage_bps
            if bps is not None and not (type(bps) is float and bps - bps == 0.0):
                bps = _numbers.real(bps)
                if bps is None:
                    return self._bad("OrderLifecycle.fill", "slippage_bps", slippage_bps)
            if price is not None:
                p = price if type(price) is float and price > 0 and price - price == 0.0 else _numbers.price(price)
                if p is None:
                    return self._bad("OrderLifecycle.fill", "price", price)
                ref = self._ref
                if bps is None and ref is not None:
                    bps = (p - ref) / ref * 1e4 if self._key[2] == "BUY" else (ref - p) / ref * 1e4
                    if bps - bps != 0.0:  # beyond a float: no price for this reference
                        return self._bad("OrderLifecycle.fill", "price", price)
            commission = commission_usd
            if commission is not None and not (type(commission) is float and 0 <= commission <= _MAX):
                commission = _numbers.amount(commission)
                if commission is None:
                    return self._bad("OrderLifecycle.fill", "commission_usd", commission_usd)
            if fill_id is not None and type(fill_id) is not str:
                fill_id = _plain(fill_id)
                try:
                    hash(fill_id)
                except Exception:  # noqa: BLE001 - unhashable, or a hostile __hash__
                    return self._bad("OrderLifecycle.fill", "fill_id", fill_id)
            if type(at) is float and at - at == 0.0:
                when: float = at
            else:
                given = self._read("fill", at)
                if given is None:
                    return None
                when = self._seconds(given)

            # Store: one dict.setdefault claims the fill.
            times = self._times
            fills = times.get("fills")
            if "end" in times and (fill_id is None or not fills or fill_id not in fills):
                late = times.get("late")
                if late is None:
                    late = times.setdefault("late", [])
                if len(late) >= LATE_FILLS_KEPT:
                    return self._late_fill_limit(quantity)
                late.append(None)
            if fills is None:
                fills = times.setdefault("fills", {})
            if type(q) is Decimal:
                self._exact = True
            cell = (q, when)
            if fill_id is None:
                fills[(_ANONYMOUS, id(cell))] = cell
                new = True
            else:
                new = fills.setdefault(fill_id, cell) is cell  # else a repeated report: no costs
            h = self._h
            if h is None:
                return None
            if new:
                if bps is not None:
                    h.slippage.record_unchecked(bps)
                if commission is not None:
                    h.commission.record_unchecked(commission)
            # Completion is checked on every report, repeated ones too: the thread that
            # holds a resent report may go on to a cancel before the first one's thread
            # has checked.
            wanted = self._wanted
            if wanted is not None and "end" not in times and self._reached(fills, wanted):
                latest = _latest(tuple(fills.values()))
                cell2 = (latest, "filled")
                if times.setdefault("end", cell2) is cell2:
                    self._count_filled(h, "FILLED", latest)
        except Exception as error:  # noqa: BLE001
            self.metrics.record_failure(error, "orders_filled")
        return None

    def _reached(self, fills: dict[Any, tuple[Number, float]], wanted: Any) -> bool:
        """Whether the fills add up to ``wanted``: exactly for ints and Decimals, within a
        relative 1e-9 once a float is involved."""
        if not self._exact:
            try:
                total = sum(map(_FIRST, fills.values()))  # C-level: no thread switch inside
                kind = type(total)
                if kind is int and type(wanted) is int:
                    return total >= wanted  # type: ignore[no-any-return]
                if kind is int or kind is float:
                    return total >= wanted * TOLERANT  # type: ignore[no-any-return]
            except Exception:  # noqa: BLE001 - a Decimal came in meanwhile: summed exactly below
                pass
        return _numbers.reached(map(_FIRST, tuple(fills.values())), wanted)

    def _late_fill_limit(self, quantity: object) -> None:
        self.metrics.reject(
            InvalidValueError(
                lambda: (
                    f"orders_filled: OrderLifecycle.fill: quantity={safe_repr(quantity)} came after the order's end "
                    f"and its {LATE_FILLS_KEPT} late fills: not recorded"
                ),
                reason="late_fill_limit",
                metric="orders_filled",
                value=quantity,
            )
        )

    def filled(
        self,
        at: float | None = None,
        *,
        status: str = "FILLED",
        slippage_bps: Any = None,
        commission_usd: Any = None,
    ) -> None:
        """The order is done: ``status`` ``FILLED`` (complete) or ``PARTIAL_FILL``. The
        costs given are its last fill's; an order filled in pieces reports each with
        ``fill()`` instead, and needs no ``filled()`` when it knows its ``quantity``. A
        bad cost drops the call whole (the order does not end)."""
        try:
            bps = slippage_bps
            if bps is not None and not (type(bps) is float and bps - bps == 0.0):
                bps = _numbers.real(bps)
                if bps is None:
                    return self._bad("OrderLifecycle.filled", "slippage_bps", slippage_bps)
            commission = commission_usd
            if commission is not None and not (type(commission) is float and 0 <= commission <= _MAX):
                commission = _numbers.amount(commission)
                if commission is None:
                    return self._bad("OrderLifecycle.filled", "commission_usd", commission_usd)
            h = self._h
            counter: BoundMetric | None = None
            if h is not None:  # the status's handle first: strict mode refuses a bad one before the end
                counter = h.filled.get(status) if type(status) is str else None
                if counter is None:
                    counter = h.outcome(h.filled, "orders_filled", "status", status, direction=self._key[2])
            when = at if type(at) is float and at - at == 0.0 else self._time("filled", at)
            cell = (when, "filled")
            if self._times.setdefault("end", cell) is not cell or h is None or counter is None:
                return None
            if bps is not None:
                h.slippage.record_unchecked(bps)
            if commission is not None:
                h.commission.record_unchecked(commission)
            counter.record_unchecked(1)
            self._step("filled", _FILLED, cell)
        except Exception as error:  # noqa: BLE001
            self.metrics.record_failure(error, "orders_filled")
        return None

    def _finish(self, step: str, at: object, metric: str, counter: Callable[[_OrderHandles], BoundMetric]) -> None:
        """End the order with ``step`` if no end came first: ``counter(handles)`` counts the end,
        and an order that ends with part of it filled counts as PARTIAL_FILL too."""
        try:
            h = self._end(step, at)
            if h is not None:
                counter(h).record_unchecked(1)
                self._ended_with_fills(h)
        except Exception as error:  # noqa: BLE001 - never into the broker callback (strict: MeasurementError)
            self.metrics.record_failure(error, metric)

    def canceled(self, at: float | None = None) -> None:
        """The order was canceled (by the strategy, or by the venue unsolicited)."""
        self._finish("canceled", at, "orders_canceled", _CANCELED)

    def expired(self, at: float | None = None) -> None:
        """The order's time in force ran out (GTD, DAY) before it filled."""
        self._finish("expired", at, "orders_expired", _EXPIRED)

    def rejected(self, reason: str, at: float | None = None) -> None:
        """The broker or venue rejected the order. ``reason`` is a label value: a short
        code from a bounded set, never the venue's free text."""
        self._finish("rejected", at, "orders_rejected",
                     lambda h: h.outcome(h.rejected, "orders_rejected", "reason", reason))  # fmt: skip

    def denied(self, check_type: str, at: float | None = None) -> None:
        """A pre-trade risk check denied the order before it reached the broker:
        ``orders_risk_rejections_total{check_type}``, kept apart from broker rejects."""
        self._finish("denied", at, "risk_rejections",
                     lambda h: h.outcome(h.denied, "risk_rejections", "check_type", check_type))  # fmt: skip


def _latest(fills: tuple[tuple[Number, float], ...]) -> float:
    """The latest known time among fills (NaN when none has one)."""
    times = [t for _, t in fills if t == t]  # not NaN
    return max(times) if times else math.nan
