"""OrderLifecycle with the numbers trading engines pass (ints, floats, Decimals, numpy,
NautilusTrader's Quantity/Price/Money), each fill recorded whole or dropped whole, fills
after the order's end, and label values that only a plain string can stand for."""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.objects import Money, Price, Quantity

from hostile import Alias
from trading_telemetry import OrderLifecycle, PlaneMetrics, TelemetryConfig
from trading_telemetry._plane import build_plane
from trading_telemetry.catalog import Plane
from trading_telemetry.errors import InvalidValueError, LabelError
from trading_telemetry.lifecycle import LATE_FILLS_KEPT
from trading_telemetry.testing import TelemetryCapture

ORDER = {"strategy": "OFI", "symbol": "SPY", "direction": "BUY", "order_type": "LIMIT"}
BASE = {"strategy": "OFI", "symbol": "SPY"}
_planes: list[PlaneMetrics] = []


def plane(strict: bool) -> PlaneMetrics:
    """An Order plane in the given mode, shut down after the test."""
    made = build_plane(Plane.ORDER, TelemetryConfig(strict=strict, metrics_exporters=()))
    _planes.append(made)
    return made


@pytest.fixture(autouse=True)
def _shutdown_planes() -> Iterator[None]:
    yield
    while _planes:
        _planes.pop().shutdown()


def order(m: PlaneMetrics | TelemetryCapture, **kw: Any) -> OrderLifecycle:
    metrics = m.plane("order_plane") if isinstance(m, TelemetryCapture) else m
    return OrderLifecycle(**ORDER, metrics=metrics, **kw)


def commission(m: PlaneMetrics) -> float:
    return m.bind("commission_usd", **BASE).value  # type: ignore[attr-defined,no-any-return]


def slippage_count(m: PlaneMetrics) -> int:
    return sum(m.bind("slippage_bps", **BASE, direction="BUY").snapshot()[0])  # type: ignore[attr-defined]


def filled_count(m: PlaneMetrics, status: str = "FILLED") -> float:
    return m.bind("orders_filled", **BASE, direction="BUY", status=status).value  # type: ignore[attr-defined,no-any-return]


# -- numbers ---------------------------------------------------------------------------


def test_a_decimal_order_completes_exactly() -> None:
    """A Decimal quantity is reached by Decimal fills that add up to it exactly, and not before."""
    m = plane(strict=True)
    o = order(m, quantity=Decimal("0.3"))
    o.fill(Decimal("0.1"))
    o.fill(Decimal("0.1"))
    assert o.state == "partially_filled"
    o.fill(Decimal("0.1"))
    assert o.state == "filled"
    assert o.filled_quantity == Decimal("0.3")
    assert filled_count(m) == 1


def test_nautilus_quantity_price_and_money_are_taken_as_they_come() -> None:
    """NautilusTrader's own Quantity, Price and Money objects: exact completion, slippage from
    the Price against a Price reference, commission from Money."""
    m = plane(strict=True)
    o = order(m, quantity=Quantity.from_str("0.300"), reference_price=Price.from_str("100.00"))
    o.fill(Quantity.from_str("0.100"), price=Price.from_str("100.01"), commission_usd=Money(0.25, USD))
    o.fill(Quantity.from_str("0.200"), price=Price.from_str("100.00"), commission_usd=Money(0.5, USD))
    assert o.state == "filled"
    assert o.quantity == Decimal("0.300")
    assert o.filled_quantity == Decimal("0.300")
    assert commission(m) == 0.75
    counts, total, _, _ = m.bind("slippage_bps", **BASE, direction="BUY").snapshot()  # type: ignore[attr-defined]
    assert (sum(counts), round(total, 6)) == (2, 1.0)  # +1 bp, then 0 bp


