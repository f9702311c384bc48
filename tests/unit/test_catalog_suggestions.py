"""The "did you mean" suggestion for an unknown key: computed only when an error's message
is read, once per distinct key in a bounded cache, by a matcher whose cost is a set
operation per catalog key."""

from __future__ import annotations

import pytest

from trading_telemetry import TelemetryConfig, UnknownMetricError, _checks, init_metrics_exporter
from trading_telemetry._checks import _SUGGESTIONS_KEPT, did_you_mean
from trading_telemetry._drops import UNKNOWN_KEYS_LOGGED
from trading_telemetry._globals import STATE
from trading_telemetry.catalog import CATALOG

SPY = {"source": "ibkr_rt", "symbol": "SPY"}
KEYS = tuple(s.key for s in CATALOG)


def test_production_computes_no_suggestion_for_a_stream_of_distinct_unknown_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """10,000 distinct unknown keys in production: all counted, and only the few logged get a suggestion."""
    computed: list[str] = []
    closest = _checks._closest
    monkeypatch.setattr(_checks, "_closest", lambda key, keys: computed.append(key) or closest(key, keys))
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=()))
    for i in range(10_000):
        metrics.inc(f"tick_recieved_{i}", **SPY)
    assert metrics.policy.dropped == 10_000
    assert len(computed) <= UNKNOWN_KEYS_LOGGED + 1, "the drop log reads a message per key logged, a bounded few"


def test_strict_mode_names_the_closest_keys() -> None:
    """The raised error's message suggests the catalog key the typo was meant to be."""
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=(), strict=True))
    with pytest.raises(UnknownMetricError, match="did you mean 'ticks_received'"):
        metrics.inc("tick_recieved", **SPY)


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("tick_received", "ticks_received"),
        ("tick_recieved", "ticks_received"),
        ("qp_solve_tme", "qp_solve_time"),
        ("orders_recieved", "orders_received"),
        ("data_freshnes", "data_freshness"),
        ("completness", "completeness_score"),
        ("order_filled", "orders_filled"),
        ("kill_switch", "kill_switch_active"),
        ("commision_usd", "commission_usd"),
    ],
)
def test_the_first_suggestion_is_the_key_meant(typo: str, meant: str) -> None:
    """Common typos of catalog keys suggest the right key first."""
    assert did_you_mean(typo, KEYS).startswith(f"; did you mean {meant!r}")


def test_no_suggestion_for_what_is_like_nothing_or_not_a_short_string() -> None:
    """A key like no catalog key, a megabyte key or a non-string gets no suggestion."""
    assert did_you_mean("xyz", KEYS) == ""
    assert did_you_mean("x" * (1 << 20), KEYS) == ""
    assert did_you_mean(5, KEYS) == ""


def test_the_cache_keeps_the_latest_distinct_keys_only() -> None:
    """Past _SUGGESTIONS_KEPT distinct keys the oldest are forgotten: the cache stays bounded and keeps working."""
    for i in range(3 * _SUGGESTIONS_KEPT):
        did_you_mean(f"tick_received_{i}", KEYS)
    assert len(STATE.suggestions) == _SUGGESTIONS_KEPT
    assert ((KEYS, f"tick_received_{3 * _SUGGESTIONS_KEPT - 1}")) in STATE.suggestions
    assert ((KEYS, "tick_received_0")) not in STATE.suggestions
