"""The demo session's traces: a tick, the signals on it and the orders they make are one trace."""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.trace import ReadableSpan

from trading_telemetry.demo import Session
from trading_telemetry.testing import TelemetryCapture


def _run(steps: int) -> None:
    """``steps`` ticks, then a moment for the order router to start the orders (whose spans
    end when they are cancelled)."""

    async def run() -> None:
        session = Session(seed=5)
        router = asyncio.ensure_future(session.order_router())
        for _ in range(steps):
            session.step()
        for _ in range(20):
            await asyncio.sleep(0.005)
        router.cancel()
        for task in list(session.tasks):
            task.cancel()
        await asyncio.gather(router, *session.tasks, return_exceptions=True)

    asyncio.run(run())


def test_every_order_span_descends_from_its_strategy_and_tick_spans(captelemetry: TelemetryCapture) -> None:
    """Each execute_order span (Order plane) has the Strategy plane's evaluate_move span as parent,
    whose parent is the Data plane's handle_tick span, all in one trace."""
    captelemetry.start()
    _run(600)
    spans = {s.context.span_id: s for s in captelemetry.spans()}  # type: ignore[union-attr]

    def parent(span: ReadableSpan) -> ReadableSpan:
        assert span.parent is not None, f"{span.name} has no parent"
        return spans[span.parent.span_id]

    def service(span: ReadableSpan) -> object:
        return span.resource.attributes["service.name"]

    orders = captelemetry.spans("execute_order")
    assert len(orders) >= 10
    for order in orders:
        move = parent(order)
        tick = parent(move)
        assert (order.name, move.name, tick.name) == ("execute_order", "evaluate_move", "handle_tick")
        assert (service(order), service(move), service(tick)) == ("order_plane", "strategy_plane", "data_plane")
        assert order.context.trace_id == move.context.trace_id == tick.context.trace_id  # type: ignore[union-attr]
        assert tick.parent is None
