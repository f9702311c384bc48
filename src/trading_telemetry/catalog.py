"""The metric catalog: the one place every metric of the three planes is declared.

Instruments, views, the tables of docs/metrics.md and the tests are derived from this
module. The Prometheus name a user sees (:attr:`MetricSpec.prometheus_name`) is the name
the original monitoring specification (the README this project was created from)
documents, on both export paths (the Python Prometheus exporter and OTLP
through the Collector's ``prometheus`` exporter), with one exception: a counter cannot be
called ``orders_commission_total_usd``, see :attr:`MetricSpec.documented_name`.

Every entry, built-in or a desk's (:func:`extend`, :func:`load_file`), is checked before
it is added: its names must come out the same on every path and clash with nothing
already exposed (``_naming``), and every field must be what the SDK and the exposition
take; anything else is a :class:`CatalogError` naming the source, entry, field and value.

Example::

    >>> from trading_telemetry.catalog import spec
    >>> spec("data_plane", "ticks_received").prometheus_name
    'data_ticks_received_total'
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from trading_telemetry._globals import STATE
from trading_telemetry._naming import (
    LABEL_NAME,
    MAX_NAME_LENGTH,
    METRIC_NAME,
    RESERVED_SUFFIXES,
    collector_name,
    lint_problem,
    python_exporter_name,
    reserved_label,
    reserved_name,
    samples,
)
from trading_telemetry._safe import safe_repr, type_name
from trading_telemetry.errors import CatalogError, UnknownPlaneError

__all__ = [
    "CATALOG",
    "LABELS",
    "SERVICE_LABEL",
    "Kind",
    "MetricSpec",
    "Objective",
    "Plane",
    "allowed_values",
    "effective_catalog",
    "extend",
    "lookup",
    "plane_specs",
    "spec",
]


class Plane(str, enum.Enum):
    """The three planes of the trading system; the value is the ``service`` label."""

    DATA = "data_plane"
    ORDER = "order_plane"
    STRATEGY = "strategy_plane"

    # Enum's own __hash__ is a Python function; planes are dict keys on the hot path, and
    # a str-valued member equals its value, so hashing like the value is consistent.
    __hash__ = str.__hash__

    @classmethod
    def parse(cls, value: str | Plane) -> Plane:
        """Return the plane named ``value``, or raise :class:`UnknownPlaneError`."""
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(p.value for p in cls)
            raise UnknownPlaneError(f"unknown plane {value!r}: expected one of {known}") from None


class Kind(str, enum.Enum):
    """The kind of instrument, and the one recording method that goes with it."""

    COUNTER = "counter"  # inc()
    GAUGE = "gauge"  # set()
    HISTOGRAM = "histogram"  # observe()

    @property
    def method(self) -> str:
        return {"counter": "inc", "gauge": "set", "histogram": "observe"}[self.value]


SERVICE_LABEL = "service"
"""Set on every series to the plane's name by the SDK itself; callers never pass it."""

# The original monitoring specification's label section: which labels each built-in metric may use (a desk's
# extensions declare their own).
LABELS: Mapping[Plane, frozenset[str]] = MappingProxyType(
    {
        Plane.DATA: frozenset({"symbol", "source", "duration", "error_type", "event_type"}),
        Plane.ORDER: frozenset(
            {"symbol", "source", "strategy", "order_type", "direction", "status", "reason", "check_type"}
        ),
        Plane.STRATEGY: frozenset(
            {"symbol", "source", "strategy", "direction", "from_regime", "to_regime", "switch_type", "status"}
        ),
    }
)

# Bucket boundaries. Latencies from 100 µs to 30 s cover a co-located venue ack and a
# slow broker fill alike; Prometheus renders each boundary as an `le` label.
ORDER_LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
FRESHNESS_BUCKETS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
STORAGE_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
SLIPPAGE_BPS_BUCKETS = (
    -50.0, -25.0, -10.0, -5.0, -2.0, -1.0, 0.0, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0,
)  # fmt: skip
SIGNAL_STRENGTH_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
QP_SOLVE_TIME_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip


@dataclass(frozen=True)
class Objective:
    """A service-level objective on its metric: the fraction ``target`` of events is good over
    ``window`` (a Prometheus duration in days or weeks, such as ``28d``).

    On a histogram, an event is good when its value is at or under ``threshold`` (one of the
    metric's bucket bounds); on a counter, the metric counts the bad events and ``total``
    names the counter of all of them (the key of a counter of the same plane).
    ``trading-telemetry rules`` turns each objective into burn-rate recording and alert
    rules (:mod:`trading_telemetry._objectives`); ``name`` labels them (default: the key)."""

    target: float
    window: str = "28d"
    threshold: float | None = None
    total: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class MetricSpec:
    """One metric: how callers name it, how OTel records it, how Prometheus shows it.

    ``unit`` is an OTel unit. ``s`` makes both exporters append ``_seconds``; a unit in
    curly braces (``{tick}``, ``{USD}``) is an annotation that no exporter appends, so
    names that carry a unit in Prometheus (``_usd``, ``_bps``) carry it in ``name``.
    """

    plane: Plane
    key: str
    name: str
    kind: Kind
    unit: str
    description: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None
    integral: bool = False
    documented: str | None = field(default=None, repr=False)
    native: bool = False
    """Histograms: keep native (base-2 exponential) buckets beside the classic ones, served
    on /metrics' protobuf exposition and pushed as OTel exponential histograms."""
    objective: Objective | None = None
    """A service-level objective on this metric (:class:`Objective`)."""

    @property
    def prometheus_name(self) -> str:
        """The name under which Prometheus stores the series (histograms: the family)."""
        name = self.name
        if self.unit == "s" and not name.endswith("_seconds"):
            name += "_seconds"
        if self.kind is Kind.COUNTER:
            name += "_total"
        return name

    @property
    def documented_name(self) -> str:
        """The original monitoring specification's name; differs from :attr:`prometheus_name` only where a
        Prometheus recording rule provides the documented name."""
        return self.documented or self.prometheus_name

    @property
    def prometheus_type(self) -> str:
        return self.kind.value

    @property
    def has_sum_and_count(self) -> bool:
        """Whether Prometheus gets ``_sum`` and ``_count`` series. OpenMetrics forbids a sum
        on a histogram with negative bucket bounds (prometheus_client then leaves out
        ``_count`` too): its count is the ``le="+Inf"`` bucket."""
        return self.kind is Kind.HISTOGRAM and self.buckets is not None and self.buckets[0] >= 0


