"""The metric catalog: the one place every metric of the three planes is declared.

Instruments, views, the README's metric table and the tests are derived from this
module. The Prometheus name a user sees (:attr:`MetricSpec.prometheus_name`) is the name
the seed README documents, on both export paths (the Python Prometheus exporter and OTLP
through the Collector's ``prometheus`` exporter), with one exception: a counter cannot be
called ``orders_commission_total_usd``, see :attr:`MetricSpec.documented_name`.

Example::

    >>> from trading_telemetry.catalog import spec
    >>> spec("data_plane", "ticks_received").prometheus_name
    'data_ticks_received_total'
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from trading_telemetry.errors import CatalogError, UnknownPlaneError

__all__ = [
    "CATALOG",
    "LABELS",
    "SERVICE_LABEL",
    "Kind",
    "MetricSpec",
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


_NAME = re.compile(r"[a-z][a-z0-9_]*")
SERVICE_LABEL = "service"
"""Set on every series to the plane's name by the SDK itself; callers never pass it."""

# The seed README's label section: which labels each built-in metric may use (a desk's
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
        """The seed README's name; differs from :attr:`prometheus_name` only where a
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
    _c(_O, "orders_rejected", "orders_rejected", "{order}", "Orders rejected", "strategy", "symbol", "reason"),
    # Order plane: the ends of an order beyond the seed (OrderLifecycle.canceled/expired)
    _c(_O, "orders_canceled", "orders_canceled", "{order}", "Orders canceled",
       "strategy", "symbol", "direction", "order_type"),
    _c(_O, "orders_expired", "orders_expired", "{order}", "Orders expired (time in force ran out)",
       "strategy", "symbol", "direction", "order_type"),
    # Order plane: latency
    _h(_O, "intent_to_submit_latency", "orders_intent_to_submit_latency", "s", "Intent to submit latency",
       ORDER_LATENCY_BUCKETS, *_LATENCY, min_value=0.0),
    _h(_O, "submit_to_ack_latency", "orders_submit_to_ack_latency", "s", "Submit to broker ack latency",
       ORDER_LATENCY_BUCKETS, *_LATENCY, min_value=0.0),
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


def _index(
    builtin: tuple[MetricSpec, ...], extensions: tuple[MetricSpec, ...] = (), where: str = "catalog"
) -> Mapping[Plane, Mapping[str, MetricSpec]]:
    """Index the catalog by plane and key, raising :class:`CatalogError` on any
    inconsistency. Built-in metrics use the seed's labels only; extensions declare theirs."""
    catalog = builtin + extensions
    by_plane: dict[Plane, dict[str, MetricSpec]] = {p: {} for p in Plane}
    names: set[str] = set()
    source = where
    for s in catalog:
        where = f"{source}: entry {s.plane.value}/{s.key}"
        if not _NAME.fullmatch(s.key) or not _NAME.fullmatch(s.name):
            raise CatalogError(f"{where}: key and name must match {_NAME.pattern}")
        if s.kind is Kind.COUNTER and "total" in s.name.split("_"):
            raise CatalogError(f"{where}: name {s.name!r}: a counter's name carries no 'total' but the final one")
        if any(s.key in specs for specs in by_plane.values()):
            raise CatalogError(f"{where}: duplicate key (keys are unique across planes)")
        if s.prometheus_name in names:
            raise CatalogError(f"{where}: duplicate name {s.prometheus_name!r}")
        if s.unit == "1" or (s.unit not in ("s", "") and not (s.unit.startswith("{") and s.unit.endswith("}"))):
            raise CatalogError(f"{where}: unit {s.unit!r} would change the exposed name; use 's' or '{{...}}'")
        if len(set(s.labels)) != len(s.labels) or SERVICE_LABEL in s.labels:
            raise CatalogError(f"{where}: labels {s.labels!r} repeat or include the reserved {SERVICE_LABEL!r}")
        stray = set(s.labels) - LABELS[s.plane] if s in builtin else set()
        if stray:
            raise CatalogError(f"{where}: labels {sorted(stray)} are not documented for {s.plane.value}")
        if (s.kind is Kind.HISTOGRAM) != (s.buckets is not None):
            raise CatalogError(f"{where}: histograms and only histograms have buckets")
        if s.buckets is not None and (
            list(s.buckets) != sorted(set(s.buckets)) or not all(math.isfinite(b) for b in s.buckets)
        ):
            raise CatalogError(f"{where}: buckets must be finite and strictly increasing")
        names.add(s.prometheus_name)
        by_plane[s.plane][s.key] = s
    return MappingProxyType({p: MappingProxyType(d) for p, d in by_plane.items()})


