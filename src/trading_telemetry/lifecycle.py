"""Follow one order through intent -> submit -> ack -> fill (or reject) and record the
Order plane's lifecycle metrics from the step timestamps."""

from __future__ import annotations

import functools
import math
import numbers
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from trading_telemetry import _state
from trading_telemetry._recorder import PlaneMetrics
from trading_telemetry._safe import safe_repr
from trading_telemetry.catalog import Plane
from trading_telemetry.errors import InvalidValueError

__all__ = ["OrderLifecycle"]

F = TypeVar("F", bound=Callable[..., None])


def _never_raises(metric: str) -> Callable[[F], F]:
    """A step never raises into the broker callback that calls it in production mode,
    whatever its arguments; strict mode raises a MeasurementError."""

    def decorate(step: F) -> F:
        @functools.wraps(step)
        def guarded(self: OrderLifecycle, *args: Any, **kwargs: Any) -> None:
            try:
                step(self, *args, **kwargs)
            except Exception as error:  # noqa: BLE001
                self.metrics._policy.failed(error, metric)

        return guarded  # type: ignore[return-value]

    return decorate


# (from step, to step, histogram key): recorded once both steps are known.
_LATENCIES = (
    ("intent", "submitted", "intent_to_submit_latency"),
    ("submitted", "acked", "submit_to_ack_latency"),
    ("acked", "filled", "ack_to_fill_latency"),
    ("intent", "filled", "total_fill_latency"),
)
# The metric a bad timestamp of each step is counted against (a latency it would start or end).
_STEP_METRIC = {
    "intent": "intent_to_submit_latency",
    "submitted": "submit_to_ack_latency",
    "acked": "ack_to_fill_latency",
    "filled": "total_fill_latency",
    "rejected": "orders_rejected",
}


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
        self.metrics = metrics or _state.plane_metrics(Plane.ORDER)
        self.strategy, self.symbol, self.direction, self.order_type = strategy, symbol, direction, order_type
        self._clock = clock
        self._times: dict[str, float | None] = {}
        self._recorded: set[str] = set()
        self._terminal: str | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        """The furthest step reached: ``new``, ``intent``, ``submitted``, ``acked``,
        ``filled`` or ``rejected``."""
        if self._terminal:
            return self._terminal
        for step in ("acked", "submitted", "intent"):
            if step in self._times:
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

    def _step(self, step: str, at: float | None) -> bool:
        """Note the step's time; False if it was already noted (or the order ended otherwise)."""
        when = self._time(step, at)
        with self._lock:
            if step in self._times or (step in ("filled", "rejected") and self._terminal):
                return False
            self._times[step] = when
            if step in ("filled", "rejected"):
                self._terminal = step
            due = [
                (start, end, key)
                for start, end, key in _LATENCIES
                if key not in self._recorded and self._times.get(start) is not None and self._times.get(end) is not None
            ]
            self._recorded.update(key for _, _, key in due)
            latencies = [(key, self._times[end] - self._times[start]) for start, end, key in due]  # type: ignore[operator]
        for key, seconds in latencies:
            if seconds >= 0:
                self.metrics.observe(
                    key, seconds, strategy=self.strategy, symbol=self.symbol, order_type=self.order_type
                )
        return True

    @_never_raises("orders_received")
    def intent(self, at: float | None = None) -> None:
        """The order intent arrived from a strategy."""
        if self._step("intent", at):
            self.metrics.inc("orders_received", strategy=self.strategy, symbol=self.symbol,
                             direction=self.direction, order_type=self.order_type)  # fmt: skip

    @_never_raises("orders_submitted")
    def submitted(self, at: float | None = None) -> None:
        """The order went to the broker."""
        if self._step("submitted", at):
            self.metrics.inc("orders_submitted", strategy=self.strategy, symbol=self.symbol,
                             direction=self.direction, order_type=self.order_type)  # fmt: skip

    @_never_raises("submit_to_ack_latency")
    def acked(self, at: float | None = None) -> None:
        """The broker acknowledged the order."""
        self._step("acked", at)

    @_never_raises("orders_filled")
    def filled(
        self,
        at: float | None = None,
        *,
        status: str = "FILLED",
        slippage_bps: float | None = None,
        commission_usd: float | None = None,
    ) -> None:
        """The order is done: ``status`` ``FILLED`` or ``PARTIAL_FILL``."""
        if not self._step("filled", at):
            return
        m, base = self.metrics, {"strategy": self.strategy, "symbol": self.symbol}
        m.inc("orders_filled", **base, direction=self.direction, status=status)
        if slippage_bps is not None:
            m.observe("slippage_bps", slippage_bps, **base, direction=self.direction)
        if commission_usd is not None:
            m.inc("commission_usd", commission_usd, **base)

    @_never_raises("orders_rejected")
    def rejected(self, reason: str, at: float | None = None) -> None:
        """The order was rejected (by a risk check, the broker, ...)."""
        if self._step("rejected", at):
            self.metrics.inc("orders_rejected", strategy=self.strategy, symbol=self.symbol, reason=reason)