def _c(plane: Plane, key: str, name: str, unit: str, description: str, *labels: str, **kw: object) -> MetricSpec:
    return MetricSpec(plane, key, name, Kind.COUNTER, unit, description, labels, min_value=0.0, **kw)  # type: ignore[arg-type]


def _g(plane: Plane, key: str, name: str, unit: str, description: str, *labels: str, **kw: object) -> MetricSpec:
    return MetricSpec(plane, key, name, Kind.GAUGE, unit, description, labels, **kw)  # type: ignore[arg-type]


def _h(
    plane: Plane,
    key: str,
    name: str,
    unit: str,
    description: str,
    buckets: tuple[float, ...],
    *labels: str,
    **kw: object,
) -> MetricSpec:
    return MetricSpec(plane, key, name, Kind.HISTOGRAM, unit, description, labels, buckets, **kw)  # type: ignore[arg-type]


_D, _O, _S = Plane.DATA, Plane.ORDER, Plane.STRATEGY
_LATENCY = ("strategy", "symbol", "order_type")

CATALOG: tuple[MetricSpec, ...] = (
    # Data plane: ingestion
    _c(_D, "ticks_received", "data_ticks_received", "{tick}", "Total tick events received", "source", "symbol"),
    _c(_D, "bars_received", "data_bars_received", "{bar}", "Total bar events received",
       "source", "symbol", "duration"),
    _c(_D, "ofi_events_generated", "data_ofi_events_generated", "{event}", "Total OFI events generated",
       "source", "symbol"),
    # Data plane: quality
    _h(_D, "data_freshness", "data_freshness", "s", "Data freshness: event age when received",
       FRESHNESS_BUCKETS, "source", "symbol", min_value=0.0),
    _g(_D, "completeness_score", "data_completeness_score", "{score}", "Data completeness score (0-1)",
       "symbol", min_value=0.0, max_value=1.0),
    # Data plane: validation
    _c(_D, "validation_errors", "data_validation_errors", "{error}", "Validation errors",
       "source", "event_type", "error_type"),
    _c(_D, "ntp_rejects", "data_ntp_rejects", "{event}", "Events rejected for NTP clock drift", "source"),
    _c(_D, "normalization_errors", "data_normalization_errors", "{error}", "Normalization errors",
       "source", "event_type"),
    _c(_D, "dlq_messages", "data_dlq_messages", "{message}", "Messages sent to the dead-letter queue",
       "source", "event_type"),
    # Data plane: storage
    _c(_D, "storage_writes", "data_storage_writes", "{write}", "Storage writes", "event_type"),
    _h(_D, "storage_write_latency", "data_storage_write_latency", "s", "Storage write latency",
       STORAGE_LATENCY_BUCKETS, "event_type", min_value=0.0),
    # Order plane: execution
    _c(_O, "orders_received", "orders_received", "{order}", "Order intents received",
       "strategy", "symbol", "direction", "order_type"),
    _c(_O, "orders_submitted", "orders_submitted", "{order}", "Orders submitted to broker",
       "strategy", "symbol", "direction", "order_type"),
    _c(_O, "orders_filled", "orders_filled", "{order}", "Orders filled",
       "strategy", "symbol", "direction", "status"),
    # Objective: 99 % of order intents not rejected (risk checks included, so the total is
    # orders_received: an intent the risk check refuses is never submitted).
    _c(_O, "orders_rejected", "orders_rejected", "{order}", "Orders rejected", "strategy", "symbol", "reason",
       objective=Objective(0.99, "28d", total="orders_received", name="order_rejections")),
    # Order plane: the ends of an order beyond the specification (OrderLifecycle.canceled/expired)
    _c(_O, "orders_canceled", "orders_canceled", "{order}", "Orders canceled",
       "strategy", "symbol", "direction", "order_type"),
    _c(_O, "orders_expired", "orders_expired", "{order}", "Orders expired (time in force ran out)",
       "strategy", "symbol", "direction", "order_type"),
    # Order plane: latency
    _h(_O, "intent_to_submit_latency", "orders_intent_to_submit_latency", "s", "Intent to submit latency",
       ORDER_LATENCY_BUCKETS, *_LATENCY, min_value=0.0),
    # Objective: 99 % of acks within 0.25 s (a bucket bound): a broker API answers in tens of
    # milliseconds; a quarter of a second is where a market order's quote has moved.
    _h(_O, "submit_to_ack_latency", "orders_submit_to_ack_latency", "s", "Submit to broker ack latency",
       ORDER_LATENCY_BUCKETS, *_LATENCY, min_value=0.0,
       objective=Objective(0.99, "28d", threshold=0.25, name="order_ack_latency")),
    _h(_O, "ack_to_fill_latency", "orders_ack_to_fill_latency", "s", "Broker ack to fill latency",
       ORDER_LATENCY_BUCKETS, *_LATENCY, min_value=0.0),
    _h(_O, "total_fill_latency", "orders_total_fill_latency", "s", "Total intent to fill latency",
       ORDER_LATENCY_BUCKETS, *_LATENCY, min_value=0.0),
    # Order plane: cost
    _h(_O, "slippage_bps", "orders_slippage_bps", "{bp}", "Slippage in basis points (negative: price improvement)",
       SLIPPAGE_BPS_BUCKETS, "strategy", "symbol", "direction"),
    _c(_O, "commission_usd", "orders_commission_usd", "{USD}", "Total commission paid in USD",
       "strategy", "symbol", documented="orders_commission_total_usd"),
    # Order plane: risk
    _c(_O, "risk_rejections", "orders_risk_rejections", "{order}", "Risk check rejections",
       "strategy", "symbol", "check_type"),
    _c(_O, "pov_downscales", "orders_pov_downscales", "{order}", "Orders downscaled by the POV limit",
       "strategy", "symbol"),
    # Strategy plane: signals
    _c(_S, "signals_generated", "strategy_signals_generated", "{signal}", "Signals generated by strategy",
       "strategy", "symbol", "direction"),
    _h(_S, "signal_strength", "strategy_signal_strength", "{strength}", "Signal strength distribution (0-1)",
       SIGNAL_STRENGTH_BUCKETS, "strategy", "direction", min_value=0.0, max_value=1.0),
    # Strategy plane: portfolio
    _g(_S, "portfolio_gross_exposure_usd", "strategy_portfolio_gross_exposure_usd", "{USD}",
       "Gross exposure in USD", min_value=0.0),
    _g(_S, "portfolio_net_exposure_usd", "strategy_portfolio_net_exposure_usd", "{USD}", "Net exposure in USD"),
    _g(_S, "portfolio_value_usd", "strategy_portfolio_value_usd", "{USD}", "Total portfolio value in USD"),
    # Strategy plane: PnL
    _g(_S, "pnl_realized_usd", "strategy_pnl_realized_usd", "{USD}", "Realized PnL in USD", "strategy"),
    _g(_S, "pnl_unrealized_usd", "strategy_pnl_unrealized_usd", "{USD}", "Unrealized PnL in USD", "strategy"),
    _g(_S, "pnl_total_usd", "strategy_pnl_total_usd", "{USD}", "Total PnL in USD", "strategy"),
    # Strategy plane: regime
    _g(_S, "regime_state", "strategy_regime_state", "{regime}",
       "Current market regime (0=Calm, 1=Normal, 2=Storm)", min_value=0.0, max_value=2.0, integral=True),
    _c(_S, "regime_transitions", "strategy_regime_transitions", "{transition}", "Regime transitions",
       "from_regime", "to_regime"),
    # Strategy plane: optimisation
    _h(_S, "qp_solve_time", "strategy_qp_solve_time", "s", "QP solver time", QP_SOLVE_TIME_BUCKETS, min_value=0.0),
    _c(_S, "qp_solve_status", "strategy_qp_solve_status", "{solve}", "QP solver outcomes by status", "status"),
    # Strategy plane: kill switches
    _c(_S, "kill_switches_triggered", "strategy_kill_switches_triggered", "{trigger}", "Kill switch triggers",
       "switch_type"),
    _g(_S, "kill_switch_active", "strategy_kill_switch_active", "{state}", "Kill switch active (1) or not (0)",
       "switch_type", min_value=0.0, max_value=1.0, integral=True),
)  # fmt: skip


