"""The numbers an order's quantities, prices and costs arrive as, read without trusting them.

Trading engines pass their own types: ``Decimal``, NautilusTrader's ``Quantity``, ``Price``
and ``Money`` (anything with ``as_decimal()``), numpy scalars, ``Fraction``. Each is read
into an ``int``, a ``float`` or a ``Decimal``, or refused (None): ``bool``, strings,
``None``, NaN, infinities, other objects, and any value whose dunders raise. Ints and
Decimals stay exact; other real numbers become floats.
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Iterable
from decimal import MAX_EMAX, MIN_EMIN, ROUND_FLOOR, Context, Decimal
from typing import Any

__all__ = [
    "EXACT",
    "QUANTITY_LIMIT",
    "TOLERANCE",
    "TOLERANT",
    "Number",
    "amount",
    "exact_total",
    "number",
    "price",
    "quantity",
    "reached",
    "real",
]

Number = int | float | Decimal

TOLERANCE = 1e-9
"""An order whose quantities involve a float is complete once its fills reach its
quantity within this relative tolerance (0.1 + 0.2 fills 0.3); ints and Decimals are exact."""
TOLERANT = 1 - TOLERANCE
_TOLERANT_DECIMAL = Decimal(1) - Decimal(repr(TOLERANCE))

QUANTITY_LIMIT = 10**30
"""Exact quantities (ints, Decimals) are below this."""
_LIMIT_DECIMAL = Decimal(QUANTITY_LIMIT)

EXACT = Context(prec=100, rounding=ROUND_FLOOR, Emin=MIN_EMIN, Emax=MAX_EMAX, traps=[])
"""The context sums of quantities are made in (never the caller's thread context): exact
to 100 significant digits; beyond, rounded down, so that an order never completes early."""
_ZERO = Decimal(0)


def number(value: object) -> Number | None:
    """``value`` as an int, float or Decimal if it is a finite real number; else None."""
    try:
        kind = type(value)
        result: object
        if kind is float or kind is int or kind is Decimal:
            result = value
        elif kind is bool:
            return None
        elif (as_decimal := getattr(kind, "as_decimal", None)) is not None:  # an engine's Quantity, Price, Money
            result = as_decimal(value)
        elif isinstance(value, Decimal):
            result = Decimal(value)
        elif isinstance(value, float):  # numpy.float64: its value, whatever the subclass overrides
            result = float.__float__(value)
        elif isinstance(value, int):
            result = int.__int__(value)
        elif isinstance(value, numbers.Integral):  # numpy ints
            result = operator.index(value)
        elif isinstance(value, numbers.Real):  # Fraction, numpy.float32
            result = float(value)
        else:
            return None
        kind = type(result)
        if kind is int:
            return result  # type: ignore[return-value]
        if kind is float:
            return result if result - result == 0.0 else None  # type: ignore[operator,return-value]
        if kind is Decimal:
            return result if result.is_finite() else None  # type: ignore[attr-defined,return-value]
    except Exception:  # noqa: BLE001 - a hostile number is no number
        pass
    return None


def quantity(value: object) -> Number | None:
    """A quantity: a positive number; ints and Decimals below QUANTITY_LIMIT."""
    q = number(value)
    kind = type(q)
    if kind is float:
        return q if q > 0 else None  # type: ignore[operator]
    if kind is int:
        return q if 0 < q < QUANTITY_LIMIT else None  # type: ignore[operator]
    if kind is Decimal:
        return q if 0 < q < _LIMIT_DECIMAL else None  # type: ignore[operator]
    return None


def _float(value: object) -> float | None:
    n = number(value)
    if n is None:
        return None
    try:
        f = float(n)
    except OverflowError:  # an int beyond a float
        return None
    return f if f - f == 0.0 else None


def price(value: object) -> float | None:
    """A price as a float: positive and finite."""
    p = _float(value)
    return p if p is not None and p > 0 else None


def amount(value: object) -> float | None:
    """A cost (a commission) as a float: finite, not negative."""
    a = _float(value)
    return a if a is not None and a >= 0 else None


def real(value: object) -> float | None:
    """Any finite number as a float (slippage: negative is a price improvement)."""
    return _float(value)


def exact_total(quantities: Iterable[Any]) -> tuple[Decimal, bool]:
    """The exact sum of ``quantities`` and whether a float was among them (floats count as
    their shortest decimal repr: 0.1 is 0.1)."""
    total = _ZERO
    tolerant = False
    add = EXACT.add
    for q in quantities:
        if type(q) is float:
            tolerant = True
            q = Decimal(repr(q))
        total = add(total, q)
    return total, tolerant


def reached(quantities: Iterable[Any], wanted: Any) -> bool:
    """Whether ``quantities`` add up to ``wanted``: exactly, or within TOLERANCE when a float
    is involved."""
    total, tolerant = exact_total(quantities)
    if type(wanted) is float:
        tolerant = True
        wanted = Decimal(repr(wanted))
    return total >= (EXACT.multiply(wanted, _TOLERANT_DECIMAL) if tolerant else wanted)
