"""Hypothesis strategies for what a careless or hostile caller passes: objects whose
dunders raise, non-string label values, lone surrogates, control characters, megabyte
strings, huge ints, Decimal, Fraction, numpy scalars, bool, None, NaN and infinities."""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
from hypothesis import strategies as st

from helpers import LABEL_VALUES


class Boom(Exception):
    """What the hostile objects raise."""


class Alias:
    """Not a string, but hashes and compares equal to one: it must never pass for a cached label."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __hash__(self) -> int:
        return hash(self.text)

    def __eq__(self, other: object) -> bool:
        return other == self.text

    def __repr__(self) -> str:
        return f"Alias({self.text!r})"


def _boom(*_: Any) -> Any:
    raise Boom("hostile dunder")


class RaisesOnRepr:
    __repr__ = __str__ = _boom


class RaisesOnHash:
    __hash__ = _boom  # type: ignore[assignment]
    __eq__ = _boom  # type: ignore[assignment]


class RaisesOnCompare:
    __lt__ = __le__ = __gt__ = __ge__ = __eq__ = _boom  # type: ignore[assignment]
    __hash__ = object.__hash__  # type: ignore[assignment]
    __float__ = __int__ = __index__ = __bool__ = _boom


class FakesItsClass:
    """``__class__`` itself raises (``type()`` still tells the truth)."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # type: ignore[override]
        raise Boom("__class__")

    __repr__ = _boom


class HostileStr(str):
    """A str subclass whose every extra behaviour raises."""

    __hash__ = _boom  # type: ignore[assignment]
    __eq__ = __str__ = __repr__ = __len__ = __bool__ = _boom  # type: ignore[assignment]


class HostileFloat(float):
    __le__ = __ge__ = __lt__ = __gt__ = __repr__ = _boom  # type: ignore[assignment]


class HostileMapping(dict):  # type: ignore[type-arg]
    __setitem__ = __getitem__ = items = get = __iter__ = _boom  # type: ignore[assignment]


_HOSTILE: list[Callable[[], object]] = [
    RaisesOnRepr,
    RaisesOnHash,
    RaisesOnCompare,
    FakesItsClass,
    lambda: HostileStr("SPY"),
    lambda: HostileFloat(1.0),
]


def _made(factories: list[Callable[[], object]]) -> st.SearchStrategy[Any]:
    """A fresh object from one of ``factories`` (hypothesis hashes sampled elements: these refuse)."""
    return st.integers(0, len(factories) - 1).map(lambda i: factories[i]())


hostile_objects = _made(_HOSTILE)

MEGABYTE = "x" * (1 << 20)

weird_text = st.one_of(
    st.text(max_size=30),
    st.text(st.characters(min_codepoint=0, max_codepoint=0x1F), min_size=1, max_size=5),
    st.sampled_from(["bad\ud800", "\udfff", "a\x00b", 'q"uo\\te\n', "é€😀", " ", "", MEGABYTE, "y" * 257]),
)

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from([0, 1, -1, 10**308, 2**1024, -(10**308), 1e308, -1e308, math.nan, math.inf, -math.inf]),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.fractions(),
    st.sampled_from([Fraction(1, 3), Decimal("0.1"), np.float64(0.25), np.float32(math.nan), np.int64(7)]),
    st.sampled_from([np.uint8(3), np.float64(math.inf), np.int64(-5)]),
)

values = st.one_of(
    st.floats(min_value=0, max_value=1),  # often valid
    numbers,
    st.booleans(),
    st.none(),
    weird_text,
    hostile_objects,
    st.lists(st.integers(), max_size=2),
)

good_label_values = st.sampled_from([*sorted(set(LABEL_VALUES.values())), "QQQ", "ibkr_hist", "SELL", "MARKET"])

label_values = st.one_of(
    good_label_values,
    good_label_values,
    weird_text,
    st.integers(),
    st.none(),
    st.booleans(),
    hostile_objects,
    st.lists(st.text(max_size=3), max_size=2),
)

carriers = st.one_of(
    st.dictionaries(st.text(max_size=12), st.one_of(st.text(max_size=60), st.integers(), hostile_objects), max_size=4),
    st.just({"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01", "tracestate": MEGABYTE}),
    st.just({"traceparent": " " * (1 << 16) + "00"}),
    st.sampled_from([None, 5, "traceparent", ()]),
    _made([lambda: [("traceparent", "x")], HostileMapping, RaisesOnHash]),
)