# -- Validation: what a declaration must be for every path to expose it unchanged -----

MAX_EXTENSION_METRICS = 1000
"""Most metrics the extensions (code and file) may add in all."""
MAX_LABELS = 16
"""Most labels one metric may declare."""
MAX_BUCKETS = 100
"""Most bucket boundaries one histogram may declare."""
MAX_DESCRIPTION_LENGTH = 1000
"""Longest description, in characters."""
MAX_LABEL_VALUE_LENGTH = 256
"""Longest label value accepted, in characters (Mimir's default limit is 2048 bytes)."""
_MAX_UNIT_LENGTH = 63  # the OTel SDK's limit
_KEY = re.compile(r"[a-z][a-z0-9_]*")
# Printable ASCII but braces, slash and space: a `{...}` that both exporters drop whole.
_UNIT_ANNOTATION = re.compile(r"\{[!-.0-z|~]*\}")
_NO_VALUE = object()


class _Refusal(Exception):
    """A field's problem, before it is known which entry of which source it is in."""

    def __init__(self, field_name: str | None, problem: str, value: object = _NO_VALUE) -> None:
        super().__init__(problem)
        self.field = field_name
        self.problem = problem
        self.value = value


def refusal(
    where: str, entry: str | None, field_name: str | None, problem: str, value: object = _NO_VALUE
) -> CatalogError:
    """The CatalogError ``where: entry: field: value: problem``, the value's repr bounded."""
    parts = [where, *(p for p in (entry, field_name) if p is not None)]
    if value is not _NO_VALUE:
        parts.append(safe_repr(value))
    return CatalogError(": ".join([*parts, problem]), source=where, entry=entry, field=field_name)


