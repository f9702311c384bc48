from __future__ import annotations

from collections import Counter

import pytest

from helpers import SPEC_METRICS
from trading_telemetry.catalog import CATALOG, LABELS, Kind, MetricSpec, Plane, TakenNames, _checked, plane_specs, spec
from trading_telemetry.errors import CatalogError, UnknownPlaneError


def test_catalog_holds_the_37_specified_metrics_and_the_two_order_ends_per_plane() -> None:
    """The catalog has 11 Data, 14 Order (the specification's 12, canceled and expired) and 14 Strategy metrics."""
    assert Counter(s.plane for s in CATALOG) == {Plane.DATA: 11, Plane.ORDER: 14, Plane.STRATEGY: 14}


def test_every_specified_name_is_documented_with_its_type() -> None:
    """Every name of the original monitoring specification is a catalog metric's documented name, with its kind;
    beyond the specification, only the two ends of an order OrderLifecycle records."""
    documented = {s.documented_name: s.prometheus_type for s in CATALOG}
    assert documented == {**SPEC_METRICS, "orders_canceled_total": "counter", "orders_expired_total": "counter"}


def test_exposed_name_equals_documented_name_except_commission() -> None:
    """Only the commission counter is exposed under another name (design.md)."""
    differing = {s.documented_name: s.prometheus_name for s in CATALOG if s.documented_name != s.prometheus_name}
    assert differing == {"orders_commission_total_usd": "orders_commission_usd_total"}


def test_units_never_change_the_exposed_name() -> None:
    """Only `s` (-> _seconds, already in the name) or curly-brace annotations are used."""
    for s in CATALOG:
        assert s.unit == "s" or (s.unit.startswith("{") and s.unit.endswith("}")), s
        if s.unit == "s":
            assert s.prometheus_name.removesuffix("_total").endswith("_seconds")


def test_labels_come_from_the_specification_label_section() -> None:
    """Each metric's labels are documented for its plane."""
    for s in CATALOG:
        assert set(s.labels) <= LABELS[s.plane], s.key


def test_histogram_buckets() -> None:
    """Order latencies span 100 µs to 30 s; slippage buckets include negative values."""
    assert spec("order_plane", "total_fill_latency").buckets[0] == 0.0001
    assert spec("order_plane", "total_fill_latency").buckets[-1] == 30.0
    assert min(spec("order_plane", "slippage_bps").buckets or ()) < 0
    for s in CATALOG:
        assert (s.kind is Kind.HISTOGRAM) == bool(s.buckets), s.key


def test_bounded_gauges_have_ranges() -> None:
    """Completeness is 0-1, regime is 0/1/2, the kill switch is 0/1."""
    assert (spec("data_plane", "completeness_score").min_value, spec("data_plane", "completeness_score").max_value) == (
        0,
        1,
    )
    regime = spec("strategy_plane", "regime_state")
    assert (regime.min_value, regime.max_value, regime.integral) == (0, 2, True)
    kill = spec("strategy_plane", "kill_switch_active")
    assert (kill.min_value, kill.max_value, kill.integral) == (0, 1, True)


def test_specification_example_keys() -> None:
    """The keys of the specification's usage example exist on the Data plane."""
    keys = plane_specs("data_plane")
    assert {"ticks_received", "data_freshness", "completeness_score"} <= set(keys)


def test_unknown_plane_is_a_setup_error() -> None:
    """An unknown plane name raises, naming the known ones."""
    with pytest.raises(UnknownPlaneError, match="data_plane, order_plane, strategy_plane"):
        plane_specs("risk_plane")


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({"unit": "1"}, "unit"),
        ({"unit": "USD"}, "unit"),
        ({"labels": ("symbol", "service")}, "reserved"),
        ({"labels": ("strategy",)}, "not documented"),
        ({"buckets": (0.2, 0.1)}, "increasing"),
    ],
)
def test_catalog_inconsistencies_raise(broken: dict[str, object], message: str) -> None:
    """A catalog entry with a unit that would rename it, a stray label or bad buckets is refused."""
    base = spec("data_plane", "data_freshness")
    fields = {**base.__dict__, **broken}
    with pytest.raises(CatalogError, match=message):
        _checked((MetricSpec(**fields),), TakenNames(), builtin=True, where="catalog")


def test_duplicate_keys_raise() -> None:
    """Two entries with one key in one plane are refused."""
    s = spec("data_plane", "ticks_received")
    with pytest.raises(CatalogError, match="duplicate"):
        _checked((s, s), TakenNames(), builtin=True, where="catalog")
