from __future__ import annotations

import asyncio
import inspect
import typing

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from trading_telemetry import (
    InstrumentationError,
    TelemetryConfig,
    continue_trace,
    extract_trace_context,
    init_metrics_exporter,
    inject_trace_context,
    traced,
)
from trading_telemetry.testing import TelemetryCapture


@traced(plane="strategy_plane", attributes_from=("strategy", "symbol"), attributes={"desk": "eq"})
def signal(strategy: str, symbol: str, size: int = 3) -> int:
    return size * 2


@traced(plane="order_plane", name="submit")
async def submit(symbol: str) -> str:
    await asyncio.sleep(0)
    return symbol.lower()


class Router:
    @traced(plane="order_plane", attributes_from=("venue",))
    def route(self, venue: str) -> str:
        return venue


def test_sync_span_named_after_function_with_argument_attributes(captelemetry: TelemetryCapture) -> None:
    """A sync call makes one span named by __qualname__, with attributes from named arguments."""
    assert signal("OFI", symbol="SPY") == 6
    (span,) = captelemetry.spans("signal")
    assert dict(span.attributes or {}) == {"strategy": "OFI", "symbol": "SPY", "desk": "eq"}
    assert span.resource.attributes["service.name"] == "strategy_plane"


def test_async_span_with_given_name(captelemetry: TelemetryCapture) -> None:
    """An async function gets a span under the given name, on its plane's provider."""
    assert asyncio.run(submit("SPY")) == "spy"
    (span,) = captelemetry.spans("submit")
    assert span.resource.attributes["service.name"] == "order_plane"


def test_method_span(captelemetry: TelemetryCapture) -> None:
    """Methods work: the span is named Class.method and `self` is not an attribute."""
    assert Router().route(venue="ARCA") == "ARCA"
    (span,) = captelemetry.spans("Router.route")
    assert dict(span.attributes or {}) == {"venue": "ARCA"}


def test_exception_recorded_with_error_status_and_reraised(captelemetry: TelemetryCapture) -> None:
    """The exception is recorded on the span, the status is ERROR, and the same object is re-raised."""
    boom = ValueError("no liquidity")

    @traced(plane="order_plane")
    def fail() -> None:
        raise boom

    with pytest.raises(ValueError, match="no liquidity") as caught:
        fail()
    assert caught.value is boom
    (span,) = captelemetry.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


def test_signature_and_type_hints_are_preserved() -> None:
    """The wrapper keeps the function's signature, name, docstring and type hints."""
    assert inspect.signature(signal) == inspect.signature(signal.__wrapped__)  # type: ignore[attr-defined]
    assert signal.__name__ == "signal"
    assert typing.get_type_hints(signal) == {"strategy": str, "symbol": str, "size": int, "return": int}
    assert inspect.iscoroutinefunction(submit)


def test_bare_decorator_uses_the_only_plane() -> None:
    """@traced without arguments works; with one plane initialised its spans go there."""
    capture = TelemetryCapture()
    capture.plane("data_plane")

    @traced
    def parse() -> int:
        return 1

    assert parse() == 1
    (span,) = capture.spans("test_bare_decorator_uses_the_only_plane.<locals>.parse")
    assert span.resource.attributes["service.name"] == "data_plane"


def test_tracing_off_calls_the_function_directly() -> None:
    """With no span exporter configured the plane has no tracer, and the call still works."""
    metrics = init_metrics_exporter("strategy_plane", config=TelemetryConfig(metrics_exporters=()))
    assert metrics.tracer is None
    assert signal("OFI", "SPY", 5) == 10


def test_decorate_time_errors() -> None:
    """An argument the function lacks, or a generator, is refused when decorating."""
    with pytest.raises(InstrumentationError, match="has no argument 'symbl'; its arguments: strategy, symbol"):

        @traced(attributes_from=("symbl",))
        def f(strategy: str, symbol: str) -> None: ...

    with pytest.raises(InstrumentationError, match="generator"):

        @traced
        def gen() -> typing.Iterator[int]:
            yield 1

    with pytest.raises(InstrumentationError, match="generator"):

        @traced
        async def agen() -> typing.AsyncIterator[int]:
            yield 1


def test_trace_crosses_planes_in_a_dict(captelemetry: TelemetryCapture) -> None:
    """inject/continue carry the trace from a Strategy-plane span to an Order-plane span via a plain dict."""
    intent: dict[str, object] = {"symbol": "SPY", "qty": 100}

    @traced(plane="strategy_plane", name="decide")
    def decide() -> None:
        inject_trace_context(intent)

    @traced(plane="order_plane", name="execute")
    def execute() -> None: ...

    decide()
    assert isinstance(intent["traceparent"], str)
    with continue_trace(intent):
        execute()
    (parent,) = captelemetry.spans("decide")
    (child,) = captelemetry.spans("execute")
    assert child.context is not None
    assert parent.context is not None
    assert child.context.trace_id == parent.context.trace_id
    assert child.parent is not None
    assert child.parent.span_id == parent.context.span_id
    assert extract_trace_context({"traceparent": "garbage"}) == {}


def test_exemplars_link_latency_to_the_span(captelemetry: TelemetryCapture) -> None:
    """A latency observed inside a span carries an exemplar with that span's trace id (OTLP path)."""
    metrics = captelemetry.plane("order_plane")
    labels = {"strategy": "OFI", "symbol": "SPY", "order_type": "LIMIT"}

    @traced(plane="order_plane", name="fill")
    def fill() -> int:
        metrics.observe("total_fill_latency", 0.02, **labels)
        return int(trace.get_current_span().get_span_context().trace_id)

    trace_id = fill()
    assert captelemetry.histogram("total_fill_latency", **labels).exemplar_trace_ids == (trace_id,)