def entry_label(number: int, key: object = _NO_VALUE) -> str:
    """How messages name the ``number``-th metrics entry: ``metrics entry 2 ('key')``."""
    return f"metrics entry {number}" + (f" ({safe_repr(key, 60)})" if key is not _NO_VALUE else "")


def _text(value: object) -> str | None:
    """``value`` as a plain ``str`` if it is one (a subclass gives its characters), else None."""
    return str.__str__(value) if issubclass(type(value), str) else None


def _unicode(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _word(field_name: str, value: object, pattern: re.Pattern[str], rule: str) -> str:
    text = _text(value)
    if text is None or not pattern.fullmatch(text) or len(text) > MAX_NAME_LENGTH:
        raise _Refusal(field_name, f"{rule}, at most {MAX_NAME_LENGTH} characters", value)
    return text


def _member(field_name: str, value: object, enum_type: type[Plane] | type[Kind]) -> Any:
    if type(value) is enum_type:
        return value
    text = _text(value)
    found = next((m for m in enum_type if m.value == text), None) if text is not None else None
    if found is None:
        raise _Refusal(field_name, f"expected one of {', '.join(m.value for m in enum_type)}", value)
    return found


def _items(field_name: str, value: object, most: int) -> list[object]:
    """The elements of a list or tuple field, at most ``most`` of them."""
    if type(value) not in (list, tuple):
        raise _Refusal(field_name, "expected a list", value)
    items: list[object] = list(value)  # type: ignore[call-overload]
    if len(items) > most:
        raise _Refusal(field_name, f"{len(items)} elements; at most {most}")
    return items


def _number(field_name: str, value: object) -> float:
    """A finite int or float (not a bool) as a float."""
    kind = type(value)
    number: float | None = None
    if kind is not bool and issubclass(kind, int | float):
        try:
            number = float.__float__(value) if issubclass(kind, float) else float(int.__index__(value))  # type: ignore[arg-type]
        except OverflowError:
            number = None
    if number is None or not math.isfinite(number):
        raise _Refusal(field_name, "expected a finite number", value)
    return number


def label_name(value: object) -> str:
    """A label name a desk may declare: a Prometheus label name that no path rewrites and
    nothing else sets."""
    name = _word(
        "labels",
        value,
        LABEL_NAME,
        "a label name is lowercase letters and digits in words joined by single underscores, starting with a letter",
    )
    owner = reserved_label(name)
    if owner is not None:
        raise _Refusal("labels", f"{name!r} is reserved: {owner}")
    return name


def label_value_text(value: object) -> str | None:
    """``value`` as a plain str if it is a label value recording would accept, else None."""
    text = _text(value)
    if text is None or not 0 < len(text) <= MAX_LABEL_VALUE_LENGTH or not _unicode(text):
        return None
    return text


def _description(value: object) -> str:
    text = _text(value)
    if text is None or not 0 < len(text) <= MAX_DESCRIPTION_LENGTH or not text.isprintable():
        raise _Refusal(
            "description", f"expected a non-empty line of printable text, at most {MAX_DESCRIPTION_LENGTH} characters",
            value,
        )  # fmt: skip
    return text


def _unit(value: object) -> str:
    text = _text(value)
    if text is None or not (text in ("", "s") or (len(text) <= _MAX_UNIT_LENGTH and _UNIT_ANNOTATION.fullmatch(text))):
        raise _Refusal(
            "unit", "use s, or an annotation in braces such as {tick} (other units change the exposed name)", value
        )
    return text


def _labels(value: object, plane: Plane, builtin: bool) -> tuple[str, ...]:
    labels = tuple(label_name(v) for v in _items("labels", value, MAX_LABELS))
    if len(set(labels)) != len(labels):
        raise _Refusal("labels", "a label is named twice", value)
    stray = set(labels) - LABELS[plane] if builtin else set()
    if stray:
        raise _Refusal("labels", f"{sorted(stray)} are not documented for {plane.value}")
    return labels


def _buckets(value: object, kind: Kind) -> tuple[float, ...] | None:
    if kind is Kind.HISTOGRAM and value is None:
        raise _Refusal(
            "buckets", "missing: a histogram needs its bucket boundaries; give buckets, one or more numbers in "
            "increasing order, e.g. [0.001, 0.01, 0.1, 1] for seconds",
        )  # fmt: skip
    if value is None:
        return None
    if kind is not Kind.HISTOGRAM:
        raise _Refusal("buckets", f"a {kind.value} has no buckets (only a histogram has): remove them", value)
    buckets = tuple(_number("buckets", b) for b in _items("buckets", value, MAX_BUCKETS))
    if not buckets or any(a >= b for a, b in itertools.pairwise(buckets)):
        raise _Refusal("buckets", "expected one or more numbers, strictly increasing", value)
    return buckets


PAGE_BURN_RATE = 14.4
"""The fastest burn the rules page for (2 % of a 30-day budget in an hour): an objective
must leave room for it, a budget of under 1/14.4 of the events."""
_OBJECTIVE_FIELDS = ("target", "window", "threshold", "total", "name")
_WINDOW = re.compile(r"([1-9][0-9]{0,2})([dw])")
_MAX_TARGET = 0.99999


def _objective(value: object, kind: Kind, buckets: tuple[float, ...] | None) -> Objective | None:
    """``value`` (an Objective, or the file's mapping of its fields) as a plain Objective
    this metric can have, or :class:`_Refusal` naming ``objective: FIELD``."""
    if value is None:
        return None
    if type(value) is Objective:
        given: dict[object, object] = {f: getattr(value, f) for f in _OBJECTIVE_FIELDS}
    elif type(value) is dict:
        given = dict(value)
        unknown = [f for f in given if f not in _OBJECTIVE_FIELDS]
        if unknown:
            raise _Refusal("objective", f"unknown field {safe_repr(unknown[0], 40)}; expected some of "
                           f"{', '.join(_OBJECTIVE_FIELDS)}")  # fmt: skip
        if "target" not in given:
            raise _Refusal("objective: target", "required: the fraction of good events, such as 0.99")
    else:
        raise _Refusal("objective", "expected a mapping with target, window and threshold or total", value)
    target = _number("objective: target", given["target"])
    lowest = 1 - 1 / PAGE_BURN_RATE
    if not lowest < target <= _MAX_TARGET:
        raise _Refusal(
            "objective: target", f"expected a fraction of good events above {lowest:.4f} and at most {_MAX_TARGET} "
            f"(below it, even every event bad burns the budget at under {PAGE_BURN_RATE}x, and no page could fire)",
            given["target"],
        )  # fmt: skip
    window = _text(given.get("window", "28d"))
    match = _WINDOW.fullmatch(window or "")
    days = int(match[1]) * (7 if match[2] == "w" else 1) if match else 0
    if not 7 <= days <= 366:
        raise _Refusal("objective: window", "expected a number of days or weeks from 7d to 366d, such as 28d",
                       given.get("window"))  # fmt: skip
    threshold, total = given.get("threshold"), given.get("total")
    name = given.get("name")
    if name is not None:
        name = _word("objective: name", name, _KEY, "a name is lowercase letters, digits and underscores")
    if kind is Kind.HISTOGRAM:
        if total is not None:
            raise _Refusal("objective: total", "a histogram's objective is a threshold, not a ratio of counters", total)
        if threshold is None:
            raise _Refusal("objective: threshold", "required on a histogram: the value a good event is at or under")
        bound = _number("objective: threshold", threshold)
        if buckets is None or bound not in buckets:
            raise _Refusal(
                "objective: threshold", "must be one of the metric's bucket bounds "
                f"({', '.join(map(repr, buckets or ()))}): the rules count the good events in that bucket", threshold,
            )  # fmt: skip
        if buckets[0] < 0:
            raise _Refusal("objective", "a histogram with negative bucket bounds has no _count to divide by")
        return Objective(target, window or "28d", bound, None, name)
    if kind is Kind.COUNTER:
        if threshold is not None:
            raise _Refusal("objective: threshold", "a counter's objective is a ratio: give total, not a threshold",
                           threshold)  # fmt: skip
        if total is None:
            raise _Refusal("objective: total", "required on a counter: the key of the counter of all the events")
        key = _word("objective: total", total, _KEY, "a key is lowercase letters, digits and underscores")
        return Objective(target, window or "28d", None, key, name)
    raise _Refusal("objective", "only a histogram (latency) or a counter (error ratio) takes an objective")


def _check_objectives(specs: tuple[MetricSpec, ...], everything: tuple[MetricSpec, ...]) -> None:
    """Each objective's ``total`` is another counter of its plane, and objective names are unique,
    or :class:`_Refusal` (with ``_Refusal.key`` the entry's key)."""
    index = _index(everything)
    added = {id(s) for s in specs}
    names = {s.objective.name or s.key: s.key for s in everything if s.objective is not None and id(s) not in added}
    for s in specs:
        if s.objective is None:
            continue
        total = s.objective.total
        if total is not None:
            other = index[s.plane].get(total)
            if other is None or other.kind is not Kind.COUNTER or other.key == s.key:
                raise _ObjectiveRefusal(s.key, "objective: total", f"expected the key of another counter of "
                                        f"{s.plane.value}", total)  # fmt: skip
        name = s.objective.name or s.key
        if name in names:
            raise _ObjectiveRefusal(s.key, "objective: name", f"the objective of {names[name]!r} has it", name)
        names[name] = s.key


class _ObjectiveRefusal(_Refusal):
    def __init__(self, key: str, field_name: str, problem: str, value: object = _NO_VALUE) -> None:
        super().__init__(field_name, problem, value)
        self.key = key


def _clean(s: object, builtin: bool) -> MetricSpec:
    """``s`` as a MetricSpec of plain values that every path exposes as declared, or
    :class:`_Refusal`."""
    if type(s) is not MetricSpec:
        raise _Refusal(None, "expected a MetricSpec", s)
    key = _word("key", s.key, _KEY, "a key is lowercase letters, digits and underscores, starting with a letter")
    name = _word(
        "name", s.name, METRIC_NAME,
        "a name is lowercase letters and digits in words joined by single underscores, starting with a letter",
    )  # fmt: skip
    plane: Plane = _member("plane", s.plane, Plane)
    kind: Kind = _member("kind", s.kind, Kind)
    bounds = [None if v is None else _number(f, v) for f, v in (("min_value", s.min_value), ("max_value", s.max_value))]
    if bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]:
        raise _Refusal("min_value", f"{bounds[0]} is above the maximum, {bounds[1]}")
    if type(s.integral) is not bool:
        raise _Refusal("integral", "expected true or false", s.integral)
    if type(s.native) is not bool:
        raise _Refusal("native", "expected true or false", s.native)
    if s.native and kind is not Kind.HISTOGRAM:
        raise _Refusal("native", "only a histogram has native buckets", s.native)
    documented = _text(s.documented) if builtin else None
    if s.documented is not None and documented is None:
        raise _Refusal("documented", "only the built-in catalog documents a name apart from the exposed one")
    clean = MetricSpec(
        plane, key, name, kind, _unit(s.unit), _description(s.description), _labels(s.labels, plane, builtin),
        _buckets(s.buckets, kind), bounds[0], bounds[1], s.integral, documented, s.native,
    )  # fmt: skip
    if s.objective is not None:
        clean = dataclasses.replace(clean, objective=_objective(s.objective, kind, clean.buckets))
    if clean.has_sum_and_count and (clean.min_value is None or clean.min_value < 0):
        raise _Refusal(
            "min_value", "a histogram whose buckets are all >= 0 takes no negative value (its _sum would go "
            "negative, which OpenMetrics refuses): give it a minimum of 0 or more, or a negative bucket",
            s.min_value,
        )  # fmt: skip
    _check_exposed_name(clean)
    return clean


