from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

import pytest

from hostile import Alias
from trading_telemetry import InstrumentationError, LabelError, TelemetryConfig, init_metrics_exporter, timed
from trading_telemetry.testing import TelemetryCapture


@dataclass
class Solution:
    status: str


@timed("qp_solve_time", outcome="qp_solve_status", outcome_of=lambda r: r.status)
def solve(status: str) -> Solution:
    if status == "crash":
        raise RuntimeError("singular matrix")
    return Solution(status)


@timed("storage_write_latency", labels_from=("event_type",))
async def write(rows: int, event_type: str = "tick") -> int:
    await asyncio.sleep(0)
    return rows


LATENCY = {"strategy": "OFI", "symbol": "SPY"}


class Broker:
    @timed("submit_to_ack_latency", labels_from=("strategy", "symbol"), labels={"order_type": "LIMIT"})
    def send(self, strategy: str, symbol: str) -> str:
        return f"{strategy}:{symbol}"


def test_duration_and_outcome_of_a_sync_call(captelemetry: TelemetryCapture) -> None:
    """Each call adds one observation to the histogram and counts its outcome from the result."""
    assert solve("optimal").status == "optimal"
    solve("infeasible")
    assert captelemetry.histogram("qp_solve_time").count == 2
    captelemetry.assert_observed("qp_solve_time", le=0.0005, count=2)
    captelemetry.assert_counter_rose("qp_solve_status", by=1, status="optimal")
    captelemetry.assert_counter_rose("qp_solve_status", by=1, status="infeasible")


def test_exception_counts_the_error_outcome_and_reraises(captelemetry: TelemetryCapture) -> None:
    """A raising call is timed, counted as `error`, and its exception passes through unchanged."""
    with pytest.raises(RuntimeError, match="singular matrix"):
        solve("crash")
    assert captelemetry.histogram("qp_solve_time").count == 1
    captelemetry.assert_counter_rose("qp_solve_status", by=1, status="error")


def test_async_labels_from_keyword_and_default(captelemetry: TelemetryCapture) -> None:
    """Labels come from arguments given by keyword, or from their defaults; async works."""
    assert asyncio.run(write(3, event_type="bar")) == 3
    asyncio.run(write(5))
    assert captelemetry.histogram("storage_write_latency", event_type="bar").count == 1
    assert captelemetry.histogram("storage_write_latency", event_type="tick").count == 1


def test_method_with_constant_labels(captelemetry: TelemetryCapture) -> None:
    """On a method, arguments after self become labels, next to the constants."""
    Broker().send("ERN", symbol="QQQ")
    snap = captelemetry.histogram("submit_to_ack_latency", strategy="ERN", symbol="QQQ", order_type="LIMIT")
    assert snap.count == 1
    assert snap.buckets[math.inf] == 0


def test_context_manager_times_a_block(captelemetry: TelemetryCapture) -> None:
    """`with timed(...)` times the block; the outcome can be set inside it."""
    with timed("qp_solve_time", outcome="qp_solve_status") as timing:
        timing.outcome = "max_iter"
    with pytest.raises(KeyError), timed("qp_solve_time", outcome="qp_solve_status"):
        raise KeyError("x")
    assert captelemetry.histogram("qp_solve_time").count == 2
    captelemetry.assert_counter_rose("qp_solve_status", by=1, status="max_iter")
    captelemetry.assert_counter_rose("qp_solve_status", by=1, status="error")


