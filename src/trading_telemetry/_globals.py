"""Every piece of the package's module-level mutable state, in one object: :data:`STATE`.

Modules read and write their state as fields of ``STATE`` (``STATE.planes``,
``STATE.config_warned``, ...), never as module globals of their own; constants stay in
their modules. :func:`reset_state` puts every field back to its value at import (what
``trading_telemetry.reset()`` does after shutting the planes down), and a newly
constructed :class:`State` is what the package holds at import, so ``STATE == State()``
says that nothing is left over. The locks are not state: they are left as they are by
:func:`reset_state` and not compared; :func:`renew_locks` replaces them in a forked child.

This module imports nothing of the package but its errors (for a type hint), so every
module can use it without an import cycle; a field whose type lives in a module that
uses ``STATE`` is typed ``Any``, with the type named in its comment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import weakref
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from opentelemetry.propagators.textmap import TextMapPropagator

    from trading_telemetry.errors import InvalidValueError

__all__ = ["DESK_CATALOG", "STATE", "State", "renew_locks", "reset_state"]

_LOCK = {"lock": True}  # a lock field: not compared, kept by reset_state(), renewed by renew_locks()
_KEPT = {"kept": True}  # a field reset_state() leaves as it is


@dataclass(eq=True)
class State:
    """The package's module state; each field's comment says what it is and who uses it."""

    # _state: the configuration read from the environment on first use (None: not read yet).
    config: Any = None  # TelemetryConfig | None
    # _state: the initialised planes' metrics objects; cleared in place, never replaced (timing, tracing and
    # integrations.nautilus keep a reference to this dict).
    planes: dict[Any, Any] = field(default_factory=dict)  # Plane -> PlaneMetrics
    # _state: guards config, planes and the catalog loads made while setting a plane up.
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False, metadata=_LOCK)

    # catalog: the desk's metrics added by extend() and load_file(), in declaration order.
    catalog_extensions: tuple[Any, ...] = ()  # MetricSpec
    # catalog: the metrics by plane and key, built-in and extensions (None: the built-in catalog's index).
    catalog_index: Mapping[Any, Mapping[str, Any]] | None = None  # Plane -> key -> MetricSpec
    # catalog: the names the catalog exposes, checked against each new entry (None: the built-in ones).
    catalog_taken: Any = None  # catalog.TakenNames | None
    # catalog: closed label value sets added by extend(), each with its label's built-in values if any.
    catalog_label_values: dict[str, frozenset[str]] = field(default_factory=dict)
    # catalog: whether extend() is refused (freeze(): set at the first plane, cleared by reset()).
    catalog_frozen: bool = False
    # catalog: the catalog files load_file() has read, each read once.
    catalog_files_loaded: set[str] = field(default_factory=set)

    # _checks: did_you_mean()'s hints by (candidate keys, key), the most recent _SUGGESTIONS_KEPT.
    suggestions: dict[tuple[tuple[str, ...], str], str] = field(default_factory=dict)
    # _checks: guards suggestions' evictions.
    suggestions_lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False, metadata=_LOCK)
    # _checks: wrong_kind()'s one error per (metric, method) in production mode.
    wrong_kinds: dict[tuple[str, str], InvalidValueError] = field(default_factory=dict)

    # config: the (variable, value) pairs already warned about, so each is logged once.
    config_warned: set[tuple[str, str]] = field(default_factory=set)

    # tracing: the composite propagator built for each OTEL_PROPAGATORS list.
    propagators: dict[tuple[str, ...], TextMapPropagator] = field(default_factory=dict)
    # tracing: the (helper, carrier type) pairs whose unusable carrier was logged, each once.
    carrier_failures_logged: set[str] = field(default_factory=set)

    # timing: the latency keys timed() warned OrderLifecycle also records, each once.
    lifecycle_keys_warned: set[str] = field(default_factory=set)

    # sessions: the data plane's running session gauges (started with the plane when its catalog file declares
    # calendars, or by sessions.start); stopped by reset() and forgotten in a forked child.
    session_gauges: Any = None  # _sessions.SessionGauges | None

    # _exporter_logs: the throttle filter on the OTLP exporters' loggers (None: not put on).
    exporter_log_filter: Any = None  # _exporter_logs.ThrottleFilter | None
    # _exporter_logs: guards putting the filter on and taking it off.
    exporter_log_lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False, metadata=_LOCK)

    # metrics_server: the /metrics servers this process runs (in a forked child: the inherited ones, closed
    # there by _fork). Kept by reset_state(): a server is its owner's until its close(), which takes it out.
    servers: weakref.WeakSet[Any] = field(default_factory=weakref.WeakSet, metadata=_KEPT)


STATE = State()
"""The package's state: the one instance, never replaced (modules keep a reference to it)."""


DESK_CATALOG = frozenset(
    {"catalog_extensions", "catalog_index", "catalog_taken", "catalog_label_values", "catalog_files_loaded"}
)
"""The fields that hold the desk's catalog (what extend() and catalog files added): what the
pytest fixture keeps across its resets. ``catalog_frozen`` is not one: a reset thaws it."""


def reset_state(keep: Collection[str] = ()) -> State:
    """Every field of :data:`STATE` back to its value at import, except the locks, the
    running servers and the fields named in ``keep``, all at once under every lock (taken
    in field order, the order the package nests them in); returns a State holding what
    the fields held. Containers are emptied and refilled in place, so a reference a
    module keeps to one (``planes``) stays the live one."""
    fresh, previous = State(), State()
    with contextlib.ExitStack() as held:
        for f in dataclasses.fields(State):
            if f.metadata.get("lock"):
                held.enter_context(getattr(STATE, f.name))
        for f in dataclasses.fields(State):
            if f.metadata or f.name in keep:
                continue
            value, initial = getattr(STATE, f.name), getattr(fresh, f.name)
            if type(value) in (dict, set):
                setattr(previous, f.name, value.copy())
                value.clear()
                value.update(initial)
            else:
                setattr(previous, f.name, value)
                setattr(STATE, f.name, initial)
    return previous


def renew_locks() -> None:
    """New locks in place of the ones a parent's thread may have held at a fork."""
    for f in dataclasses.fields(State):
        if f.metadata.get("lock"):
            setattr(STATE, f.name, threading.Lock())
