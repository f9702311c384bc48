from __future__ import annotations

import math

import pytest

from trading_telemetry import TelemetryConfig
from trading_telemetry.testing import TelemetryCapture

SPY = {"source": "ibkr_rt", "symbol": "SPY"}


def test_mark_makes_assertions_count_from_that_point(captelemetry: TelemetryCapture) -> None:
    """After mark(), assert_counter_rose and assert_observed see only what came later."""
    data = captelemetry.plane("data_plane")
    data.inc("ticks_received", 5, **SPY)
    data.observe("data_freshness", 0.02, **SPY)
    captelemetry.mark()
    data.inc("ticks_received", 2, **SPY)
    data.observe("data_freshness", 0.02, **SPY)
    captelemetry.assert_counter_rose("ticks_received", by=2, **SPY)
    captelemetry.assert_observed("data_freshness", le=0.025, count=1, **SPY)
    assert captelemetry.counter("ticks_received", **SPY) == 7
    with pytest.raises(AssertionError, match="rose by 2"):
        captelemetry.assert_counter_rose("ticks_received", by=7, **SPY)


def test_gauge_reads_the_last_value_or_none(captelemetry: TelemetryCapture) -> None:
    """gauge() is the last value set for exactly those labels, None if never set."""
    assert captelemetry.gauge("completeness_score", symbol="SPY") is None
    captelemetry.plane("data_plane").set("completeness_score", 0.97, symbol="SPY")
    captelemetry.plane("data_plane").set("completeness_score", 0.91, symbol="SPY")
    assert captelemetry.gauge("completeness_score", symbol="SPY") == 0.91
    assert captelemetry.gauge("completeness_score", symbol="QQQ") is None


def test_wrong_kind_or_bucket_is_a_clear_assertion(captelemetry: TelemetryCapture) -> None:
    """Asking for a counter that is a gauge, or a bucket bound that does not exist, fails with the options."""
    with pytest.raises(AssertionError, match="not a catalog counter"):
        captelemetry.counter("completeness_score", symbol="SPY")
    captelemetry.plane("data_plane").observe("data_freshness", 0.02, **SPY)
    with pytest.raises(AssertionError, match=r"no bucket le=0\.03"):
        captelemetry.assert_observed("data_freshness", le=0.03, **SPY)
    assert captelemetry.histogram("data_freshness", **SPY).buckets[math.inf] == 0


def test_the_desks_extended_catalog_survives_the_fixtures_reset() -> None:
    """A metric the desk added with extend() (at its modules' import) is still there inside the fixture, and
    after it: the fixture's resets keep the desk's catalog; reset() itself returns to the built-in one."""
    from trading_telemetry import reset
    from trading_telemetry.catalog import Kind, MetricSpec, Plane, extend, lookup
    from trading_telemetry.testing import capturing

    extend([MetricSpec(Plane.STRATEGY, "desk_rebalances", "strategy_desk_rebalances", Kind.COUNTER, "{rebalance}",
                       "Rebalances", ("strategy",))])  # fmt: skip
    with capturing() as capture:
        capture.plane("strategy_plane").inc("desk_rebalances", strategy="OFI")
        assert capture.counter("desk_rebalances", strategy="OFI") == 1
    assert lookup("desk_rebalances") is not None
    reset()
    assert lookup("desk_rebalances") is None


def test_a_histogram_with_native_buckets_reads_as_a_classic_one() -> None:
    """With every histogram native (pushed as exponential points), histogram(), mark() and assert_observed still
    give the classic buckets, count and sum."""
    capture = TelemetryCapture(TelemetryConfig(strict=True, metrics_exporters=(), native_histograms="all"))
    data = capture.plane("data_plane")
    data.observe("data_freshness", 0.02, **SPY)
    capture.mark()
    data.observe("data_freshness", 0.02, **SPY)
    data.observe("data_freshness", 3.0, **SPY)
    snap = capture.histogram("data_freshness", **SPY)
    assert (snap.count, snap.sum, snap.buckets[0.025], snap.buckets[5]) == (3, pytest.approx(3.04), 2, 1)
    capture.assert_observed("data_freshness", le=0.025, count=1, **SPY)
    capture.assert_observed("data_freshness", le=5, count=1, **SPY)