@pytest.mark.parametrize(
    ("wanted", "fills"),
    [
        (0.3, [0.1, 0.2]),  # float rounding: 0.30000000000000004
        (1.0, [0.7, 0.2, 0.1]),  # 0.9999999999999999
        (0.3, [0.1, Decimal("0.2")]),
        (Decimal("0.3"), [0.1, 0.2]),
        (300, [Decimal(100), 200.0]),
        (Quantity.from_str("0.3"), [0.1, Quantity.from_str("0.2")]),
        (np.float64(0.3), [np.float64(0.1), np.int64(0) + 0.2]),
        (10, [np.int64(4), 6]),
    ],
)
def test_fractions_and_mixes_complete_when_the_fills_reach_the_quantity(wanted: Any, fills: list[Any]) -> None:
    """Ints, floats, Decimals, numpy scalars and Quantities in any mix: the order completes at
    the fill that reaches its quantity, not before, and nothing is dropped."""
    m = plane(strict=True)
    o = order(m, quantity=wanted)
    for fill in fills[:-1]:
        o.fill(fill)
        assert o.state == "partially_filled"
    o.fill(fills[-1])
    assert o.state == "filled"
    assert m.policy.counts() == {}


def test_ints_and_decimals_are_exact_where_a_float_tolerance_would_not_be() -> None:
    """One unit short of a 10^12 int (or a Decimal with 12 places short by its last one) is
    not complete: the float tolerance applies only when a float is involved."""
    m = plane(strict=True)
    a = order(m, quantity=10**12)
    a.fill(10**12 - 1)
    assert a.state == "partially_filled"
    a.fill(1)
    assert a.state == "filled"
    b = order(m, quantity=Decimal("1000.000000000001"))
    b.fill(Decimal("1000.000000000000"))
    assert b.state == "partially_filled"
    b.fill(Decimal("0.000000000001"))
    assert b.state == "filled"
    c = order(m, quantity=float(10**12))
    c.fill(10**12 - 1)  # a float quantity: within 1e-9 of it
    assert c.state == "filled"


NOT_NUMBERS = [True, False, math.nan, math.inf, -math.inf, "10", b"1", [1], object(), Decimal("NaN"),
               Decimal("Infinity"), np.float64(math.nan)]  # fmt: skip
NEGATIVE = [-1, -0.5, Decimal("-1"), Price.from_str("-1.5")]
BAD_PARTS = {
    "quantity": [*NOT_NUMBERS, *NEGATIVE, None, 0, 0.0, Quantity.from_int(0), 10**40],
    "price": [*NOT_NUMBERS, *NEGATIVE, 0],
    "commission_usd": [*NOT_NUMBERS, *NEGATIVE, Money(-1, USD)],
    "slippage_bps": [*NOT_NUMBERS, 10**400],
    "at": [*NOT_NUMBERS, Decimal("1.5")],
}
PART_COUNTED_AS = {
    "quantity": ("orders_filled", "invalid_quantity"),
    "price": ("slippage_bps", "invalid_price"),
    "commission_usd": ("commission_usd", "invalid_commission"),
    "slippage_bps": ("slippage_bps", "invalid_slippage"),
    "at": ("total_fill_latency", "invalid_timestamp"),
}


@pytest.mark.parametrize(("part", "bad"), [(p, b) for p, bads in BAD_PARTS.items() for b in bads], ids=repr)
def test_a_bad_part_drops_the_whole_fill(part: str, bad: Any) -> None:
    """Whatever part of a fill is bad: strict mode raises naming the metric, the part and the
    value; production counts one drop under that reason; in both, nothing of the fill is
    stored (no quantity, commission, slippage or completion), and its readable resend counts."""
    metric, reason = PART_COUNTED_AS[part]
    args: dict[str, Any] = {"quantity": 10, "price": 100.5, "commission_usd": 0.5, "slippage_bps": None, "at": 2.0}
    args[part] = bad
    if part == "price":
        args["slippage_bps"] = None  # computed from the price
    for strict in (True, False):
        m = plane(strict)
        o = order(m, quantity=10, reference_price=100.0)

        def call(o: OrderLifecycle = o) -> None:
            o.fill(args["quantity"], args["price"], args["at"], fill_id="T-1", commission_usd=args["commission_usd"],
                   slippage_bps=args["slippage_bps"])  # fmt: skip

        if strict:
            with pytest.raises(InvalidValueError) as raised:
                call()
            assert (raised.value.metric, raised.value.reason) == (metric, reason)
            text = str(raised.value)
            assert metric in text
            assert f"{'timestamp at' if part == 'at' else part}=" in text
        else:
            call()
            assert m.policy.counts() == {(metric, reason): 1}
        assert (o.state, o.filled_quantity, commission(m), slippage_count(m)) == ("new", 0, 0, 0)
        o.fill(10, 100.5, 2.0, fill_id="T-1", commission_usd=0.5)  # resent, readable: counted in full
        assert (o.state, o.filled_quantity, commission(m), slippage_count(m)) == ("filled", 10, 0.5, 1)


