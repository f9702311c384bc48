"""The package's own metrics on every plane, declared as specs like the catalog's.

Each comes with how to read it: its current values by label values (in the spec's label
order; ``service`` is added as for every series). The plane builder gives them observable
instruments on the push path, and the /metrics renderer renders them with the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from trading_telemetry._drops import DROPPED_HELP, DROPPED_METRIC
from trading_telemetry.catalog import Kind, MetricSpec, Plane

__all__ = ["UPTIME_METRIC", "SelfMetric", "dropped", "uptime"]

UPTIME_METRIC = "trading_telemetry_uptime"
"""Self-metric gauge (exposed as ``..._seconds``, label ``service``): seconds since the
plane started. It moves while the plane runs, on every path: the liveness the
``PlaneStopped`` alert watches."""

UPTIME_HELP = "Seconds since the plane started: it keeps moving while the plane runs (its liveness)"

Values = Mapping[tuple[str, ...], float]


@dataclass(frozen=True)
class SelfMetric:
    """A self-metric's spec, and its current values."""

    spec: MetricSpec
    read: Callable[[], Values]
    before: Callable[[], None] | None = None
    """Called at each collection before ``read`` (what the push path needs done first)."""


def dropped(
    plane: Plane, counts: Callable[[], Mapping[tuple[str, str], float]], before: Callable[[], None] | None = None
) -> SelfMetric:
    """``trading_telemetry_dropped_measurements_total{metric, reason}``: what could not be recorded."""
    spec = MetricSpec(plane, DROPPED_METRIC, DROPPED_METRIC, Kind.COUNTER, "{measurement}", DROPPED_HELP,
                      ("metric", "reason"))  # fmt: skip
    return SelfMetric(spec, counts, before)  # type: ignore[arg-type]  # (metric, reason) keys: label values


def uptime(plane: Plane, seconds: Callable[[], float]) -> SelfMetric:
    """``trading_telemetry_uptime_seconds``: the plane's liveness."""
    spec = MetricSpec(plane, UPTIME_METRIC, UPTIME_METRIC, Kind.GAUGE, "s", UPTIME_HELP)
    return SelfMetric(spec, lambda: {(): seconds()})
