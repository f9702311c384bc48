"""Follow one order through intent -> submit -> ack -> fill (or reject) and record the
Order plane's lifecycle metrics from the step timestamps."""

from __future__ import annotations

import math
import numbers
import sys
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
    for step in ("intent", "submitted", "acked", "filled", "rejected")
}
# The metric a bad timestamp of each step is counted against (a latency it would start or end).
_STEP_METRIC = {
    "intent": "intent_to_submit_latency",
    "submitted": "submit_to_ack_latency",
    "acked": "ack_to_fill_latency",
    "filled": "total_fill_latency",
    "rejected": "orders_rejected",
}
_INTENT, _SUBMITTED, _ACKED, _FILLED, _REJECTED = (
    _BY_STEP[step] for step in ("intent", "submitted", "acked", "filled", "rejected")
)
_MAX = sys.float_info.max
HANDLE_SETS_KEPT = 4096
"""Most (strategy, symbol, direction, order type) handle sets a plane keeps for orders."""
_OUTCOMES_KEPT = 64


class _OrderHandles:
    """The bound handles the orders of one (strategy, symbol, direction, order type)
    record on, shared by all of them: an order then costs a few handle calls."""

    __slots__ = ("base", "commission", "filled", "latencies", "metrics", "received", "rejected", "slippage",
                 "submitted")  # fmt: skip

    def __init__(self, m: PlaneMetrics, strategy: str, symbol: str, direction: str, order_type: str) -> None:
        order = {"strategy": strategy, "symbol": symbol, "direction": direction, "order_type": order_type}
        latency = {"strategy": strategy, "symbol": symbol, "order_type": order_type}
        self.metrics = m
        self.base = {"strategy": strategy, "symbol": symbol}
        self.received = m.bind("orders_received", **order)
        self.submitted = m.bind("orders_submitted", **order)
        self.latencies = tuple(m.bind(key, **latency) for key in _LATENCY_KEYS)
        self.slippage = m.bind("slippage_bps", **self.base, direction=direction)
        self.commission = m.bind("commission_usd", **self.base)
        self.filled: dict[Any, BoundMetric] = {}
        self.rejected: dict[Any, BoundMetric] = {}

    def outcome(self, kept: dict[Any, BoundMetric], key: str, label: str, value: Any, **labels: Any) -> BoundMetric:
        """Bind the handle of an outcome not in ``kept`` yet (the callers look there first),
        and keep it if its value is a plain string, up to _OUTCOMES_KEPT of them."""
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

    Call ``intent()``, ``submitted()``, ``acked()`` and ``filled()`` (or ``rejected()``)
    as the steps happen, with the step's time (``time.monotonic()`` seconds) or none to
    take the clock now. It records ``orders_received/submitted/filled/rejected_total``,
    the four latency histograms, slippage and commission.

    Steps may arrive out of order (a fill report before the ack) or twice (a resent
    report): each step counts once, the first time given wins, each latency is recorded
    once both its ends are known, and a latency that would be negative (clocks that
    disagree) is not recorded. After ``filled`` an order cannot be rejected, nor the
    other way round. Thread-safe: broker callbacks may arrive on other threads.

    Example::

        order = OrderLifecycle(strategy="OFI", symbol="SPY", direction="BUY", order_type="LIMIT")
        order.intent()
        order.submitted()
        order.acked()
        order.filled(slippage_bps=-0.4, commission_usd=0.35)
    """

    __slots__ = ("_clock", "_h", "_key", "_times", "metrics")

    def __init__(
        self,
        *,
        strategy: str,
        symbol: str,
        direction: str,
        order_type: str,
        metrics: PlaneMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if metrics is None:
            metrics = _state.plane_metrics(Plane.ORDER)
        self.metrics = metrics
        key = self._key = (strategy, symbol, direction, order_type)
        self._clock = clock
        # step -> (time,) of the call that claimed it; "end" -> the terminal step's cell;
        # a latency's index -> the cell of the call that recorded it. Claims are single
        # dict.setdefault calls, atomic under the GIL: broker threads need no lock.
        self._times: dict[Any, tuple[float | None]] = {}
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
        ``filled`` or ``rejected``."""
        times = self._times
        end = times.get("end")
        if end is not None:
            return "filled" if times.get("filled") is end else "rejected"
        for step in ("acked", "submitted", "intent"):
            if step in times:
                return step
        return "new"

    def _time(self, step: str, at: object) -> float | None:
        """The step's time as a float, or None when it is not a finite number (strict
        mode raises; production counts the drop): the step still counts, but no latency
        that starts or ends at it is recorded."""
        given = self._clock() if at is None else at
        try:
            if (type(given) is float or type(given) is int) and math.isfinite(given):
                return given
            if not isinstance(given, bool) and isinstance(given, numbers.Real) and math.isfinite(given):
                return float(given)
        except Exception:  # noqa: BLE001 - an int too large for a float, a hostile number: judged below
            pass
        self.metrics._policy.reject(
            InvalidValueError(
                lambda: f"OrderLifecycle.{step}: timestamp at={safe_repr(given)} is not a finite number of seconds",
                reason="invalid_timestamp",
                metric=_STEP_METRIC[step],
                value=given,
            )
        )
        return None

    def _step(self, step: str, pairs: tuple[tuple[int, str, bool], ...], terminal: bool, at: object) -> Any:
        """Claim the step for this call and record the latencies it completes (``pairs``:
        ``_BY_STEP[step]``); the order's handles if this call counts the step, None if
        the step was claimed already (or the order ended otherwise)."""
        when = at if at.__class__ is float and at - at == 0.0 else self._time(step, at)  # x - x: 0.0 iff finite
        cell = (when,)
        times = self._times
        if terminal:  # the order's one end: claimed once, then the step is this call's alone
            if times.setdefault("end", cell) is not cell:
                return None
            times[step] = cell
        elif times.setdefault(step, cell) is not cell:
            return None
        h = self._h
        if when is not None and h is not None:
            for i, other, is_end in pairs:
                then = times.get(other)
                if then is None:
                    continue
                t0 = then[0]
                if t0 is None:
                    continue
                seconds = when - t0 if is_end else t0 - when
                # Each latency once, whichever of its two steps' threads gets here first;
                # negative (clocks that disagree) or overflowing: not a latency.
                if seconds >= 0 and seconds - seconds == 0.0 and times.setdefault(i, cell) is cell:
                    h.latencies[i]._apply(seconds)
        return h

    def intent(self, at: float | None = None) -> None:
        """The order intent arrived from a strategy."""
        try:
            h = self._step("intent", _INTENT, False, at)
            if h is not None:
                h.received._apply(1)  # a count of one needs no check
        except Exception as error:  # noqa: BLE001 - never into the broker callback (strict: MeasurementError)
            self.metrics._policy.failed(error, "orders_received")

    def submitted(self, at: float | None = None) -> None:
        """The order went to the broker."""
        try:
            h = self._step("submitted", _SUBMITTED, False, at)
            if h is not None:
                h.submitted._apply(1)
        except Exception as error:  # noqa: BLE001
            self.metrics._policy.failed(error, "orders_submitted")

    def acked(self, at: float | None = None) -> None:
        """The broker acknowledged the order."""
        try:
            self._step("acked", _ACKED, False, at)
        except Exception as error:  # noqa: BLE001
            self.metrics._policy.failed(error, "submit_to_ack_latency")

    def filled(
        self,
        at: float | None = None,
        *,
        status: str = "FILLED",
        slippage_bps: float | None = None,
        commission_usd: float | None = None,
    ) -> None:
        """The order is done: ``status`` ``FILLED`` or ``PARTIAL_FILL``."""
        try:
            h = self._step("filled", _FILLED, True, at)
            if h is None:
                return
            try:
                filled = h.filled[status]
            except Exception:  # noqa: BLE001 - a status not seen yet (or not hashable: bind judges it)
                filled = h.outcome(h.filled, "orders_filled", "status", status, direction=self._key[2])
            filled._apply(1)
            if slippage_bps is not None:
                h.slippage.observe(slippage_bps)
            if commission_usd is not None:
                h.commission.inc(commission_usd)
        except Exception as error:  # noqa: BLE001
            self.metrics._policy.failed(error, "orders_filled")

    def rejected(self, reason: str, at: float | None = None) -> None:
        """The order was rejected (by a risk check, the broker, ...)."""
        try:
            h = self._step("rejected", _REJECTED, True, at)
            if h is not None:
                try:
                    rejected = h.rejected[reason]
                except Exception:  # noqa: BLE001 - a reason not seen yet (or not hashable: bind judges it)
                    rejected = h.outcome(h.rejected, "orders_rejected", "reason", reason)
                rejected._apply(1)
        except Exception as error:  # noqa: BLE001
            self.metrics._policy.failed(error, "orders_rejected")