def _family(s: MetricSpec) -> str:
    return s.prometheus_name.removesuffix("_total") if s.kind is Kind.COUNTER else s.prometheus_name


def _check_exposed_name(s: MetricSpec) -> None:
    """The exposed name is the same on /metrics, through the Collector and by the OTel
    exporter, and is no other family's sample nor anyone else's name."""
    suffix = "seconds" if s.unit == "s" else ""
    counter = s.kind is Kind.COUNTER
    ours = s.prometheus_name
    for path, theirs in (
        ("through the Collector", collector_name(s.name, suffix, counter)),
        ("by the OTel Prometheus exporter", python_exporter_name(s.name, suffix, counter)),
    ):
        if theirs != ours:
            raise _Refusal("name", f"would be exposed as {ours!r} on /metrics but as {theirs!r} {path}", s.name)
    family = _family(s)
    for name in (s.name, family):
        ending = next((e for e in RESERVED_SUFFIXES if name.endswith(e)), None)
        if ending is not None:
            raise _Refusal("name", f"ends in {ending}, which parsers read as a sample of another family", name)
    for exposed in samples(family, s.kind.value):
        owner = reserved_name(exposed)
        if owner is not None:
            raise _Refusal("name", f"exposes {exposed!r}, which is reserved: {owner}", s.name)
    problem = lint_problem(ours, s.kind.value)
    if problem is not None:
        raise _Refusal("name", f"exposed as {ours!r}: {problem}", s.name)