def test_an_unreadable_price_no_longer_loses_the_commission() -> None:
    """A price float() cannot read: the fill is dropped whole (before, its quantity was kept
    and its commission lost, so the order never completed with its costs)."""
    m = plane(strict=False)
    o = order(m, quantity=100, reference_price=50.0)
    o.fill(100, price="n/a", commission_usd=0.5, fill_id="T-1")
    assert (o.state, o.filled_quantity, commission(m)) == ("new", 0, 0)
    assert m.policy.counts() == {("slippage_bps", "invalid_price"): 1}
    o.fill(100, price=50.01, commission_usd=0.5, fill_id="T-1")
    assert (o.state, commission(m), filled_count(m)) == ("filled", 0.5, 1)


def test_an_unhashable_fill_id_drops_the_fill() -> None:
    """fill_id must be hashable: a list is refused as invalid_fill_id; a str subclass is its characters."""
    m = plane(strict=False)
    o = order(m, quantity=10)
    o.fill(5, fill_id=["T-1"])
    assert m.policy.counts() == {("orders_filled", "invalid_fill_id"): 1}

    class TradeId(str):
        def __hash__(self) -> int:
            raise RuntimeError("hostile")

    o.fill(5, fill_id=TradeId("T-1"))
    o.fill(5, fill_id="T-1")  # the same fill
    assert (o.state, o.filled_quantity) == ("partially_filled", 5)


@pytest.mark.parametrize("bad", [math.nan, -1, "300", True, object(), Decimal("sNaN")], ids=repr)
def test_bad_order_quantity_and_reference_price(bad: Any) -> None:
    """A bad quantity or reference price: strict mode raises at construction (or on setting it);
    production counts it, and the order goes on without it (or with the one it had)."""
    with pytest.raises(InvalidValueError, match=r"orders_filled: OrderLifecycle: quantity="):
        order(plane(strict=True), quantity=bad)
    with pytest.raises(InvalidValueError, match=r"slippage_bps: OrderLifecycle: reference_price="):
        order(plane(strict=True), reference_price=bad)
    m = plane(strict=False)
    o = order(m, quantity=bad, reference_price=bad)
    assert (o.quantity, o.reference_price) == (None, None)
    assert m.policy.counts() == {("orders_filled", "invalid_quantity"): 1, ("slippage_bps", "invalid_price"): 1}
    o.quantity = 10
    o.quantity = bad
    assert o.quantity == 10
    o.fill(10)
    assert o.state == "filled"


def test_filled_checks_its_costs_before_ending_the_order() -> None:
    """filled() with a bad commission is dropped whole (the order does not end); Decimal costs are taken."""
    m = plane(strict=False)
    o = order(m)
    o.filled(commission_usd=-0.35)
    assert not o.ended
    assert m.policy.counts() == {("commission_usd", "invalid_commission"): 1}
    o.filled(commission_usd=Decimal("0.35"), slippage_bps=Decimal("-0.5"))
    assert (o.state, commission(m), slippage_count(m)) == ("filled", 0.35, 1)


# -- after the end -----------------------------------------------------------------------


def test_fills_after_the_end_count_once_and_are_bounded() -> None:
    """After a cancel, a new fill (it raced the cancel) records its costs once, however often it
    is resent; an order takes at most LATE_FILLS_KEPT late fills, the rest are counted as
    late_fill_limit drops and not kept."""
    m = plane(strict=False)
    o = order(m, quantity=100)
    o.fill(40, fill_id="T-1", commission_usd=0.4)
    o.canceled()
    for _ in range(3):
        o.fill(40, fill_id="T-1", commission_usd=0.4)  # resent: the same fill
        o.fill(60, fill_id="T-2", commission_usd=0.6)  # raced the cancel: real money, once
    assert math.isclose(commission(m), 1.0)
    assert o.state == "canceled"
    assert filled_count(m, "PARTIAL_FILL") == 1
    assert filled_count(m) == 0
    for k in range(LATE_FILLS_KEPT + 9):  # T-2 was the first late fill: 10 too many
        o.fill(1, fill_id=f"L-{k}", commission_usd=1.0)
    assert len(o._times["fills"]) == 1 + LATE_FILLS_KEPT
    assert m.policy.counts() == {("orders_filled", "late_fill_limit"): 10}
    assert math.isclose(commission(m), 1.0 + LATE_FILLS_KEPT - 1)


