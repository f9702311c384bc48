"""Follow one order through intent -> submit -> ack -> fill (or reject) and record the
Order plane's lifecycle metrics from the step timestamps."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from trading_telemetry import _state
from trading_telemetry._recorder import PlaneMetrics
from trading_telemetry.catalog import Plane

__all__ = ["OrderLifecycle"]

# (from step, to step, histogram key): recorded once both steps are known.
_LATENCIES = (
    ("intent", "submitted", "intent_to_submit_latency"),
    ("submitted", "acked", "submit_to_ack_latency"),
    ("acked", "filled", "ack_to_fill_latency"),
    ("intent", "filled", "total_fill_latency"),
)


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
        self._times: dict[str, float] = {}
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

    def _step(self, step: str, at: float | None) -> bool:
        """Note the step's time; False if it was already noted (or the order ended otherwise)."""
        with self._lock:
            if step in self._times or (step in ("filled", "rejected") and self._terminal):
                return False
            self._times[step] = self._clock() if at is None else at
            if step in ("filled", "rejected"):
                self._terminal = step
            due = [
                (start, end, key)
                for start, end, key in _LATENCIES
                if key not in self._recorded and start in self._times and end in self._times
            ]
            self._recorded.update(key for _, _, key in due)
            latencies = [(key, self._times[end] - self._times[start]) for start, end, key in due]
        for key, seconds in latencies:
            if seconds >= 0:
                self.metrics.observe(
                    key, seconds, strategy=self.strategy, symbol=self.symbol, order_type=self.order_type
                )
        return True

    def intent(self, at: float | None = None) -> None:
        """The order intent arrived from a strategy."""
        if self._step("intent", at):
            self.metrics.inc("orders_received", strategy=self.strategy, symbol=self.symbol,
                             direction=self.direction, order_type=self.order_type)  # fmt: skip

    def submitted(self, at: float | None = None) -> None:
        """The order went to the broker."""
        if self._step("submitted", at):
            self.metrics.inc("orders_submitted", strategy=self.strategy, symbol=self.symbol,
                             direction=self.direction, order_type=self.order_type)  # fmt: skip

    def acked(self, at: float | None = None) -> None:
        """The broker acknowledged the order."""
        self._step("acked", at)

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

    def rejected(self, reason: str, at: float | None = None) -> None:
        """The order was rejected (by a risk check, the broker, ...)."""
        if self._step("rejected", at):
            self.metrics.inc("orders_rejected", strategy=self.strategy, symbol=self.symbol, reason=reason)