def test_a_measured_duration_lands_in_the_right_bucket(captelemetry: TelemetryCapture) -> None:
    """A 30 ms sleep lands in the (0.025, 0.05] bucket of the submit-to-ack histogram."""
    import time

    @timed("submit_to_ack_latency", labels={**LATENCY, "order_type": "MARKET"})
    def slow() -> None:
        time.sleep(0.03)

    slow()
    captelemetry.assert_observed("submit_to_ack_latency", le=0.05, **LATENCY, order_type="MARKET")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: timed("ticks_received"), "'ticks_received' is a counter, not a histogram"),
        (lambda: timed("qp_solve_tme"), "did you mean 'qp_solve_time'"),
        (lambda: timed("qp_solve_time", labels={"symbol": "SPY"}), "label 'symbol' is not allowed"),
        (lambda: timed("total_fill_latency", labels={"symbol": "SPY"}), "'order_type', 'strategy'] are missing"),
        (lambda: timed("qp_solve_time", outcome="qp_solve_time"), "is a histogram, not a counter"),
        (lambda: timed("qp_solve_time", outcome="orders_filled"), "not on the strategy_plane"),
        (lambda: timed("data_freshness", labels={"source": "x", "symbol": 5}), "symbol=5 must be a non-empty string"),
    ],
)
def test_mistakes_are_refused_when_decorating(make: object, message: str) -> None:
    """A key that is not a histogram, a wrong or missing label, or a wrong outcome raises at once."""
    with pytest.raises(InstrumentationError, match=message.replace("[", r"\[").replace("(", r"\(")):
        make()  # type: ignore[operator]


def test_argument_the_function_lacks_is_refused() -> None:
    """labels_from naming an argument the function does not have raises when decorating."""
    with pytest.raises(InstrumentationError, match="has no argument 'event_type'; its arguments: kind"):

        @timed("storage_write_latency", labels_from=("event_type",))
        def store(kind: str) -> None: ...


def test_bad_label_value_from_an_argument_follows_the_regime() -> None:
    """A non-string label from an argument raises in strict mode, and is dropped quietly in production."""

    @timed("storage_write_latency", labels_from=("event_type",))
    def store(event_type: object) -> str:
        return "stored"

    init_metrics_exporter("data_plane", config=TelemetryConfig(strict=True, metrics_exporters=()))
    with pytest.raises(LabelError, match="event_type=7"):
        store(7)
    from trading_telemetry import reset

    reset()
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=()))
    assert store(7) == "stored"
    assert store([1]) == "stored"  # unhashable too
    assert metrics.health()["dropped_measurements"] == 2


def test_strict_timed_refuses_an_object_passing_for_a_cached_argument(captelemetry: TelemetryCapture) -> None:
    """After timed() caches the handle of plain-string arguments, an object equal to them is
    still refused in strict mode, naming the metric, the label and the value."""
    broker = Broker()
    broker.send("OFI", "SPY")  # cached
    with pytest.raises(LabelError, match=r"submit_to_ack_latency: label symbol=Alias\('SPY'\)"):
        broker.send("OFI", Alias("SPY"))  # type: ignore[arg-type]
    assert captelemetry.histogram("submit_to_ack_latency", **LATENCY, order_type="LIMIT").count == 1


def test_strict_timed_refuses_an_outcome_passing_for_a_cached_one(captelemetry: TelemetryCapture) -> None:
    """An outcome_of result equal to a cached status string but not a str is refused in strict mode."""

    @timed("qp_solve_time", outcome="qp_solve_status", outcome_of=lambda r: r)
    def solve_as(status: object) -> object:
        return status

    solve_as("optimal")  # the "optimal" counter is cached
    with pytest.raises(LabelError, match=r"status=Alias\('optimal'\)"):
        solve_as(Alias("optimal"))
    captelemetry.assert_counter_rose("qp_solve_status", by=1, status="optimal")


def test_production_timed_drops_an_argument_passing_for_a_cached_one() -> None:
    """In production mode such a call is dropped as invalid_label_value; the cached series does not move."""
    metrics = init_metrics_exporter("order_plane", config=TelemetryConfig(metrics_exporters=()))
    broker = Broker()
    broker.send("OFI", "SPY")
    for _ in range(3):
        broker.send("OFI", Alias("SPY"))  # type: ignore[arg-type]
    counts, _, _, _ = metrics.bind("submit_to_ack_latency", **LATENCY, order_type="LIMIT").snapshot()
    assert sum(counts) == 1
    assert metrics.policy.counts() == {("submit_to_ack_latency", "invalid_label_value"): 3}
