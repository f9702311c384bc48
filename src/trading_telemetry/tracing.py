"""Spans: the ``traced`` decorator and W3C trace-context helpers for messages.

A plane's spans go to its own TracerProvider, configured by ``OTEL_TRACES_EXPORTER``.
With no span exporter configured (the default), ``traced`` calls the function directly.

Carry a trace from the Strategy plane to the Order plane inside an order intent::

    intent = {"symbol": "SPY", "qty": 100}
    inject_trace_context(intent)            # adds "traceparent" (and "tracestate")
    ...                                     # the intent crosses a queue or the network
    with continue_trace(intent):            # the Order plane's spans join the trace
        execute(intent)
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.types import AttributeValue

from trading_telemetry import _state
from trading_telemetry._globals import STATE
from trading_telemetry._safe import safe_str, type_name
from trading_telemetry._version import __version__
from trading_telemetry._wrapping import argument_extractor, check_function
from trading_telemetry.catalog import Plane

__all__ = ["continue_trace", "extract_trace_context", "inject_trace_context", "traced"]

logger = logging.getLogger("trading_telemetry")

P = ParamSpec("P")
R = TypeVar("R")


def _propagator() -> TextMapPropagator:
    """The propagators OTEL_PROPAGATORS names (default tracecontext and baggage), built
    once (``STATE.propagators``)."""
    names = _state.current_config().propagators
    found = STATE.propagators.get(names)
    if found is None:
        from importlib.metadata import entry_points

        loaded: list[TextMapPropagator] = []
        for name in names:
            for entry in entry_points(group="opentelemetry_propagator", name=name):
                loaded.append(entry.load()())
                break
        found = STATE.propagators[names] = CompositePropagator(loaded)
    return found


MAX_CARRIED_VALUE = 4096
"""Longest header value read from a carrier (``traceparent`` is 55 characters; W3C
asks ``tracestate`` to be kept up to 512): longer ones are ignored unread."""


def inject_trace_context(carrier: MutableMapping[str, Any] | None = None) -> MutableMapping[str, Any]:
    """Write the current span's W3C ``traceparent`` (and ``tracestate``) into ``carrier``
    (a new dict if none) and return it. Without a current span nothing is written.

    Never raises, in either mode: a carrier that cannot be written to is returned as it
    is, and the failure logged (the message still goes out, without the trace)."""
    carrier = {} if carrier is None else carrier
    try:
        _propagator().inject(carrier)
    except Exception as error:  # noqa: BLE001 - a read-only or hostile carrier
        _carrier_failed("inject_trace_context", carrier, error)
    return carrier


def extract_trace_context(carrier: Mapping[str, Any]) -> otel_context.Context:
    """The context carried by ``carrier``, to parent spans with (an empty one if none).

    Never raises: a carrier that is not a mapping of strings, or values past
    MAX_CARRIED_VALUE characters, carry no context."""
    try:
        headers = {
            k: v
            for k, v in carrier.items()
            if type(k) is str and type(v) is str and len(v) <= MAX_CARRIED_VALUE and k.isascii()
        }
        return _propagator().extract(headers)
    except Exception as error:  # noqa: BLE001 - not a mapping, a hostile items()
        _carrier_failed("extract_trace_context", carrier, error)
        return otel_context.Context()


def _carrier_failed(helper: str, carrier: object, error: Exception) -> None:
    """Log a carrier the helpers could not use, once per helper and type (bounded)."""
    kind = f"{helper}:{type_name(carrier)}"
    logged = STATE.carrier_failures_logged
    if kind in logged or len(logged) >= 64:
        return
    logged.add(kind)
    with contextlib.suppress(Exception):
        logger.warning(
            "%s: cannot use a carrier of type %s (%s: %s); no trace context carried",
            helper,
            type_name(carrier),
            type_name(error),
            safe_str(error),
        )


@contextmanager
def continue_trace(carrier: Mapping[str, Any]) -> Iterator[None]:
    """Make the trace carried by ``carrier`` current for the block."""
    token = otel_context.attach(extract_trace_context(carrier))
    try:
        yield
    finally:
        otel_context.detach(token)


def _tracer(plane: Plane | None) -> trace.Tracer | None:
    """The tracer for a call: the plane's; with no plane named, the only initialised
    plane's, or else the global OTel tracer. None means tracing is off."""
    if plane is not None:
        return _state.plane_metrics(plane).tracer
    initialised = _state.initialised_planes()
    if len(initialised) == 1:
        return initialised[0].tracer
    return trace.get_tracer("trading_telemetry", __version__)


