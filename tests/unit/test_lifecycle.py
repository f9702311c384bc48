from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator

import pytest

from trading_telemetry import OrderLifecycle, PlaneMetrics, TelemetryConfig
from trading_telemetry._plane import build_plane
from trading_telemetry.catalog import Plane
from trading_telemetry.errors import InvalidValueError
from trading_telemetry.testing import TelemetryCapture

ORDER = {"strategy": "OFI", "symbol": "SPY", "direction": "BUY", "order_type": "LIMIT"}
LATENCY = {"strategy": "OFI", "symbol": "SPY", "order_type": "LIMIT"}


BASE = {"strategy": "OFI", "symbol": "SPY"}
_production: list[PlaneMetrics] = []


def order(capture: TelemetryCapture, **kw: object) -> OrderLifecycle:
    return OrderLifecycle(**ORDER, metrics=capture.plane("order_plane"), **kw)  # type: ignore[arg-type]


def production_plane() -> PlaneMetrics:
    """An Order plane in production mode (bad input counted, not raised), shut down after the test."""
    plane = build_plane(Plane.ORDER, TelemetryConfig(strict=False, metrics_exporters=()))
    _production.append(plane)
    return plane


@pytest.fixture(autouse=True)
def _shutdown_production_planes() -> Iterator[None]:
    yield
    while _production:
        _production.pop().shutdown()


def race(broker: Callable[[], None], threads: int) -> None:
    """Run ``broker`` on ``threads`` threads released together, and wait for them all."""
    barrier = threading.Barrier(threads)

    def released() -> None:
        barrier.wait()
        broker()

    started = [threading.Thread(target=released) for _ in range(threads)]
    for t in started:
        t.start()
    for t in started:
        t.join()


def filled(capture: TelemetryCapture, status: str) -> float:
    return capture.counter("orders_filled", **BASE, direction="BUY", status=status)


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


def test_negative_latency_is_never_recorded_and_is_reported(captelemetry: TelemetryCapture) -> None:
    """Timestamps from clocks that disagree (ack before submit) record no latency for that
    pair: strict mode raises, naming the latency; production counts an invalid_timestamp drop."""
    o = order(captelemetry)
    o.submitted(at=5.0)
    with pytest.raises(InvalidValueError, match=r"submit_to_ack_latency: acked came 0\.1 s before submitted"):
        o.acked(at=4.9)
    assert "submit_to_ack_latency" not in latencies(captelemetry)
    production = production_plane()
    p = OrderLifecycle(**ORDER, metrics=production)
    p.submitted(at=5.0)
    p.acked(at=4.9)
    assert production.policy.counts() == {("submit_to_ack_latency", "invalid_timestamp"): 1}


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
    orders = [order(captelemetry) for _ in range(300)]

    def broker() -> None:
        for o in orders:
            o.filled(at=1.01, slippage_bps=-0.5, commission_usd=0.25)
            o.acked(at=1.002)
            o.intent(at=1.0)
            o.submitted(at=1.001)
            o.rejected("broker_reject", at=1.02)  # after the fill: ignored
            o.filled(at=1.05)

    race(broker, threads=8)
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


# -- real orders: partial fills, the ends, nanoseconds ---------------------------------


