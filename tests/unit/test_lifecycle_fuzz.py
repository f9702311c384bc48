"""Property-based attacks on OrderLifecycle's numbers, in both error regimes (part of the
fuzz suite with tests/unit/test_fuzz.py: derandomized, fixed example counts).

Orders and fills get quantities, prices, commissions, slippages, fill ids and times of
every type an engine or a careless caller passes: ints, floats (NaN and infinities
included), Decimals, numpy scalars, NautilusTrader's Quantity/Price/Money, bool, strings,
None, objects whose dunders raise. Each generated value carries its oracle: bad, or its
exact value and whether it is read as a float. The lifecycle must agree with it: nothing
but the documented InvalidValueError escapes (strict mode), nothing at all (production);
each bad fill is one drop under one of its bad parts' reasons and stores nothing; the order
completes iff its good fills reach its quantity (exactly, or within 1e-9 once a float is
involved); the commission counter moves by exactly the good fills' commissions.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.objects import Money, Price, Quantity

from hostile import FakesItsClass, HostileFloat, HostileStr, RaisesOnCompare, RaisesOnHash, RaisesOnRepr
from trading_telemetry import OrderLifecycle, PlaneMetrics, TelemetryConfig
from trading_telemetry._plane import build_plane
from trading_telemetry._safe import safe_repr
from trading_telemetry.catalog import Plane
from trading_telemetry.errors import InvalidValueError

EXAMPLES = 600  # per regime: a few seconds each
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
ORDER = {"strategy": "OFI", "symbol": "SPY", "direction": "BUY", "order_type": "LIMIT"}
BASE = {"strategy": "OFI", "symbol": "SPY"}
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Arg:
    """A generated argument and its oracle: ``exact`` is None for bad input, else the value
    the lifecycle must read (a float counts as its shortest repr), ``floaty`` whether it is
    read as a float (the tolerance applies)."""

    value: Any
    exact: Fraction | None
    floaty: bool = False

    def __repr__(self) -> str:
        return f"Arg({safe_repr(self.value)}, ok={self.exact is not None})"


def _float_arg(f: float, value: Any = None) -> Arg:
    return Arg(f if value is None else value, Fraction(Decimal(repr(f))), True)


# The good values: a positive decimal amount, then given as one type.
AMOUNTS = st.decimals(min_value=Decimal("0.001"), max_value=Decimal(1_000_000), places=3)


def _typed(d: Decimal, kind: str) -> Arg:
    text = f"{d:f}"
    if kind == "int":
        return Arg(max(1, int(d)), Fraction(max(1, int(d))))
    if kind == "numpy_int":
        return Arg(np.int64(max(1, int(d))), Fraction(max(1, int(d))))
    if kind == "decimal":
        return Arg(d, Fraction(d))
    if kind == "quantity":
        return Arg(Quantity.from_str(text), Fraction(d))
    if kind == "price":
        return Arg(Price.from_str(text), Fraction(d))
    if kind == "money":
        money = Money(d, USD)  # cents
        return Arg(money, Fraction(money.as_decimal()))
    if kind == "numpy":
        return _float_arg(float(d), np.float64(float(d)))
    if kind == "hostile_float":  # a float subclass whose comparisons raise: still its value
        return _float_arg(float(d), HostileFloat(float(d)))
    return _float_arg(float(d))


def good(*kinds: str) -> st.SearchStrategy[Arg]:
    return st.builds(_typed, AMOUNTS, st.sampled_from(kinds))


NUMBERS = ("int", "numpy_int", "float", "numpy", "hostile_float", "decimal")


def _made(factories: list[Callable[[], Any]]) -> st.SearchStrategy[Arg]:
    """A fresh bad value from ``factories`` (hypothesis hashes sampled elements: some refuse)."""
    return st.integers(0, len(factories) - 1).map(lambda i: Arg(factories[i](), None))


NOT_NUMBERS: list[Callable[[], Any]] = [
    lambda: True, lambda: False, lambda: math.nan, lambda: math.inf, lambda: -math.inf, lambda: "5", lambda: b"5",
    lambda: [5], lambda: Decimal("NaN"), lambda: Decimal("-Infinity"), lambda: Decimal("sNaN"),
    lambda: np.float64("nan"), lambda: np.float32("inf"), lambda: np.bool_(True), object, RaisesOnRepr, RaisesOnHash,
    RaisesOnCompare, FakesItsClass, lambda: HostileStr("5"),
]  # fmt: skip
NEGATIVE: list[Callable[[], Any]] = [
    lambda: -1, lambda: -0.5, lambda: Decimal("-0.1"), lambda: Price.from_str("-2.5"), lambda: np.int64(-3),
    lambda: Money(-1, USD),
]  # fmt: skip
ZERO: list[Callable[[], Any]] = [lambda: 0, lambda: 0.0, lambda: Decimal(0), lambda: Quantity.from_int(0)]


def part(ok: st.SearchStrategy[Any], bad: list[Callable[[], Any]], absent: bool) -> st.SearchStrategy[Any]:
    """Good 8 times in 10, else bad; or None (the argument not given) when ``absent``.
    (Weights need a draw: ``one_of`` keeps one of repeated strategies.)"""

    @st.composite
    def drawn(draw: st.DrawFn) -> Any:
        r = draw(st.integers(0, 9))
        if r == 0:
            return draw(_made(bad))
        if r == 1 and absent:
            return None
        return draw(ok)

    return drawn()


# For each part of a fill: (good values, absent included where it may be; bad values).
FILL_PARTS: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "quantity": (good(*NUMBERS, "quantity"), _made([*NOT_NUMBERS, *NEGATIVE, *ZERO, lambda: None, lambda: 10**40])),
    "price": (st.one_of(st.none(), good(*NUMBERS, "price")), _made([*NOT_NUMBERS, *NEGATIVE, *ZERO])),
    "commission": (
        st.one_of(st.none(), good(*NUMBERS, "money"), st.just(Arg(0, Fraction(0))), st.just(_float_arg(0.0))),
        _made([*NOT_NUMBERS, *NEGATIVE]),
    ),
    "slippage": (
        st.one_of(
            st.none(), st.floats(-1e4, 1e4).map(_float_arg), st.integers(-500, 500).map(lambda n: Arg(n, Fraction(n)))
        ),
        _made(NOT_NUMBERS),
    ),
    "fill_id": (
        st.one_of(st.none(), st.sampled_from(["T1", "T2", "T3"]), st.integers(1, 3)),
        _made([lambda: [1], dict, set, RaisesOnHash]),
    ),
    "at": (
        st.one_of(st.none(), st.floats(0, 10)),
        _made([lambda: math.nan, lambda: math.inf, lambda: "1", object, lambda: Decimal("1.5"), lambda: True]),
    ),
}
order_quantities = part(good(*NUMBERS, "quantity"), [*NOT_NUMBERS, *NEGATIVE, *ZERO], True)
references = part(good("float", "decimal", "price", "int"), [*NOT_NUMBERS, *NEGATIVE, *ZERO], True)


@dataclass
class Fill:
    quantity: Arg
    price: Arg | None
    commission: Arg | None
    slippage: Arg | None
    fill_id: Any
    at: Any

    def bad(self) -> set[tuple[str, str]]:
        """The (metric, reason) of each bad part: a drop must be counted under one of them."""
        out = set()
        if self.quantity.exact is None:
            out.add(("orders_filled", "invalid_quantity"))
        if self.price is not None and self.price.exact is None:
            out.add(("slippage_bps", "invalid_price"))
        if self.commission is not None and self.commission.exact is None:
            out.add(("commission_usd", "invalid_commission"))
        if self.slippage is not None and self.slippage.exact is None:
            out.add(("slippage_bps", "invalid_slippage"))
        if isinstance(self.fill_id, Arg):  # the bad ones come as Args
            out.add(("orders_filled", "invalid_fill_id"))
        if isinstance(self.at, Arg):
            out.add(("total_fill_latency", "invalid_timestamp"))
        return out

    def __call__(self, order: OrderLifecycle) -> None:
        def raw(arg: Any) -> Any:
            return arg.value if isinstance(arg, Arg) else arg

        order.fill(raw(self.quantity), raw(self.price), raw(self.at), fill_id=raw(self.fill_id),
                   commission_usd=raw(self.commission), slippage_bps=raw(self.slippage))  # fmt: skip


@st.composite
def fills(draw: st.DrawFn) -> Fill:
    """A fill with no bad part (most often), one, or several."""
    bad = set(draw(st.permutations(list(FILL_PARTS)))[: draw(st.sampled_from([0, 0, 0, 0, 1, 1, 2, 3]))])
    return Fill(**{name: draw(strategies[name in bad]) for name, strategies in FILL_PARTS.items()})


@dataclass
class Model:
    """What the lifecycle must have done with the good fills so far."""

    wanted: Arg | None
    seen: set[Any] = field(default_factory=set)
    quantities: list[Arg] = field(default_factory=list)

    def take(self, fill: Fill) -> bool:
        """Take a good fill; whether it is new (not a resent fill_id)."""
        if fill.fill_id is not None:
            if fill.fill_id in self.seen:
                return False
            self.seen.add(fill.fill_id)
        self.quantities.append(fill.quantity)
        return True

    def total(self) -> Fraction:
        return sum((q.exact for q in self.quantities if q.exact is not None), Fraction(0))

    def floaty(self) -> bool:
        return any(q.floaty for q in self.quantities) or (self.wanted is not None and self.wanted.floaty)

    def reached(self) -> bool | None:
        """True or False; None inside the float tolerance band, where either is right."""
        if self.wanted is None or self.wanted.exact is None:
            return False
        total, wanted = self.total(), self.wanted.exact
        if total >= wanted:
            return True
        if not self.floaty() or total < wanted * Fraction(1 - 2 * TOLERANCE):
            return False
        return None


def _as(total: Fraction, kind: str) -> Arg:
    """An order quantity of ``total`` (a sum of fills: a finite decimal) given as ``kind``."""
    with localcontext(prec=80):
        d = Decimal(total.numerator) / Decimal(total.denominator)
    if kind == "float":
        return _float_arg(float(d))
    if kind == "int" and total.denominator == 1:
        return Arg(int(total), total)
    if kind == "quantity" and d.as_tuple().exponent >= -16:  # type: ignore[operator]
        return Arg(Quantity.from_str(f"{d:f}"), total)
    return Arg(d, total)


def _commission(m: PlaneMetrics) -> float:
    return m.bind("commission_usd", **BASE).value  # type: ignore[attr-defined,no-any-return]


def _slippages(m: PlaneMetrics) -> int:
    return sum(m.bind("slippage_bps", **BASE, direction="BUY").snapshot()[0])  # type: ignore[attr-defined]


def _grew(before: dict[tuple[str, str], int], after: dict[tuple[str, str], int]) -> Counter[tuple[str, str]]:
    return Counter({k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)})


@pytest.fixture(params=[False, True], ids=["production", "strict"])
def plane(request: pytest.FixtureRequest) -> Iterator[PlaneMetrics]:
    """An Order plane in one regime, for every example of the property."""
    made = build_plane(Plane.ORDER, TelemetryConfig(strict=request.param, metrics_exporters=()))
    yield made
    made.shutdown()


def test_fills_of_every_type_are_whole_exact_and_counted(plane: PlaneMetrics) -> None:
    """Orders with quantities, prices, costs, ids and times of every type, in one regime:
    only the documented error (strict) or none (production); one drop per bad fill, under one
    of its bad parts' reasons, and nothing of it stored; completion iff the good fills reach the
    quantity; the commission counter moves by exactly the good new fills' commissions."""
    strict = plane.strict
    stats = Counter[str]()

    @FUZZ
    @given(
        given=order_quantities,
        plan=st.tuples(
            st.sampled_from(["given", "reached", "reached"]),
            st.integers(1, 8),
            st.sampled_from(["decimal", "float", "quantity", "int"]),
        ),
        reference=references,
        steps=st.lists(fills(), min_size=1, max_size=8),
        cancel_at=st.one_of(st.none(), st.integers(0, 8)),
    )
    def run(
        given: Arg | None, plan: tuple[str, int, str], reference: Arg | None, steps: list[Fill], cancel_at: int | None
    ) -> None:
        wanted = given
        mode, first, kind = plan
        if mode == "reached":  # the quantity the first good fills add up to: completion happens
            planned = Model(None)
            taken = [f.quantity for f in steps if not f.bad() and planned.take(f)][:first]
            if taken:
                wanted = _as(sum((q.exact for q in taken if q.exact is not None), Fraction(0)), kind)
        init_bad = set()
        if wanted is not None and wanted.exact is None:
            init_bad.add(("orders_filled", "invalid_quantity"))
        if reference is not None and reference.exact is None:
            init_bad.add(("slippage_bps", "invalid_price"))
        before = plane.policy.counts()
        refused: InvalidValueError | None = None
        try:
            order = OrderLifecycle(**ORDER, quantity=None if wanted is None else wanted.value,
                                   reference_price=None if reference is None else reference.value,
                                   metrics=plane, clock=lambda: 1.0)  # fmt: skip
        except InvalidValueError as error:
            refused = error
        if refused is not None:
            assert strict, refused
            assert (refused.metric, refused.reason) in init_bad
            stats["refused orders"] += 1
            return
        assert _grew(before, plane.policy.counts()) == ({} if strict else Counter(init_bad))
        model = Model(wanted if wanted is not None and wanted.exact is not None else None)
        slipped = reference is not None and reference.exact is not None
        commission, observations = _commission(plane), _slippages(plane)
        completed = False
        for k, fill in enumerate(steps):
            if k == cancel_at:
                order.canceled()
            bad = fill.bad()
            before = plane.policy.counts()
            raised: InvalidValueError | None = None
            try:
                fill(order)
            except InvalidValueError as error:
                raised = error
            if raised is not None:  # strict mode, and only for a bad fill
                assert strict, raised
                assert (raised.metric, raised.reason) in bad, (raised, bad)
                assert raised.metric in str(raised)
            else:
                assert not (strict and bad), bad
                grew = _grew(before, plane.policy.counts())
                assert sum(grew.values()) == (1 if bad else 0), (grew, bad)
                assert set(grew) <= bad
            if bad:
                stats["bad fills"] += 1
                continue
            stats["good fills"] += 1
            if model.take(fill):
                if fill.commission is not None:
                    commission += float(fill.commission.exact)  # type: ignore[arg-type]
                if fill.slippage is not None or (fill.price is not None and slipped):
                    observations += 1
            if not completed and (cancel_at is None or k < cancel_at):
                reached = model.reached()
                if reached is not None:
                    assert (order.state == "filled") is reached, (order.state, model.total(), wanted)
                completed = order.state == "filled"
        assert _commission(plane) == commission
        assert _slippages(plane) == observations
        total = model.total()
        if model.floaty():
            assert math.isclose(float(order.filled_quantity), float(total), rel_tol=1e-12)
        else:
            assert Fraction(order.filled_quantity) == total
        if completed:
            stats["completed"] += 1
            assert order.state == "filled"
        elif cancel_at is not None and cancel_at < len(steps):
            assert order.state == "canceled"

    run()
    # Every branch was taken, many times over.
    assert stats["bad fills"] >= EXAMPLES // 2
    assert stats["good fills"] >= EXAMPLES
    assert stats["completed"] >= EXAMPLES // 10
    if strict:
        assert stats["refused orders"] >= EXAMPLES // 20
