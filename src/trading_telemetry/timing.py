"""``timed``: a call's (or a block's) duration into a catalog histogram, and its outcome
into a catalog counter, with labels taken from the call's arguments or given."""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from trading_telemetry import _state
from trading_telemetry._checks import did_you_mean, label_value
from trading_telemetry._globals import STATE
from trading_telemetry._recorder import BoundMetric, PlaneMetrics
from trading_telemetry._wrapping import argument_extractor, check_function
from trading_telemetry.catalog import Kind, MetricSpec, effective_catalog, lookup
from trading_telemetry.errors import InstrumentationError
from trading_telemetry.lifecycle import LATENCY_STEPS

__all__ = ["Timing", "timed"]

HANDLES_KEPT = 4096
"""Most argument tuples one ``timed`` caches handles for (``labels_from`` values); calls
with further values still record, through ``bind``."""

logger = logging.getLogger("trading_telemetry")

P = ParamSpec("P")
R = TypeVar("R")


def _plain(values: tuple[Any, ...]) -> bool:
    """Whether every value is a plain ``str``: only such tuples key the handle cache."""
    for value in values:  # noqa: SIM110 - cheaper than all() over a generator, on the hot path
        if type(value) is not str:
            return False
    return True


def _spec(key: str, kind: Kind, role: str) -> MetricSpec:
    found = lookup(key)
    if found is None:  # perhaps a desk's metric, from a catalog file not read yet
        _state.load_configured_catalog()
        found = lookup(key)
    if found is None:
        hint = did_you_mean(key, (s.key for s in effective_catalog() if s.kind is kind))
        raise InstrumentationError(f"timed: {role} {key!r} is not a catalog metric{hint}")
    if found.kind is not kind:
        raise InstrumentationError(f"timed: {role} {key!r} is a {found.kind.value}, not a {kind.value}")
    return found


def _warn_if_lifecycle_records(key: str) -> None:
    """Warn, once per key, that OrderLifecycle records this latency as well: with both,
    each order is observed twice."""
    steps = LATENCY_STEPS.get(key)
    if steps is None or key in STATE.lifecycle_keys_warned:
        return
    STATE.lifecycle_keys_warned.add(key)
    start, end = (f"{step}()" if step != "filled" else "the fill that completes the order" for step in steps)
    logger.warning(
        "timed(%r): OrderLifecycle records %s too, from %s to %s, so a program that times it here and also "
        "calls those OrderLifecycle steps observes each order twice. Choose one: OrderLifecycle (it records all "
        "four order latencies and the order counters) without this timed, or this timed without OrderLifecycle "
        "for these orders",
        key,
        key,
        start,
        end,
    )


class _Bound:
    """One label set's handles: the histogram's, and the outcome counter's per outcome,
    each recorded through ``record_unchecked`` (durations and counts of one are valid by
    construction), looked up at each call, so that a retired handle counts its drops."""

    __slots__ = ("histogram", "labels", "outcomes")

    def __init__(self, histogram: BoundMetric, labels: dict[str, Any]) -> None:
        self.histogram = histogram
        self.labels = labels
        self.outcomes: dict[str, BoundMetric] = {}

    def retired(self) -> bool:
        """Whether ``retire`` removed one of its series."""
        return self.histogram.retired or any(counter.retired for counter in self.outcomes.values())


class Timing:
    """One timed block; ``outcome`` may be set inside it (default ``ok``, or the error
    outcome when the block raises)."""

    __slots__ = ("outcome", "start_ns")

    def __init__(self) -> None:
        self.outcome: str | None = None
        self.start_ns = time.perf_counter_ns()