def test_a_fill_resent_after_the_order_completed_counts_nothing() -> None:
    """The completing fill reported again after the end adds no quantity, cost or second FILLED."""
    m = plane(strict=True)
    o = order(m, quantity=Decimal(5), reference_price=10.0)
    o.fill(Decimal(5), price=10.1, fill_id="T-1", commission_usd=0.3)
    o.fill(Decimal(5), price=10.1, fill_id="T-1", commission_usd=0.3)
    assert (o.filled_quantity, commission(m), slippage_count(m), filled_count(m)) == (5, 0.3, 1, 1)


# -- label values --------------------------------------------------------------------


class Liar(str):
    """A string whose characters are one value, claiming to equal every other."""

    def __hash__(self) -> int:
        return hash("OFI")

    def __eq__(self, other: object) -> bool:
        return True


def test_an_object_passing_for_a_cached_label_is_refused() -> None:
    """Once the order handles of OFI/SPY/BUY/LIMIT and the reason post_only are cached, an
    object hashing and comparing equal to those strings is still refused in strict mode
    (naming metric, label and value) and dropped in production."""
    strict = plane(strict=True)
    order(strict).rejected("post_only")
    with pytest.raises(LabelError, match=r"label strategy=Alias\('OFI'\)"):
        OrderLifecycle(**{**ORDER, "strategy": Alias("OFI")}, metrics=strict)
    with pytest.raises(LabelError, match=r"orders_rejected: label reason=Alias\('post_only'\)"):
        order(strict).rejected(Alias("post_only"))  # type: ignore[arg-type]
    with pytest.raises(LabelError, match=r"orders_filled: label status=Alias\('FILLED'\)"):
        order(strict).filled(status=Alias("FILLED"))  # type: ignore[arg-type]
    production = plane(strict=False)
    order(production).rejected("post_only")
    o = OrderLifecycle(**{**ORDER, "symbol": Alias("SPY")}, metrics=production)
    o.intent()
    order(production).rejected(Alias("post_only"))  # type: ignore[arg-type]
    counts = production.policy.counts()
    assert counts[("orders_received", "invalid_label_value")] == 1
    assert counts[("orders_rejected", "invalid_label_value")] == 1
    assert production.bind("orders_rejected", **BASE, reason="post_only").value == 1  # type: ignore[attr-defined]


def test_a_str_subclass_counts_as_its_characters() -> None:
    """A str subclass (a StrEnum member, or one that lies in __eq__/__hash__) is the label its
    characters spell."""
    m = plane(strict=True)
    order(m).intent()
    OrderLifecycle(**{**ORDER, "strategy": Liar("MOM")}, metrics=m).intent()
    received = {"symbol": "SPY", "direction": "BUY", "order_type": "LIMIT"}
    assert m.bind("orders_received", strategy="OFI", **received).value == 1  # type: ignore[attr-defined]
    assert m.bind("orders_received", strategy="MOM", **received).value == 1  # type: ignore[attr-defined]


def test_mixed_number_types_from_many_threads_complete_once() -> None:
    """8 threads report the same three fills of 200 orders, one as a Decimal and two as floats
    (or ints), then cancel: every order completes once, each commission counts once."""
    import threading

    m = plane(strict=True)
    orders = [order(m, quantity=0.3 if k % 2 else Decimal("0.3")) for k in range(200)]
    barrier = threading.Barrier(8)

    def broker() -> None:
        barrier.wait()
        for o in orders:
            for n, qty in enumerate((0.1, Decimal("0.1"), 0.1)):
                o.fill(qty, fill_id=f"T{n}", commission_usd=Decimal("0.25"))
            o.canceled()

    threads = [threading.Thread(target=broker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert filled_count(m) == 200
    assert m.bind("orders_canceled", **ORDER).value == 0  # type: ignore[attr-defined]
    assert commission(m) == 200 * 3 * 0.25
    assert all(o.state == "filled" and o.filled_quantity == Decimal("0.3") for o in orders)
