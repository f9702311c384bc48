"""Follow one order through intent -> submit -> ack -> fills -> its end (filled,
canceled, expired, rejected by the broker or denied by a risk check) and record the
Order plane's lifecycle metrics from the step timestamps."""

from __future__ import annotations

import math
import numbers
import operator
import time
from collections.abc import Callable
from typing import Any

from trading_telemetry import _state
from trading_telemetry._handles import BoundMetric
from trading_telemetry._recorder import PlaneMetrics
from trading_telemetry._safe import safe_repr
from trading_telemetry.catalog import Plane
from trading_telemetry.errors import InvalidValueError

__all__ = ["OrderLifecycle"]

# The latency histograms, by index: (from step, to step) recorded once both are known.
_LATENCY_KEYS = ("intent_to_submit_latency", "submit_to_ack_latency", "ack_to_fill_latency", "total_fill_latency")
_LATENCIES = (("intent", "submitted"), ("submitted", "acked"), ("acked", "filled"), ("intent", "filled"))
# For each step, the latencies it starts or ends: (index, the other step, whether this
# step is the latency's end).
_BY_STEP: dict[str, tuple[tuple[int, str, bool], ...]] = {
    step: tuple((i, b if step == a else a, step == b) for i, (a, b) in enumerate(_LATENCIES) if step in (a, b))
    for step in ("intent", "submitted", "acked", "filled")
}
# The metric a bad argument of each step is counted against.
_STEP_METRIC = {
    "intent": "intent_to_submit_latency",
    "submitted": "submit_to_ack_latency",
    "acked": "ack_to_fill_latency",
    "fill": "slippage_bps",
    "filled": "total_fill_latency",
    "canceled": "orders_canceled",
    "expired": "orders_expired",
    "rejected": "orders_rejected",
    "denied": "risk_rejections",
}
_INTENT, _SUBMITTED, _ACKED, _FILLED = (_BY_STEP[step] for step in ("intent", "submitted", "acked", "filled"))
_ANONYMOUS = object()
"""Keys fills reported without a ``fill_id`` as ``(_ANONYMOUS, id(cell))``: every such call is a new fill."""
_QUANTITY_TOLERANCE = 1e-9
"""An order is complete once its fills reach its quantity within this relative tolerance
(float quantities: 0.1 + 0.2 fills 0.3)."""
_FIRST = operator.itemgetter(0)
_CANCELED = operator.attrgetter("canceled")
_EXPIRED = operator.attrgetter("expired")
HANDLE_SETS_KEPT = 4096
"""Most (strategy, symbol, direction, order type) handle sets a plane keeps for orders."""
_OUTCOMES_KEPT = 64


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
        self.filled: dict[Any, BoundMetric] = {}
        self.rejected: dict[Any, BoundMetric] = {}
        self.denied: dict[Any, BoundMetric] = {}

    def outcome(self, kept: dict[Any, BoundMetric], key: str, label: str, value: Any, **labels: Any) -> BoundMetric:
        """The handle of the outcome ``value`` (a fill status, a reject reason, a check type):
        from ``kept``, or bound and kept there if it is a plain string, up to _OUTCOMES_KEPT."""
        try:
            return kept[value]
        except Exception:  # noqa: BLE001 - not seen yet (or not hashable: bind judges it)
            pass
        handle = self.metrics.bind(key, **self.base, **labels, **{label: value})
        if len(kept) < _OUTCOMES_KEPT and type(value) is str:
            kept[value] = handle
        return handle


