from __future__ import annotations

import math

from trading_telemetry import OrderLifecycle
from trading_telemetry.testing import TelemetryCapture

ORDER = {"strategy": "OFI", "symbol": "SPY", "direction": "BUY", "order_type": "LIMIT"}
LATENCY = {"strategy": "OFI", "symbol": "SPY", "order_type": "LIMIT"}


def order(capture: TelemetryCapture) -> OrderLifecycle:
    return OrderLifecycle(**ORDER, metrics=capture.plane("order_plane"))


def latencies(capture: TelemetryCapture) -> dict[str, tuple[int, float]]:
    keys = ("intent_to_submit_latency", "submit_to_ack_latency", "ack_to_fill_latency", "total_fill_latency")
    return {k: (s.count, round(s.sum, 9)) for k in keys if (s := capture.histogram(k, **LATENCY)).count}


def test_full_lifecycle_records_counters_latencies_and_costs(captelemetry: TelemetryCapture) -> None:
    """intent -> submit -> ack -> fill records the four counters' steps, four latencies, slippage and commission."""
    o = order(captelemetry)
    o.intent(at=100.0)
    o.submitted(at=100.0005)
    o.acked(at=100.0205)
    o.filled(at=100.1205, slippage_bps=-0.8, commission_usd=0.35)
    assert o.state == "filled"
    base = {"strategy": "OFI", "symbol": "SPY"}
    captelemetry.assert_counter_rose("orders_received", by=1, **ORDER)
    captelemetry.assert_counter_rose("orders_submitted", by=1, **ORDER)
    captelemetry.assert_counter_rose("orders_filled", by=1, **base, direction="BUY", status="FILLED")
    captelemetry.assert_counter_rose("commission_usd", by=0.35, **base)
    captelemetry.assert_observed("slippage_bps", le=0.0, **base, direction="BUY")  # (-1, 0]
    got = latencies(captelemetry)
    assert got == {
        "intent_to_submit_latency": (1, 0.0005),
        "submit_to_ack_latency": (1, 0.02),
        "ack_to_fill_latency": (1, 0.1),
        "total_fill_latency": (1, 0.1205),
    }


def test_out_of_order_steps_still_give_every_latency(captelemetry: TelemetryCapture) -> None:
    """A fill report before the ack: each latency is recorded once both its ends are known."""
    o = order(captelemetry)
    o.intent(at=0.0)
    o.submitted(at=0.001)
    o.filled(at=0.5)
    assert latencies(captelemetry) == {"intent_to_submit_latency": (1, 0.001), "total_fill_latency": (1, 0.5)}
    o.acked(at=0.1)
    assert latencies(captelemetry)["submit_to_ack_latency"] == (1, 0.099)
    assert latencies(captelemetry)["ack_to_fill_latency"] == (1, 0.4)


def test_repeated_steps_count_once(captelemetry: TelemetryCapture) -> None:
    """A resent report changes nothing: counters and latencies are recorded once, first time wins."""
    o = order(captelemetry)
    for _ in range(3):
        o.intent(at=1.0)
        o.submitted(at=1.01)
        o.acked(at=1.02)
        o.filled(at=1.05, status="PARTIAL_FILL")
    o.filled(at=9.0)
    captelemetry.assert_counter_rose("orders_received", by=1, **ORDER)
    captelemetry.assert_counter_rose(
        "orders_filled", by=1, strategy="OFI", symbol="SPY", direction="BUY", status="PARTIAL_FILL"
    )
    assert latencies(captelemetry)["total_fill_latency"] == (1, 0.05)


def test_negative_latency_is_never_recorded(captelemetry: TelemetryCapture) -> None:
    """Timestamps from clocks that disagree (ack before submit) record no latency for that pair."""
    o = order(captelemetry)
    o.submitted(at=5.0)
    o.acked(at=4.9)
    assert "submit_to_ack_latency" not in latencies(captelemetry)


def test_a_filled_order_cannot_be_rejected_nor_the_reverse(captelemetry: TelemetryCapture) -> None:
    """The first terminal step wins."""
    o = order(captelemetry)
    o.intent()
    o.rejected("risk_check")
    o.filled()
    assert o.state == "rejected"
    captelemetry.assert_counter_rose("orders_rejected", by=1, strategy="OFI", symbol="SPY", reason="risk_check")
    assert captelemetry.counter("orders_filled", strategy="OFI", symbol="SPY", direction="BUY", status="FILLED") == 0


def test_takes_the_monotonic_clock_itself(captelemetry: TelemetryCapture) -> None:
    """Without timestamps the helper reads its clock at each step."""
    ticks = iter([10.0, 10.25])
    o = OrderLifecycle(**ORDER, metrics=captelemetry.plane("order_plane"), clock=lambda: next(ticks))
    o.intent()
    o.submitted()
    assert latencies(captelemetry)["intent_to_submit_latency"] == (1, 0.25)
    assert math.isclose(captelemetry.histogram("intent_to_submit_latency", **LATENCY).sum, 0.25)


def test_steps_from_many_threads_count_once(captelemetry: TelemetryCapture) -> None:
    """Broker callbacks racing on the same orders from 8 threads (each sending every step, some
    twice): every order counts each step once and records each latency once."""
    import threading

    orders = [order(captelemetry) for _ in range(300)]
    barrier = threading.Barrier(8)

    def broker() -> None:
        barrier.wait()
        for o in orders:
            o.filled(at=1.01, slippage_bps=-0.5, commission_usd=0.25)
            o.acked(at=1.002)
            o.intent(at=1.0)
            o.submitted(at=1.001)
            o.rejected("broker_reject", at=1.02)  # after the fill: ignored
            o.filled(at=1.05)

    threads = [threading.Thread(target=broker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    base = {"strategy": "OFI", "symbol": "SPY"}
    captelemetry.assert_counter_rose("orders_received", by=300, **ORDER)
    captelemetry.assert_counter_rose("orders_submitted", by=300, **ORDER)
    captelemetry.assert_counter_rose("orders_filled", by=300, **base, direction="BUY", status="FILLED")
    assert captelemetry.counter("orders_rejected", **base, reason="broker_reject") == 0
    assert math.isclose(captelemetry.counter("commission_usd", **base), 75.0)
    assert {k: n for k, (n, _) in latencies(captelemetry).items()} == {
        "intent_to_submit_latency": 300,
        "submit_to_ack_latency": 300,
        "ack_to_fill_latency": 300,
        "total_fill_latency": 300,
    }
    assert all(o.state == "filled" for o in orders)