_PRIMITIVES = frozenset({bool, int, float})
MAX_ATTRIBUTE_LENGTH = 256
"""Longest text an argument becomes as a span attribute (``str()`` of it, cut)."""


def _record_error(span: trace.Span, error: Exception) -> None:
    """What ``trace.use_span`` does with an exception: an event and status ERROR. Never
    raises: the caller re-raises the user's exception, which must stay the one seen."""
    with contextlib.suppress(Exception):
        if span.is_recording():
            span.set_status(Status(StatusCode.ERROR, f"{type_name(error)}: {safe_str(error)}"))
            span.record_exception(error)


@overload
def traced(func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def traced(
    *,
    name: str | None = None,
    plane: str | Plane | None = None,
    attributes_from: Sequence[str] = (),
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def traced(
    func: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    plane: str | Plane | None = None,
    attributes_from: Sequence[str] = (),
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """One span per call of a sync or async function or method.

    The span is named after the function (its ``__qualname__``) unless ``name`` is given.
    The arguments named in ``attributes_from`` become span attributes, next to the fixed
    ``attributes``. An exception is recorded on the span, which gets status ERROR, and
    re-raised unchanged. ``plane`` chooses the TracerProvider; without it, the only
    initialised plane's (or the global OTel one).

    Example::

        @traced(plane="strategy_plane", attributes_from=("strategy", "symbol"))
        def generate_signal(strategy: str, symbol: str, book: Book) -> Signal: ...

    Mistakes (an argument the function does not have, a generator) raise
    :class:`~trading_telemetry.errors.InstrumentationError` when decorating.
    """
    the_plane = Plane.parse(plane) if plane is not None else None
    planes = _state.planes  # the live registry: a dict lookup per call, no function call
    static = dict(attributes or {})
    names = tuple(attributes_from)

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        check_function(fn, "traced")
        extract = argument_extractor(fn, names, "traced")
        span_name = name or fn.__qualname__

        def span_attributes(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, AttributeValue] | None:
            if not names:
                return static or None
            attrs = dict(static)
            try:
                for key, value in zip(names, extract(args, kwargs), strict=True):
                    if value is not None:
                        kind = type(value)
                        if kind is str:
                            attrs[key] = value if len(value) <= MAX_ATTRIBUTE_LENGTH else value[:MAX_ATTRIBUTE_LENGTH]
                        else:
                            attrs[key] = value if kind in _PRIMITIVES else safe_str(value, MAX_ATTRIBUTE_LENGTH)
            except Exception:  # noqa: BLE001 - a span without the attribute, never a failed call
                pass
            return attrs

        # Spans are started and made current with the API's start_span/attach, as
        # start_as_current_span(record_exception=True, set_status_on_exception=True) does,
        # without its two generator-based context managers (a third of a span's cost).
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                metrics = planes.get(the_plane) if the_plane is not None else None
                tracer = metrics.tracer if metrics is not None else _tracer(the_plane)
                if tracer is None:
                    return await fn(*args, **kwargs)
                span = tracer.start_span(span_name, attributes=span_attributes(args, kwargs))
                token = otel_context.attach(trace.set_span_in_context(span))
                try:
                    return await fn(*args, **kwargs)
                except Exception as error:
                    _record_error(span, error)
                    raise
                finally:
                    otel_context.detach(token)
                    span.end()

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            metrics = planes.get(the_plane) if the_plane is not None else None
            tracer = metrics.tracer if metrics is not None else _tracer(the_plane)
            if tracer is None:
                return fn(*args, **kwargs)
            span = tracer.start_span(span_name, attributes=span_attributes(args, kwargs))
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                return fn(*args, **kwargs)
            except Exception as error:
                _record_error(span, error)
                raise
            finally:
                otel_context.detach(token)
                span.end()

        return wrapper

    return decorate(func) if func is not None else decorate