def test_partial_fills_each_record_their_costs_and_the_order_counts_filled_once(
    captelemetry: TelemetryCapture,
) -> None:
    """Three fills of a 300 order: three slippage observations from each fill's price, three
    commissions, FILLED once at the completing fill, whose time ends the fill latencies."""
    o = order(captelemetry, quantity=300, reference_price=100.0)
    o.intent(at=10.0)
    o.submitted(at=10.001)
    o.acked(at=10.002)
    o.fill(100, price=100.01, at=10.1, commission_usd=0.5)  # +1 bp
    assert o.state == "partially_filled"
    assert filled(captelemetry, "FILLED") == 0
    o.fill(150, price=100.00, at=10.2, commission_usd=0.75)  # 0 bp
    o.fill(50, price=99.98, at=10.3, commission_usd=0.25)  # -2 bp: improvement
    assert o.state == "filled"
    assert o.filled_quantity == 300
    assert filled(captelemetry, "FILLED") == 1
    assert filled(captelemetry, "PARTIAL_FILL") == 0
    assert math.isclose(captelemetry.counter("commission_usd", **BASE), 1.5)
    slip = captelemetry.histogram("slippage_bps", **BASE, direction="BUY")
    assert slip.count == 3
    assert math.isclose(slip.sum, 1.0 + 0.0 - 2.0, abs_tol=1e-6)
    got = latencies(captelemetry)
    assert got["ack_to_fill_latency"] == (1, 0.298)
    assert got["total_fill_latency"] == (1, 0.3)


def test_sell_slippage_is_the_price_given_up_below_the_reference(captelemetry: TelemetryCapture) -> None:
    """A SELL filled 1 bp below its reference paid +1 bp; given slippage_bps wins over the price."""
    o = OrderLifecycle(**{**ORDER, "direction": "SELL"}, quantity=2, reference_price=200.0,
                       metrics=captelemetry.plane("order_plane"))  # fmt: skip
    o.fill(1, price=199.98)
    o.fill(1, price=1.0, slippage_bps=3.0)
    slip = captelemetry.histogram("slippage_bps", **BASE, direction="SELL")
    assert (slip.count, round(slip.sum, 6)) == (2, 4.0)
    assert captelemetry.counter("orders_filled", **BASE, direction="SELL", status="FILLED") == 1


def test_repeated_fill_reports_count_once_by_fill_id(captelemetry: TelemetryCapture) -> None:
    """A fill resent with the same fill_id adds no quantity, cost or completion; fills without an id each count."""
    o = order(captelemetry, quantity=100)
    for _ in range(3):
        o.fill(60, fill_id="T-1", commission_usd=0.6)
    assert o.filled_quantity == 60
    assert o.state == "partially_filled"
    o.fill(40, fill_id="T-2", commission_usd=0.4)
    o.fill(40, fill_id="T-2", commission_usd=0.4)
    assert math.isclose(captelemetry.counter("commission_usd", **BASE), 1.0)
    assert filled(captelemetry, "FILLED") == 1


def test_float_quantities_complete_within_rounding(captelemetry: TelemetryCapture) -> None:
    """0.1 + 0.2 fills an order of 0.3; a Decimal quantity is a number too."""
    from decimal import Decimal

    o = order(captelemetry, quantity=0.3)
    o.fill(0.1)
    o.fill(Decimal("0.2"))  # type: ignore[arg-type]
    assert o.state == "filled"


def test_canceled_after_a_partial_fill_counts_canceled_and_partial_fill(captelemetry: TelemetryCapture) -> None:
    """An order that ends with quantity unfilled: canceled once, PARTIAL_FILL once, latencies to its latest fill."""
    o = order(captelemetry, quantity=100)
    o.intent(at=1.0)
    o.acked(at=1.1)
    o.fill(30, at=1.5)
    o.fill(20, at=1.4)  # reported late: the latest fill is still 1.5
    o.canceled(at=2.0)
    o.canceled(at=2.1)
    o.expired(at=3.0)  # after the end: ignored
    assert o.state == "canceled"
    captelemetry.assert_counter_rose("orders_canceled", by=1, **ORDER)
    assert captelemetry.counter("orders_expired", **ORDER) == 0
    assert filled(captelemetry, "PARTIAL_FILL") == 1
    assert filled(captelemetry, "FILLED") == 0
    assert latencies(captelemetry)["total_fill_latency"] == (1, 0.5)


def test_expired_without_fills_is_only_expired(captelemetry: TelemetryCapture) -> None:
    o = order(captelemetry, quantity=100)
    o.submitted()
    o.expired()
    assert o.state == "expired"
    captelemetry.assert_counter_rose("orders_expired", by=1, **ORDER)
    assert filled(captelemetry, "PARTIAL_FILL") == 0