class TakenNames:
    """Keys and exposed names in use, and whose they are."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}
        self.names: dict[str, str] = {}

    def copy(self) -> TakenNames:
        taken = TakenNames()
        taken.keys, taken.names = dict(self.keys), dict(self.names)
        return taken

    def add(self, s: MetricSpec, owner: str) -> None:
        if s.key in self.keys:
            raise _Refusal("key", f"duplicate key (keys are unique across planes): {self.keys[s.key]} has it", s.key)
        exposed = samples(_family(s), s.kind.value) + ((s.documented,) if s.documented else ())
        for name in exposed:
            if name in self.names:
                raise _Refusal("name", f"exposes {name!r}, as {self.names[name]} already does", s.name)
        self.keys[s.key] = owner
        self.names.update(dict.fromkeys(exposed, owner))


def _checked(
    specs: Iterable[object],
    taken: TakenNames,
    *,
    builtin: bool = False,
    where: str = "extend()",
    field_names: Mapping[str, str] | None = None,
) -> tuple[MetricSpec, ...]:
    """``specs`` cleaned and added to ``taken``, or CatalogError naming ``where``, the
    entry and the field (as ``field_names`` calls it)."""
    cleaned = []
    for number, s in enumerate(specs, 1):
        entry = entry_label(number, s.key if type(s) is MetricSpec else _NO_VALUE)
        try:
            clean = _clean(s, builtin)
            taken.add(clean, f"{'built-in' if builtin else 'the'} metric {clean.key!r} of {clean.plane.value}")
        except _Refusal as error:
            field_name = (field_names or {}).get(error.field, error.field) if error.field else None
            raise refusal(where, entry, field_name, error.problem, error.value) from None
        cleaned.append(clean)
    return tuple(cleaned)


def _index(specs: tuple[MetricSpec, ...]) -> Mapping[Plane, Mapping[str, MetricSpec]]:
    by_plane: dict[Plane, dict[str, MetricSpec]] = {p: {} for p in Plane}
    for s in specs:
        by_plane[s.plane][s.key] = s
    return MappingProxyType({p: MappingProxyType(d) for p, d in by_plane.items()})


def _builtin_taken() -> TakenNames:
    """The names the built-in catalog and the self-metrics use; CatalogError if the
    built-in catalog breaks its own rules (a bug in the package, caught at import)."""
    taken = TakenNames()
    if _checked(CATALOG, taken, builtin=True, where="catalog") != CATALOG:
        raise CatalogError("catalog: a built-in entry is not in its plain form")
    _checked_objectives(CATALOG, CATALOG, "catalog", None)
    return taken


def _checked_objectives(
    added: tuple[MetricSpec, ...], everything: tuple[MetricSpec, ...], where: str, field_names: Mapping[str, str] | None
) -> None:
    """:func:`_check_objectives`, its refusal a CatalogError naming ``where`` and the entry."""
    try:
        _check_objectives(added, everything)
    except _ObjectiveRefusal as error:
        number = next(n for n, s in enumerate(added, 1) if s.key == error.key)
        field_name = (field_names or {}).get(error.field or "", error.field)
        raise refusal(where, entry_label(number, error.key), field_name, error.problem, error.value) from None


# The closed sets of label values the specification documents: a value outside one is bad input
# (``invalid_label_value``), like a typo in a key. Labels not named here (symbol,
# strategy, source, reason, ...) stay open, under the cardinality limit.
BUILTIN_LABEL_VALUES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "direction": ("BUY", "SELL"),
        "order_type": ("MARKET", "LIMIT", "STOP"),
        "duration": ("1m", "5m", "1h", "1d"),
        "event_type": ("bar", "tick", "ofi"),
        "from_regime": ("Calm", "Normal", "Storm"),
        "to_regime": ("Calm", "Normal", "Storm"),
        "switch_type": ("pnl", "drawdown", "psr"),
    }
)
# Closed sets of one metric's label (``status`` is a fill status only on orders_filled).
BUILTIN_METRIC_LABEL_VALUES: Mapping[tuple[str, str], tuple[str, ...]] = MappingProxyType(
    {("orders_filled", "status"): ("FILLED", "PARTIAL_FILL", "REJECTED")}
)

# The built-in catalog's derived tables. The desk's additions are module state
# (``STATE.catalog_*``, see ``_globals``); ``reset()`` forgets them.
_BUILTIN_TAKEN = _builtin_taken()  # only ever copied
_BUILTIN_INDEX = _index(CATALOG)
_BUILTIN_VALUES = MappingProxyType({k: frozenset(v) for k, v in BUILTIN_LABEL_VALUES.items()})
_METRIC_VALUES = MappingProxyType({k: frozenset(v) for k, v in BUILTIN_METRIC_LABEL_VALUES.items()})


def _by_plane() -> Mapping[Plane, Mapping[str, MetricSpec]]:
    index = STATE.catalog_index
    return _BUILTIN_INDEX if index is None else index


def plane_specs(plane: str | Plane) -> Mapping[str, MetricSpec]:
    """The plane's metrics by key: the built-in ones and any added by :func:`extend`."""
    return _by_plane()[Plane.parse(plane)]