class timed:
    """Observe the duration of each call into the histogram ``key``.

    ``labels_from`` names arguments whose values become labels; ``labels`` gives the
    rest as constants; together they must be exactly the metric's labels. ``outcome``
    names a catalog counter (e.g. ``qp_solve_status``) counted once per call with
    ``outcome_label`` set to ``outcome_of(result)`` (default ``"ok"``), or to
    ``on_error`` when the call raises; the exception is re-raised unchanged.

    Example::

        @timed("qp_solve_time", outcome="qp_solve_status", outcome_of=lambda r: r.status)
        def solve(problem: QP) -> Solution: ...

        with timed("storage_write_latency", labels={"event_type": "bar"}):
            store.write(bar)

    Works on sync and async functions and methods. A key that is not a histogram, a
    label the metric does not have or lacks, or an argument the function does not have
    raises :class:`~trading_telemetry.errors.InstrumentationError` here, not on the
    hot path. Recording follows the plane's error regime (design: never raises in
    production).
    """

    def __init__(
        self,
        key: str,
        /,
        *,
        labels_from: Sequence[str] = (),
        labels: Mapping[str, str] | None = None,
        outcome: str | None = None,
        outcome_label: str = "status",
        outcome_of: Callable[[Any], str] | None = None,
        on_error: str = "error",
    ) -> None:
        self.spec = _spec(key, Kind.HISTOGRAM, "key")
        _warn_if_lifecycle_records(self.spec.key)
        self._labels_from = tuple(labels_from)
        self._static = dict(labels or {})
        self._check_labels()
        self._outcome = _spec(outcome, Kind.COUNTER, "outcome") if outcome is not None else None
        self._outcome_label = outcome_label
        self._outcome_of = outcome_of
        self._on_error = on_error
        if self._outcome is not None:
            self._check_outcome(self._outcome)
        self._plane = self.spec.plane
        self._metrics: PlaneMetrics | None = None
        self._handles: dict[tuple[Any, ...], _Bound] = {}
        # The blocks open in this thread or asyncio task, innermost last: a context
        # variable, so overlapping tasks never see each other's blocks.
        self._open: ContextVar[tuple[Timing, ...]] = ContextVar(f"timed-{key}", default=())

    def _check_labels(self) -> None:
        given = [*self._labels_from, *self._static]
        wanted = set(self.spec.labels)
        key = self.spec.key
        for name in given:
            if name not in wanted:
                allowed = ", ".join(self.spec.labels) or "none"
                raise InstrumentationError(f"timed({key!r}): label {name!r} is not allowed; allowed labels: {allowed}")
        if len(given) != len(set(given)):
            raise InstrumentationError(f"timed({key!r}): a label is given both in labels_from and labels")
        missing = wanted - set(given)
        if missing:
            raise InstrumentationError(
                f"timed({key!r}): labels {sorted(missing)} are missing; give them in labels_from or labels"
            )
        for name, value in self._static.items():
            if not isinstance(value, str) or not value:
                raise InstrumentationError(f"timed({key!r}): label {name}={value!r} must be a non-empty string")

    def _check_outcome(self, counter: MetricSpec) -> None:
        if counter.plane is not self.spec.plane:
            raise InstrumentationError(f"timed: outcome {counter.key!r} is not on the {self.spec.plane.value}")
        if self._outcome_label not in counter.labels:
            raise InstrumentationError(f"timed: outcome {counter.key!r} has no label {self._outcome_label!r}")
        others = set(counter.labels) - {self._outcome_label}
        if not others <= {*self._labels_from, *self._static}:
            raise InstrumentationError(
                f"timed: outcome {counter.key!r} needs labels {sorted(others)} from labels_from or labels"
            )

    # -- recording ---------------------------------------------------------------

    def _plane_metrics(self) -> PlaneMetrics:
        metrics = _state.plane_metrics(self._plane)
        if metrics is not self._metrics:  # first call, or the plane was reset
            self._handles.clear()  # cleared, never replaced: the wrappers hold it
            self._metrics = metrics
            metrics.keep_informed(self)
        return metrics

    def forget_retired(self) -> None:
        """After ``retire``: the kept label sets with a retired series are bound again at
        their next call, as new series from zero."""
        for values, bound in list(self._handles.items()):
            if bound.retired():
                self._handles.pop(values, None)

    def _bound(self, metrics: PlaneMetrics, values: tuple[Any, ...]) -> _Bound:
        plain = _plain(values)
        if plain:
            bound = self._handles.get(values)
            if bound is not None:
                return bound
        # Anything but plain strings is judged by bind(): an object that hashes and compares
        # equal to a cached string must not pass for it.
        labels = {**self._static, **dict(zip(self._labels_from, values, strict=True))}
        bound = _Bound(metrics.bind(self.spec.key, **labels), labels)
        if plain and len(self._handles) < HANDLES_KEPT:
            self._handles[values] = bound
            if bound.retired():  # retired between the bind and the keeping: forget_retired ran too early
                self._handles.pop(values, None)
        return bound

    def _outcome_counter(self, metrics: PlaneMetrics, bound: _Bound, outcome: str) -> BoundMetric:
        counter = bound.outcomes.get(outcome) if type(outcome) is str else None
        if counter is None:
            assert self._outcome is not None
            labels = {k: v for k, v in bound.labels.items() if k in self._outcome.labels}
            counter = metrics.bind(self._outcome.key, **{**labels, self._outcome_label: outcome})
            if len(bound.outcomes) < 64 and type(outcome) is str:  # a handful of statuses; never unbounded
                bound.outcomes[outcome] = counter
                if counter.retired:  # as in _bound
                    bound.outcomes.pop(outcome, None)
        return counter

    def _finish(self, metrics: PlaneMetrics, values: tuple[Any, ...], start_ns: int, outcome: str | None) -> None:
        """Record a call or block; never raises in production mode."""
        try:
            bound = self._bound(metrics, values)
            bound.histogram.record_unchecked((time.perf_counter_ns() - start_ns) / 1e9)
            if outcome is not None and self._outcome is not None:
                self._outcome_counter(metrics, bound, outcome).record_unchecked(1)
        except Exception as error:  # noqa: BLE001 - hostile arguments: strict raises, production drops
            metrics.record_failure(error, self.spec.key)

    def _success_outcome(self, metrics: PlaneMetrics, result: Any) -> Any:
        """``outcome_of(result)``, the outcome label's value (judged when its counter is
        first bound); None (counted as a drop) when ``outcome_of`` raises."""
        if self._outcome is None:
            return None
        if self._outcome_of is None:
            return "ok"
        try:
            return self._outcome_of(result)
        except Exception as error:  # noqa: BLE001 - the user's function succeeded: never undo that
            metrics.record_failure(error, self._outcome.key)
            return None

    # -- as a decorator ------------------------------------------------------------

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        check_function(fn, f"timed({self.spec.key!r})")
        extract = argument_extractor(fn, self._labels_from, f"timed({self.spec.key!r})")
        on_error = self._on_error

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                metrics = self._plane_metrics()
                values = extract(args, kwargs)
                start = time.perf_counter_ns()
                try:
                    result = await fn(*args, **kwargs)
                except Exception:
                    self._finish(metrics, values, start, on_error)
                    raise
                self._finish(metrics, values, start, self._success_outcome(metrics, result))
                return result

            return async_wrapper  # type: ignore[return-value]

        planes, plane, clock, handles = _state.planes, self._plane, time.perf_counter_ns, self._handles
        counted, outcome_of, by_arguments = self._outcome is not None, self._outcome_of, bool(self._labels_from)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            # The common path inlined: a plain call costs about as much as this wrapper.
            metrics = planes.get(plane)
            if metrics is not self._metrics or metrics is None:
                metrics = self._plane_metrics()
            values = extract(args, kwargs) if by_arguments else ()
            start = clock()
            try:
                result = fn(*args, **kwargs)
            except Exception:
                self._finish(metrics, values, start, on_error)
                raise
            elapsed = clock() - start
            try:
                bound = handles.get(values) if not by_arguments or _plain(values) else None
                if bound is None:
                    bound = self._bound(metrics, values)
                bound.histogram.record_unchecked(elapsed / 1e9)
                if counted:
                    outcome = "ok" if outcome_of is None else self._success_outcome(metrics, result)
                    if outcome is not None:
                        counter = bound.outcomes.get(outcome) if type(outcome) is str else None
                        (counter or self._outcome_counter(metrics, bound, outcome)).record_unchecked(1)
            except Exception as error:  # noqa: BLE001 - strict raises a MeasurementError, production drops
                metrics.record_failure(error, self.spec.key)
            return result

        return wrapper

    # -- as a context manager ------------------------------------------------------

    def __enter__(self) -> Timing:
        if self._labels_from:
            raise InstrumentationError(f"timed({self.spec.key!r}): labels_from needs a function; use labels=")
        timing = Timing()
        self._open.set((*self._open.get(), timing))
        return timing

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        *outer, timing = self._open.get()
        self._open.set(tuple(outer))
        metrics = self._plane_metrics()
        outcome: str | None = None
        if exc_type is not None:
            outcome = self._on_error if issubclass(exc_type, Exception) else None
        elif self._outcome is not None:
            given = timing.outcome
            if given is None or (type(given) is str and not given):
                outcome = "ok"
            else:
                try:
                    outcome = label_value(self._outcome, self._outcome_label, given)
                except Exception as error:  # noqa: BLE001 - a hostile outcome: strict raises, production drops
                    metrics.record_failure(error, self._outcome.key)
        self._finish(metrics, (), timing.start_ns, outcome)
