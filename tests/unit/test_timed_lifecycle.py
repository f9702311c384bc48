"""``timed`` on an order latency that OrderLifecycle also records warns once, at decoration
time, naming both and what to choose."""

from __future__ import annotations

import logging

import pytest

from trading_telemetry import timed
from trading_telemetry.lifecycle import LATENCY_STEPS

LATENCY_LABELS = {"strategy": "OFI", "symbol": "SPY", "order_type": "LIMIT"}


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "trading_telemetry" and r.levelno == logging.WARNING]


def test_the_four_latencies_are_the_ones_order_lifecycle_records() -> None:
    """LATENCY_STEPS is the lifecycle's own list of latency histograms."""
    assert set(LATENCY_STEPS) == {
        "intent_to_submit_latency", "submit_to_ack_latency", "ack_to_fill_latency", "total_fill_latency",
    }  # fmt: skip


def test_timing_submit_to_ack_warns_once_naming_both_and_the_choice(caplog: pytest.LogCaptureFixture) -> None:
    """Two decorations and a block on submit_to_ack_latency: one warning, at decoration, before any call."""
    with caplog.at_level(logging.WARNING, logger="trading_telemetry"):

        @timed("submit_to_ack_latency", labels_from=("strategy", "symbol"), labels={"order_type": "LIMIT"})
        def send(strategy: str, symbol: str) -> None: ...

        @timed("submit_to_ack_latency", labels=LATENCY_LABELS)
        def resend() -> None: ...

        timed("submit_to_ack_latency", labels=LATENCY_LABELS)
    (message,) = _warnings(caplog)
    assert message.startswith(
        "timed('submit_to_ack_latency'): OrderLifecycle records submit_to_ack_latency too, from submitted() to "
        "acked(), so a program that times it here and also calls those OrderLifecycle steps observes each order twice"
    )
    assert "Choose one: OrderLifecycle" in message
    assert "or this timed without OrderLifecycle" in message


@pytest.mark.parametrize("key", sorted(LATENCY_STEPS))
def test_each_lifecycle_latency_warns(caplog: pytest.LogCaptureFixture, key: str) -> None:
    """Every latency OrderLifecycle records gets the warning, naming its steps."""
    with caplog.at_level(logging.WARNING, logger="trading_telemetry"):
        timed(key, labels=LATENCY_LABELS)
    (message,) = _warnings(caplog)
    start, end = LATENCY_STEPS[key]
    assert f"from {start}() to " in message
    assert ("the fill that completes the order" if end == "filled" else f"{end}()") in message


def test_other_histograms_do_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    """Keys OrderLifecycle does not record (a QP solve, a storage write) are timed without a word."""
    with caplog.at_level(logging.WARNING, logger="trading_telemetry"):
        timed("qp_solve_time")
        timed("storage_write_latency", labels={"event_type": "bar"})
    assert _warnings(caplog) == []
