"""A key recorded on the wrong plane names the plane that owns it; drops of distinct unknown
keys are logged each on their own (a bounded number of them), under one self-metric series."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_telemetry import InvalidInputError, TelemetryConfig, UnknownMetricError, init_metrics_exporter, reset
from trading_telemetry._drops import DROPPED_METRIC, UNKNOWN_KEYS_LOGGED, UNKNOWN_METRIC
from trading_telemetry.catalog import CATALOG, Plane, plane_specs

SPY = {"source": "ibkr_rt", "symbol": "SPY"}
ORDER = {"strategy": "OFI", "symbol": "SPY", "direction": "BUY", "order_type": "LIMIT"}


def test_an_order_plane_key_on_the_data_plane_names_the_order_plane() -> None:
    """Strict mode: orders_received on the data plane says to record it on the order plane, suggesting no data key."""
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=(), strict=True))
    with pytest.raises(UnknownMetricError) as raised:
        metrics.inc("orders_received", **ORDER)
    assert str(raised.value) == (
        "data_plane: orders_received is an order_plane metric: record it on get_metrics('order_plane')"
    )
    assert "bars_received" not in str(raised.value)


def test_the_drop_log_names_the_owning_plane(caplog: pytest.LogCaptureFixture) -> None:
    """Production mode: the logged drop of a strategy key on the order plane names the strategy plane."""
    metrics = init_metrics_exporter("order_plane", config=TelemetryConfig(metrics_exporters=()))
    with caplog.at_level(logging.WARNING, logger="trading_telemetry"):
        metrics.set("pnl_total_usd", 1.0, strategy="OFI")
    (message,) = [r.getMessage() for r in caplog.records]
    assert "pnl_total_usd is a strategy_plane metric: record it on get_metrics('strategy_plane')" in message
    assert metrics.policy.counts() == {(UNKNOWN_METRIC, "unknown_metric"): 1}


@settings(max_examples=300, deadline=None)
@given(
    plane=st.sampled_from(list(Plane)),
    key=st.one_of(st.sampled_from([s.key for s in CATALOG]), st.text(max_size=40)),
)
def test_any_key_not_of_the_plane_is_refused_naming_its_owner_or_this_plane(plane: Plane, key: str) -> None:
    """Any key: a catalog key of another plane is refused naming that plane, anything else as unknown to this one."""
    reset()
    metrics = init_metrics_exporter(plane, config=TelemetryConfig(metrics_exporters=(), strict=True))
    if key in plane_specs(plane):
        return
    owner = next((s.plane for s in CATALOG if s.key == key), None)
    with pytest.raises(UnknownMetricError) as raised:
        metrics.bind(key)
    message = str(raised.value)
    if owner is None:
        assert message.startswith(f"{plane.value}: unknown metric ")
    else:
        assert message.endswith(f" {owner.value} metric: record it on get_metrics({owner.value!r})")


def test_each_distinct_unknown_key_is_logged_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    """A second, different unknown key within the minute gets its own log line; repeats of either get none."""
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=()))
    now = [1000.0]
    metrics.policy._clock = lambda: now[0]
    with caplog.at_level(logging.WARNING, logger="trading_telemetry"):
        for _ in range(10):
            metrics.inc("tick_recieved", **SPY)
            metrics.inc("bar_recieved", **SPY)
        now[0] += 61
        metrics.inc("tick_recieved", **SPY)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert "'tick_recieved'; did you mean 'ticks_received'" in messages[0]
    assert "'bar_recieved'; did you mean 'bars_received'" in messages[1]
    assert "'tick_recieved'" in messages[2]
    assert metrics.policy.counts() == {(UNKNOWN_METRIC, "unknown_metric"): 21}


def test_past_the_bound_further_unknown_keys_share_one_summary_line(caplog: pytest.LogCaptureFixture) -> None:
    """Distinct unknown keys past UNKNOWN_KEYS_LOGGED log one summary line a minute, and all share one series."""
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=()))
    now = [1000.0]
    metrics.policy._clock = lambda: now[0]
    with caplog.at_level(logging.WARNING, logger="trading_telemetry"):
        for i in range(UNKNOWN_KEYS_LOGGED + 500):
            metrics.inc(f"made_up_{i}", **SPY)
        now[0] += 61
        metrics.inc("made_up_again", **SPY)
        metrics.inc("made_up_once_more", **SPY)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == UNKNOWN_KEYS_LOGGED + 2
    assert all("further drops of this kind" in m for m in messages[:UNKNOWN_KEYS_LOGGED])
    for summary in messages[UNKNOWN_KEYS_LOGGED:]:
        assert f"more than {UNKNOWN_KEYS_LOGGED} distinct keys outside the catalog" in summary
        assert f'{DROPPED_METRIC}_total{{metric="{UNKNOWN_METRIC}"}}' in summary
    assert f"'made_up_{UNKNOWN_KEYS_LOGGED}'" in messages[UNKNOWN_KEYS_LOGGED]
    assert len(metrics.policy._unknown_logged) == UNKNOWN_KEYS_LOGGED
    assert metrics.policy.counts() == {(UNKNOWN_METRIC, "unknown_metric"): UNKNOWN_KEYS_LOGGED + 502}


def test_a_megabyte_unknown_key_is_remembered_by_its_first_characters() -> None:
    """The log throttle keeps a bounded prefix of a key, never the whole of a huge one."""
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=()))
    metrics.policy.reject(InvalidInputError("an argument broke recording", metric="x" * (1 << 20)))
    assert [len(metric) for metric, _ in metrics.policy._unknown_logged] == [100]
    assert metrics.policy.counts() == {(UNKNOWN_METRIC, "invalid_input"): 1}