def test_a_fill_racing_a_cancel_keeps_its_costs(captelemetry: TelemetryCapture) -> None:
    """The venue filled while the cancel was in flight: the fill's commission is real money."""
    o = order(captelemetry, quantity=100)
    o.canceled()
    o.fill(100, commission_usd=0.7)
    assert o.state == "canceled"
    assert math.isclose(captelemetry.counter("commission_usd", **BASE), 0.7)
    assert filled(captelemetry, "FILLED") == 0


def test_broker_rejects_and_risk_denials_are_kept_apart(captelemetry: TelemetryCapture) -> None:
    """rejected() counts orders_rejected{reason}; denied() counts risk_rejections{check_type} only."""
    a, b = order(captelemetry), order(captelemetry)
    a.intent()
    a.denied("max_notional")
    a.rejected("post_only")  # the order already ended
    b.submitted()
    b.rejected("post_only")
    assert (a.state, b.state) == ("denied", "rejected")
    captelemetry.assert_counter_rose("risk_rejections", by=1, **BASE, check_type="max_notional")
    captelemetry.assert_counter_rose("orders_rejected", by=1, **BASE, reason="post_only")


def test_nanosecond_integer_timestamps(captelemetry: TelemetryCapture) -> None:
    """Ints are nanoseconds (engine event times, time.monotonic_ns()): latencies exact to the nanosecond."""
    t0 = 1_700_000_000_123_456_789
    o = order(captelemetry, quantity=10)
    o.intent(at=t0)
    o.submitted(at=t0 + 250_000)
    o.acked(at=t0 + 1_250_001)
    o.fill(10, at=t0 + 3_000_000_000)
    assert latencies(captelemetry) == {
        "intent_to_submit_latency": (1, 0.00025),
        "submit_to_ack_latency": (1, 0.001000001),
        "ack_to_fill_latency": (1, 2.998749999),
        "total_fill_latency": (1, 3.0),
    }


def test_an_injected_nanosecond_clock_times_every_step(captelemetry: TelemetryCapture) -> None:
    """clock= may return ints (an engine's simulated clock): steps without at= read it."""
    ticks = iter([5_000_000_000, 5_002_000_000])
    o = order(captelemetry, clock=lambda: next(ticks))
    o.intent()
    o.submitted()
    assert latencies(captelemetry)["intent_to_submit_latency"] == (1, 0.002)


def test_bad_fill_quantities_are_rejected_with_the_value(captelemetry: TelemetryCapture) -> None:
    o = order(captelemetry, quantity=10)
    for bad in (0, -5, math.nan, math.inf, "10", True):
        with pytest.raises(InvalidValueError, match=r"quantity=.* is not a finite positive number"):
            o.fill(bad)  # type: ignore[arg-type]
    assert o.filled_quantity == 0


def test_fills_from_many_threads_count_once(captelemetry: TelemetryCapture) -> None:
    """8 threads report the same three fills (by trade id) of 200 orders, and a cancel after
    them: every order is FILLED once, each fill's commission counts once, no cancel counts."""
    orders = [order(captelemetry, quantity=300) for _ in range(200)]

    def broker() -> None:
        for o in orders:
            for n, qty in enumerate((100, 150, 50)):
                o.fill(qty, at=2.0 + n, fill_id=f"T{n}", commission_usd=0.25)
            o.canceled(at=9.0)

    race(broker, threads=8)
    assert filled(captelemetry, "FILLED") == 200
    assert captelemetry.counter("orders_canceled", **ORDER) == 0
    assert math.isclose(captelemetry.counter("commission_usd", **BASE), 200 * 3 * 0.25)
    assert captelemetry.histogram("slippage_bps", **BASE, direction="BUY").count == 0  # no reference price
    assert all(o.state == "filled" and o.filled_quantity == 300 for o in orders)
