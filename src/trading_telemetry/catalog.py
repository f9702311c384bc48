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
from collections.abc import Mapping
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

# The seed README's label section: which labels each plane may use.
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


def _index(catalog: tuple[MetricSpec, ...]) -> Mapping[Plane, Mapping[str, MetricSpec]]:
    """Index the catalog by plane and key, raising :class:`CatalogError` on any inconsistency."""
    by_plane: dict[Plane, dict[str, MetricSpec]] = {p: {} for p in Plane}
    names: set[str] = set()
    for s in catalog:
        where = f"catalog entry {s.plane.value}/{s.key}"
        if any(s.key in specs for specs in by_plane.values()):
            raise CatalogError(f"{where}: duplicate key (keys are unique across planes)")
        if s.prometheus_name in names:
            raise CatalogError(f"{where}: duplicate name {s.prometheus_name!r}")
        if s.unit == "1" or (s.unit not in ("s", "") and not (s.unit.startswith("{") and s.unit.endswith("}"))):
            raise CatalogError(f"{where}: unit {s.unit!r} would change the exposed name; use 's' or '{{...}}'")
        if len(set(s.labels)) != len(s.labels) or SERVICE_LABEL in s.labels:
            raise CatalogError(f"{where}: labels {s.labels!r} repeat or include the reserved {SERVICE_LABEL!r}")
        stray = set(s.labels) - LABELS[s.plane]
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


_BY_PLANE = _index(CATALOG)


def plane_specs(plane: str | Plane) -> Mapping[str, MetricSpec]:
    """The plane's metrics by key."""
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