# The closed sets of label values the seed documents: a value outside one is bad input
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

_BY_PLANE = _index(CATALOG)
_label_values: dict[str, frozenset[str]] = {k: frozenset(v) for k, v in BUILTIN_LABEL_VALUES.items()}
_metric_label_values: dict[tuple[str, str], frozenset[str]] = {
    k: frozenset(v) for k, v in BUILTIN_METRIC_LABEL_VALUES.items()
}


def plane_specs(plane: str | Plane) -> Mapping[str, MetricSpec]:
    """The plane's metrics by key: the built-in ones and any added by :func:`extend`."""
    return _BY_PLANE[Plane.parse(plane)]


def lookup(key: str) -> MetricSpec | None:
    """The metric ``key`` of whichever plane has it (keys are unique across planes)."""
    for specs in _BY_PLANE.values():
        found = specs.get(key)
        if found is not None:
            return found
    return None


def spec(plane: str | Plane, key: str) -> MetricSpec:
    """The metric ``key`` of ``plane``; ``KeyError`` if there is none."""
    return _BY_PLANE[Plane.parse(plane)][key]


def allowed_values(s: MetricSpec, label: str) -> frozenset[str] | None:
    """The closed set of values ``label`` may take on ``s``; None if it is open."""
    found = _metric_label_values.get((s.key, label))
    return found if found is not None else _label_values.get(label)


_extensions: tuple[MetricSpec, ...] = ()


def effective_catalog() -> tuple[MetricSpec, ...]:
    """The built-in metrics (:data:`CATALOG`: the seed's 37 and the two order ends) and the extensions
    (:func:`extend`), in declaration order."""
    return CATALOG + _extensions