def lookup(key: str) -> MetricSpec | None:
    """The metric ``key`` of whichever plane has it (keys are unique across planes)."""
    for specs in _by_plane().values():
        found = specs.get(key)
        if found is not None:
            return found
    return None


def spec(plane: str | Plane, key: str) -> MetricSpec:
    """The metric ``key`` of ``plane``; ``KeyError`` if there is none."""
    return _by_plane()[Plane.parse(plane)][key]


def allowed_values(s: MetricSpec, label: str) -> frozenset[str] | None:
    """The closed set of values ``label`` may take on ``s``; None if it is open."""
    found = _METRIC_VALUES.get((s.key, label))
    if found is None:
        found = STATE.catalog_label_values.get(label)
    return found if found is not None else _BUILTIN_VALUES.get(label)


def effective_catalog() -> tuple[MetricSpec, ...]:
    """The built-in metrics (:data:`CATALOG`: the specification's 37 and the two order ends) and the extensions
    (:func:`extend`), in declaration order."""
    return CATALOG + STATE.catalog_extensions


def extend(
    metrics: Iterable[MetricSpec] = (),
    label_values: Mapping[str, Iterable[str]] | None = None,
    *,
    where: str = "extend()",
) -> None:
    """Add metrics and allowed label values to the catalog, before the first plane is
    initialised (after it, :class:`CatalogError`). Extended metrics get everything the
    built-in ones have: views, buckets, label allow-lists, the cardinality limit, both
    error regimes, ``timed``, handles, the pytest fixture, ``/metrics`` and OTLP.

    ``label_values`` makes a label closed for every metric that has it, or adds values
    to a built-in closed set. A declaration that any path would expose otherwise than
    declared, that clashes with a name already exposed, or that the SDK would refuse,
    raises :class:`CatalogError` naming ``where`` (a file, say), the entry, the field and
    the value (docs/metrics.md, "Extending the catalog"); nothing is added then.

    Example::

        extend([MetricSpec(Plane.STRATEGY, "callback_latency", "strategy_callback_latency", Kind.HISTOGRAM,
                           "s", "Strategy callback latency", ("strategy", "callback"),
                           buckets=(1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0), min_value=0.0)],
               label_values={"callback": ["on_quote", "on_bar", "on_order_event"]})
    """
    _extend(metrics, label_values, where=where)