def _handles(m: PlaneMetrics, strategy: Any, symbol: Any, direction: Any, order_type: Any) -> _OrderHandles:
    kept: dict[tuple[Any, ...], Any] = m._order_handles
    key = (strategy, symbol, direction, order_type)
    try:
        return kept[key]  # type: ignore[no-any-return]
    except Exception:  # noqa: BLE001 - a miss, or an unhashable label value (bind judges it)
        handles = _OrderHandles(m, strategy, symbol, direction, order_type)
        if len(kept) < HANDLE_SETS_KEPT and all(type(v) is str for v in key):
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

    Times: each step takes ``at=``, or reads ``clock`` (``time.monotonic`` unless given).
    A float is seconds, an int nanoseconds (``time.monotonic_ns()``, an engine's event
    timestamps): give every step of an order ``at=`` from one clock, or none and inject
    that clock. The fill latencies end at the fill that completes the order (an order that
    ends partially filled: its latest fill).

    Steps may arrive out of order (a fill report before the ack) or twice (a resent
    report): each step counts once and the first time given wins; a fill repeated with the
    same ``fill_id`` counts once; each latency is recorded once both its ends are known; a
    latency that would be negative (clocks that disagree) is counted as an
    ``invalid_timestamp`` drop, not recorded. The first end wins. Thread-safe without
    locks: broker callbacks may arrive on other threads.

    Example::

        order = OrderLifecycle(strategy="OFI", symbol="SPY", direction="BUY", order_type="LIMIT",
                               quantity=300, reference_price=501.20)
        order.intent()
        order.submitted()
        order.acked()
        order.fill(100, price=501.22, commission_usd=0.12)
        order.fill(200, price=501.21, commission_usd=0.23)   # complete: counted FILLED
    """

    __slots__ = ("_clock", "_h", "_key", "_times", "metrics", "quantity", "reference_price")

    def __init__(
        self,
        *,
        strategy: str,
        symbol: str,
        direction: str,
        order_type: str,
        quantity: float | None = None,
        reference_price: float | None = None,
        metrics: PlaneMetrics | None = None,
        clock: Callable[[], float | int] = time.monotonic,
    ) -> None:
        if metrics is None:
            metrics = _state.plane_metrics(Plane.ORDER)
        self.metrics = metrics
        key = self._key = (strategy, symbol, direction, order_type)
        self.quantity = quantity
        """The order's quantity: fills that reach it complete the order (None: only ``filled()`` does)."""
        self.reference_price = reference_price
        """The price each fill's slippage is measured from (the arrival mid, the limit price)."""
        self._clock = clock
        # step -> (time,) of the call that claimed it; "end" -> (time, step) of the end;
        # a latency's index -> the cell of the call that recorded it; "fills" -> {fill_id
        # (or (_ANONYMOUS, id)): (quantity, time)}, made by the first fill. Claims are
        # single dict.setdefault calls, atomic under the GIL: broker threads need no lock.
        self._times: dict[Any, Any] = {}
        try:
            h = metrics._order_handles.get(key)
            self._h: _OrderHandles | None = h or _handles(metrics, strategy, symbol, direction, order_type)
        except Exception as error:  # noqa: BLE001 - strict mode raises a MeasurementError here
            self._h = None
            metrics._policy.failed(error, "orders_received")

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
    def state(self) -> str:
        """The furthest step reached: ``new``, ``intent``, ``submitted``, ``acked``,
        ``partially_filled``, or the end: ``filled``, ``canceled``, ``expired``,
        ``rejected``, ``denied``."""
        times = self._times
        end = times.get("end")
        if end is not None:
            return str(end[1])
        if "fills" in times:
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
    def filled_quantity(self) -> float:
        """The quantity filled so far (each ``fill_id`` once)."""
        fills = self._times.get("fills")
        return sum(map(_FIRST, fills.values())) if fills else 0  # C-level: no thread switch inside

    def _time(self, step: str, at: object) -> float:
        """The step's time in seconds, or NaN when it is not a finite number (strict mode
        raises; production counts the drop): the step still counts, but no latency that
        starts or ends at it is recorded (NaN makes each such latency NaN). Floats are
        seconds; ints nanoseconds, kept exact as seconds since the order's first int time
        (its "epoch")."""
        given = self._clock() if at is None else at
        try:
            if given.__class__ is int:  # nanoseconds: an engine's event time
                return (given - self._times.setdefault("epoch", given)) / 1e9  # type: ignore[no-any-return]
            if type(given) is float and math.isfinite(given):
                return given
            if not isinstance(given, bool) and isinstance(given, numbers.Integral):
                ns = int(given)  # an int, a numpy int64 of nanoseconds
                return (ns - self._times.setdefault("epoch", ns)) / 1e9  # type: ignore[no-any-return]
            if not isinstance(given, bool) and isinstance(given, numbers.Real) and math.isfinite(given):
                return float(given)
        except Exception:  # noqa: BLE001 - a hostile number: judged below
            pass
        self.metrics._policy.reject(
            InvalidValueError(
                lambda: (
                    f"OrderLifecycle.{step}: timestamp at={safe_repr(given)} is not a finite number "
                    "(float seconds or int nanoseconds)"
                ),
                reason="invalid_timestamp",
                metric=_STEP_METRIC[step],
                value=given,
            )
        )
        return math.nan

    def _clocks_disagree(self, i: int, seconds: float) -> None:
        a, b = _LATENCIES[i]
        self.metrics._policy.reject(
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
                h.latencies[i]._apply(seconds)
            elif seconds < 0:  # NaN (a step without a usable time) is neither
                self._clocks_disagree(i, seconds)
        return h

    def _end(self, step: str, at: object) -> Any:
        """Claim the order's one end for this call: the handles if it won, else None."""
        if at.__class__ is float and at - at == 0.0:
            when: float = at
        else:
            when = self._time(step, at)
        cell = (when, step)
        if self._times.setdefault("end", cell) is not cell:
            return None
        return self._h

    def _count_filled(self, h: _OrderHandles, status: str, when: float) -> None:
        """The order's fill status, counted once (its end is claimed), and the fill latencies."""
        h.outcome(h.filled, "orders_filled", "status", status, direction=self._key[2])._apply(1)
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
            when = at if at.__class__ is float and at - at == 0.0 else self._time("intent", at)
            h = self._step("intent", _INTENT, (when,))
            if h is not None:
                h.received._apply(1)  # a count of one needs no check
        except Exception as error:  # noqa: BLE001 - never into the broker callback (strict: MeasurementError)
            self.metrics._policy.failed(error, "orders_received")

    def submitted(self, at: float | None = None) -> None:
        """The order went to the broker."""
        try:
            when = at if at.__class__ is float and at - at == 0.0 else self._time("submitted", at)
            h = self._step("submitted", _SUBMITTED, (when,))
            if h is not None:
                h.submitted._apply(1)
        except Exception as error:  # noqa: BLE001
            self.metrics._policy.failed(error, "orders_submitted")

    def acked(self, at: float | None = None) -> None:
        """The broker acknowledged (accepted) the order."""
        try:
            when = at if at.__class__ is float and at - at == 0.0 else self._time("acked", at)
            self._step("acked", _ACKED, (when,))
        except Exception as error:  # noqa: BLE001
            self.metrics._policy.failed(error, "submit_to_ack_latency")

    def fill(
        self,
        quantity: float,
        price: float | None = None,
        at: float | None = None,
        *,
        fill_id: Any = None,
        commission_usd: float | None = None,
        slippage_bps: float | None = None,
    ) -> None:
        """One fill of ``quantity`` at ``price``: records its slippage (given, or from
        ``price`` and the order's ``reference_price``) and its commission. The fill that
        brings the filled quantity to the order's ``quantity`` completes the order
        (``orders_filled_total{status="FILLED"}``). A fill reported again with the same
        ``fill_id`` counts once; fills without one each count. A fill after the order's
        end (a fill racing a cancel) still records its costs and quantity."""
        try:
            if quantity.__class__ is not float and quantity.__class__ is not int:
                quantity = _quantity(quantity)
            if not quantity > 0 or quantity - quantity != 0:
                self._bad_quantity(quantity)
                return
            if at.__class__ is float and at - at == 0.0:
                when: float = at
            else:
                when = self._time("fill", at)
            cell = (quantity, when)
            times = self._times
            fills = times.get("fills")
            if fills is None:
                fills = times.setdefault("fills", {})
            if fill_id is None:
                fills[(_ANONYMOUS, id(cell))] = cell
                new = True
            else:
                new = fills.setdefault(fill_id, cell) is cell  # else a repeated report: no costs
            h = self._h
            if h is None:
                return
            if new:
                if slippage_bps is None and price is not None:
                    slippage_bps = self._slippage(price)
                if slippage_bps is not None:
                    h.slippage.observe(slippage_bps)
                if commission_usd is not None:
                    h.commission.inc(commission_usd)
            # Completion is checked on every report, repeated ones too: the thread that
            # holds a resent report may go on to a cancel before the first one's thread
            # has checked.
            wanted = self.quantity
            if (
                wanted is not None
                and "end" not in times
                and sum(map(_FIRST, fills.values())) >= wanted * (1 - _QUANTITY_TOLERANCE)
            ):
                latest = _latest(tuple(fills.values()))
                cell2 = (latest, "filled")
                if times.setdefault("end", cell2) is cell2:
                    self._count_filled(h, "FILLED", latest)
        except Exception as error:  # noqa: BLE001
            self.metrics._policy.failed(error, "slippage_bps")

    def _slippage(self, price: Any) -> float | None:
        """Basis points paid beyond the reference price (negative: price improvement);
        None without a usable reference."""
        ref = self.reference_price
        if ref is None:
            return None
        ref = float(ref)
        if not ref > 0 or ref - ref != 0:
            return None
        bps = (float(price) - ref) / ref * 1e4
        return bps if self._key[2] == "BUY" else -bps

    def _bad_quantity(self, quantity: object) -> None:
        self.metrics._policy.reject(
            InvalidValueError(
                lambda: f"OrderLifecycle.fill: quantity={safe_repr(quantity)} is not a finite positive number",
                reason="invalid_quantity",
                metric="orders_filled",
                value=quantity,
            )
        )

    def filled(
        self,
        at: float | None = None,
        *,
        status: str = "FILLED",
        slippage_bps: float | None = None,
        commission_usd: float | None = None,
    ) -> None:
        """The order is done: ``status`` ``FILLED`` (complete) or ``PARTIAL_FILL``. The
        costs given are its last fill's; an order filled in pieces reports each with
        ``fill()`` instead, and needs no ``filled()`` when it knows its ``quantity``."""
        try:
            when = at if at.__class__ is float and at - at == 0.0 else self._time("filled", at)
            cell = (when, "filled")
            h = self._h
            if self._times.setdefault("end", cell) is not cell or h is None:
                return
            if slippage_bps is not None:
                h.slippage.observe(slippage_bps)
            if commission_usd is not None:
                h.commission.inc(commission_usd)
            try:  # _count_filled, inlined on the common path: one lookup, no call
                filled = h.filled[status]
            except Exception:  # noqa: BLE001 - a status not seen yet (or not hashable)
                filled = h.outcome(h.filled, "orders_filled", "status", status, direction=self._key[2])
            filled._apply(1)
            self._step("filled", _FILLED, cell)
        except Exception as error:  # noqa: BLE001
            self.metrics._policy.failed(error, "orders_filled")

    def _finish(self, step: str, at: object, metric: str, counter: Callable[[_OrderHandles], BoundMetric]) -> None:
        """End the order with ``step`` if no end came first: ``counter(handles)`` counts the end,
        and an order that ends with part of it filled counts as PARTIAL_FILL too."""
        try:
            h = self._end(step, at)
            if h is not None:
                counter(h)._apply(1)
                self._ended_with_fills(h)
        except Exception as error:  # noqa: BLE001 - never into the broker callback (strict: MeasurementError)
            self.metrics._policy.failed(error, metric)

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


def _quantity(value: object) -> float:
    """A quantity as a float (Decimal, an engine's Quantity); NaN when it is not a number."""
    if isinstance(value, (bool, str, bytes)):
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - not a number: rejected by the caller
        return math.nan


def _latest(fills: tuple[tuple[float, float], ...]) -> float:
    """The latest known time among fills (NaN when none has one)."""
    times = [t for _, t in fills if t == t]  # not NaN
    return max(times) if times else math.nan