def effective_label_values() -> Mapping[str, frozenset[str]]:
    """Every closed label value set: by label, and ``metric:label`` for one metric's."""
    return {**_label_values, **{f"{k}:{label}": v for (k, label), v in _metric_label_values.items()}}


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
    to a built-in closed set. Invalid declarations raise :class:`CatalogError` naming
    ``where`` (a file, say), the entry and the field; nothing is added then.

    Example::

        extend([MetricSpec(Plane.STRATEGY, "callback_latency", "strategy_callback_latency", Kind.HISTOGRAM,
                           "s", "Strategy callback latency", ("strategy", "callback"),
                           buckets=(1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0), min_value=0.0)],
               label_values={"callback": ["on_quote", "on_bar", "on_order_event"]})
    """
    global _extensions, _BY_PLANE
    if _frozen:
        raise CatalogError(f"{where}: the catalog is extended before the first plane is initialised")
    added = tuple(metrics)
    for s in added:
        if not isinstance(s, MetricSpec):
            raise CatalogError(f"{where}: {s!r} is not a MetricSpec")
    index = _index(CATALOG, _extensions + added, where=where)
    values = dict(_label_values)
    for label, given in (label_values or {}).items():
        texts = list(given) if not isinstance(given, str) else None
        if not isinstance(label, str) or texts is None or not texts or not all(isinstance(v, str) and v for v in texts):
            raise CatalogError(f"{where}: label_values.{label}: expected a list of non-empty strings")
        values[label] = values.get(label, frozenset()) | frozenset(texts)
    _extensions, _BY_PLANE = _extensions + added, index
    _label_values.clear()
    _label_values.update(values)


_frozen = False


def freeze(frozen: bool = True) -> None:
    """The catalog is fixed while a plane is initialised (``_state`` freezes it at the
    first plane and thaws it at ``reset()``)."""
    global _frozen
    _frozen = frozen


def _forget_extensions() -> None:
    """Back to the built-in catalog (tests)."""
    global _extensions, _BY_PLANE
    _extensions, _BY_PLANE = (), _index(CATALOG)
    _loaded.clear()
    _label_values.clear()
    _label_values.update({k: frozenset(v) for k, v in BUILTIN_LABEL_VALUES.items()})


_loaded: set[str] = set()
_FIELDS = {"plane", "key", "name", "kind", "unit", "description", "labels", "buckets", "min", "max", "integral"}


def load_file(path: str) -> None:
    """Extend the catalog from a YAML file (``TRADING_TELEMETRY_CATALOG``), once per path.

    The file's schema (README, "Extending the catalog")::

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
        label_values:                      # optional: allowed values of a label
          callback: [on_quote, on_bar, on_order_event]

    Raises :class:`CatalogError` naming the file, the entry and the field."""
    import yaml  # only a desk with a catalog file needs it

    if path in _loaded:
        return
    try:
        with open(path, encoding="utf-8") as file:
            document = yaml.safe_load(file)
    except (OSError, yaml.YAMLError) as error:
        raise CatalogError(f"{path}: cannot read the catalog file: {error}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict) or set(document) - {"metrics", "label_values"}:
        raise CatalogError(f"{path}: expected a mapping with 'metrics' and/or 'label_values'")
    entries = document.get("metrics") or []
    if not isinstance(entries, list):
        raise CatalogError(f"{path}: metrics: expected a list")
    specs = [_entry(path, i, entry) for i, entry in enumerate(entries, 1)]
    label_values = document.get("label_values") or {}
    if not isinstance(label_values, dict):
        raise CatalogError(f"{path}: label_values: expected a mapping of label to a list of values")
    extend(specs, label_values, where=path)
    _loaded.add(path)


def _entry(path: str, number: int, entry: object) -> MetricSpec:
    """One ``metrics`` entry as a MetricSpec, or CatalogError naming the file, entry and field."""
    if not isinstance(entry, dict):
        raise CatalogError(f"{path}: metrics entry {number}: expected a mapping")
    key = entry.get("key")
    where = f"{path}: metrics entry {number} ({key!r})"

    def bad(field_name: str, problem: str) -> CatalogError:
        return CatalogError(f"{where}: {field_name}: {problem}")

    unknown = set(entry) - _FIELDS
    if unknown:
        raise bad(sorted(unknown)[0], f"unknown field; expected some of {', '.join(sorted(_FIELDS))}")
    for required in ("plane", "key", "name", "kind", "description"):
        if not isinstance(entry.get(required), str) or not entry[required]:
            raise bad(required, "required, a non-empty string")
    try:
        plane = Plane.parse(entry["plane"])
    except UnknownPlaneError:
        raise bad("plane", f"{entry['plane']!r} is not one of {', '.join(p.value for p in Plane)}") from None
    try:
        kind = Kind(entry["kind"])
    except ValueError:
        raise bad("kind", f"{entry['kind']!r} is not one of counter, gauge, histogram") from None
    unit = entry.get("unit", "") or ""
    if not isinstance(unit, str) or not (unit in ("", "s") or (unit.startswith("{") and unit.endswith("}"))):
        raise bad("unit", f"{unit!r}: use s, or an annotation in braces such as {{tick}} (other units change the name)")
    name = entry["name"]
    if kind is Kind.COUNTER:
        if not name.endswith("_total"):
            raise bad("name", f"{name!r}: a counter's exposed name ends in _total")
        name = name.removesuffix("_total")
    if unit == "s" and not name.endswith("_seconds"):
        raise bad("name", f"{entry['name']!r}: a metric in seconds ends in _seconds on both export paths")
    labels = entry.get("labels", []) or []
    if not isinstance(labels, list) or not all(isinstance(x, str) and _NAME.fullmatch(x) for x in labels):
        raise bad("labels", f"expected a list of label names matching {_NAME.pattern}")
    buckets = entry.get("buckets")
    if (kind is Kind.HISTOGRAM) != (buckets is not None):
        raise bad("buckets", "histograms, and only histograms, have buckets")
    if buckets is not None:
        if not isinstance(buckets, list) or not buckets or not all(_number(b) for b in buckets):
            raise bad("buckets", "expected a list of numbers")
        if [float(b) for b in buckets] != sorted({float(b) for b in buckets}):
            raise bad("buckets", "must be strictly increasing")
    bounds = {}
    for field_name in ("min", "max"):
        if field_name in entry:
            if not _number(entry[field_name]) or kind is Kind.COUNTER:
                raise bad(field_name, "a number, for gauges and histograms")
            bounds[field_name] = float(entry[field_name])
    integral = entry.get("integral", False)
    if not isinstance(integral, bool):
        raise bad("integral", "true or false")
    spec = MetricSpec(
        plane, entry["key"], name, kind, unit, entry["description"], tuple(labels),
        tuple(float(b) for b in buckets) if buckets is not None else None,
        min_value=0.0 if kind is Kind.COUNTER else bounds.get("min"), max_value=bounds.get("max"), integral=integral,
    )  # fmt: skip
    if spec.prometheus_name != entry["name"]:
        raise bad("name", f"{entry['name']!r} would be exposed as {spec.prometheus_name!r}")
    return spec


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