def _extend(metrics: object, label_values: object, *, where: str, field_names: Mapping[str, str] | None = None) -> None:
    if STATE.catalog_frozen:
        raise CatalogError(
            f"{where}: too late: a plane is already initialised, and the catalog is fixed while planes exist. Extend "
            "it before the first init_metrics_exporter() (the first call of a timed function initialises its plane "
            "too): call extend() when your module is imported, or name the catalog file in TRADING_TELEMETRY_CATALOG, "
            "which is loaded as the first plane is initialised; in tests, call reset() first (it returns the catalog "
            "to the built-in one: extend it again after)",
            source=where,
        )
    taken = (_BUILTIN_TAKEN if STATE.catalog_taken is None else STATE.catalog_taken).copy()
    added = _checked(_elements(metrics, where, "metrics"), taken, where=where, field_names=field_names)
    extensions = STATE.catalog_extensions + added
    _checked_objectives(added, CATALOG + extensions, where, field_names)
    if len(extensions) > MAX_EXTENSION_METRICS:
        raise refusal(where, None, "metrics", f"more than {MAX_EXTENSION_METRICS} metrics added to the catalog")
    values = _checked_label_values(label_values, where)
    STATE.catalog_extensions, STATE.catalog_index, STATE.catalog_taken = extensions, _index(CATALOG + extensions), taken
    closed = STATE.catalog_label_values
    for label, texts in values.items():
        closed[label] = closed.get(label, _BUILTIN_VALUES.get(label, frozenset())) | texts


def _elements(value: object, where: str, field_name: str) -> list[object]:
    """The elements of an iterable argument (not a string or a mapping), or CatalogError."""
    if value is None:
        return []
    if issubclass(type(value), str | bytes | Mapping) or not issubclass(type(value), Iterable):
        raise refusal(where, None, field_name, "expected a list", value)
    try:
        items: list[object] = list(value)  # type: ignore[call-overload]
    except Exception as error:  # noqa: BLE001 - whatever the iterable raises is the caller's mistake
        raise refusal(where, None, field_name, f"cannot be iterated: {type_name(error)}", value) from None
    return items


def _checked_label_values(label_values: object, where: str) -> dict[str, frozenset[str]]:
    """``{label: values}`` of plain strings, each a label name and values recording accepts."""
    if label_values is None:
        return {}
    if not issubclass(type(label_values), Mapping):
        raise refusal(where, None, "label_values", "expected a mapping of label to a list of values", label_values)
    try:
        pairs = list(label_values.items())  # type: ignore[attr-defined]
    except Exception as error:  # noqa: BLE001
        raise refusal(where, None, "label_values", f"cannot be read: {type_name(error)}", label_values) from None
    checked: dict[str, frozenset[str]] = {}
    for label, given in pairs:
        try:
            name = label_name(label)
        except _Refusal as error:
            raise refusal(where, "label_values", None, error.problem, label) from None
        items = _elements(given, where, f"label_values: {name}")
        texts = [label_value_text(v) for v in items]
        if not texts or None in texts:
            bad = next((v for v, t in zip(items, texts, strict=True) if t is None), given)
            raise refusal(
                where, "label_values", name,
                f"expected a list of label values (non-empty strings of valid Unicode, at most "
                f"{MAX_LABEL_VALUE_LENGTH} characters)", bad,
            )  # fmt: skip
        checked[name] = checked.get(name, frozenset()) | frozenset(t for t in texts if t is not None)
    return checked


def freeze() -> None:
    """The catalog is fixed while a plane is initialised (``_state`` freezes it at the
    first plane; ``reset()`` thaws it)."""
    STATE.catalog_frozen = True


def load_file(path: str) -> None:
    """Extend the catalog from a YAML file (``TRADING_TELEMETRY_CATALOG``), once per path.

    The file's schema (docs/metrics.md, "Extending the catalog")::

        metrics:
          - plane: strategy_plane          # data_plane | order_plane | strategy_plane
            key: callback_latency          # what inc/observe/set/bind/timed take
            name: strategy_callback_latency_seconds   # the exposed Prometheus name
            kind: histogram                # counter | gauge | histogram
            unit: s                        # s, or an annotation in braces ({tick}), or none
            description: Strategy callback latency
            labels: [strategy, callback]
            buckets: [0.00001, 0.0001, 0.001, 0.01, 0.1, 1]   # histograms only
            min: 0                         # optional value range (gauges, histograms)
            max: 1
            integral: false                # optional: true takes whole numbers only
        label_values:                      # optional: allowed values of a label
          callback: [on_quote, on_bar, on_order_event]

    The file is bounded (size, YAML nodes, nesting; no anchors or aliases: see
    :mod:`trading_telemetry._catalog_file`). Raises :class:`CatalogError` naming the
    file, the entry, the field and the value."""
    if path in STATE.catalog_files_loaded:
        return
    from trading_telemetry._catalog_file import read_catalog_file  # only a desk with a file needs YAML

    specs, label_values = read_catalog_file(path)
    _extend(specs, label_values, where=path, field_names={"min_value": "min", "max_value": "max"})
    STATE.catalog_files_loaded.add(path)
