"""Native histogram buckets: base-2 exponential, sparse, with a bounded bucket count.

One layout serves every path: Prometheus' native histograms (schema ``-4 … 8``) on /metrics
and OpenTelemetry's exponential histograms (scale) on the push paths. At scale ``s`` the
bucket base is ``2 ** (2 ** -s)``; bucket ``i`` holds the values in ``(base**i, base**(i+1)]``
(OpenTelemetry's index; Prometheus numbers the same bucket ``i + 1``). A series starts at
``MAX_SCALE`` (Prometheus' finest schema, about 0.27 % wide buckets) and, as OpenTelemetry's
``max_size`` does, halves its resolution whenever the observations would need more than
``MAX_BUCKETS`` buckets on either side of zero: the count per series is bounded, the
relative error at any quantile is at most ``base - 1`` over 2.

Zero and values below ``ZERO_THRESHOLD`` in size go to the zero bucket; negative values to
the negative buckets, mirrored. The counts of each side are one ``array`` of 4-byte
unsigned integers from the side's first index (8-byte ones once a bucket passes 2**32 - 1
observations): no Python object per bucket, at most 640 bytes of counts per side.

The index of a value is OpenTelemetry's ``LogarithmMapping`` / ``ExponentMapping``: exact
at powers of two, ``floor(log(value) * 2**scale / ln 2)`` otherwise. ``add`` computes
``log2(value) * 2**scale`` (``math.log2`` is a cheaper call than ``math.log``) and takes its
floor when it lies more than 1e-6 from an integer, where the two formulas cannot disagree;
within 1e-6 of a bucket boundary, where a power of two or a rounding difference can be, it
takes the exact path (``index_of``): the same index as ``index_of`` for every value, at the
cost of one logarithm.
``tests/unit/test_native.py`` keeps the SDK's exponential aggregation as the oracle.
"""

from __future__ import annotations

import math
from array import array
from typing import NamedTuple

__all__ = ["MAX_BUCKETS", "MAX_SCALE", "ZERO_THRESHOLD", "NativeBuckets", "NativeSnapshot", "index_of"]

MAX_SCALE = 8
"""The finest scale (Prometheus schema) a series starts at."""

MAX_BUCKETS = 160
"""Most buckets per side of zero, as OpenTelemetry's default ``max_size``."""

MIN_SCALE = -4
"""The coarsest scale Prometheus stores; a series needing coarser keeps it and grows past
MAX_BUCKETS (never happens below 2**(16*160) in range)."""

ZERO_THRESHOLD = 0.0
"""Values whose size is at most this go to the zero bucket: exactly zero, as OpenTelemetry."""

_LOG2E = 1 / math.log(2)
_log2, _floor = math.log2, math.floor

_NEAR, _FAR = 1e-6, 1 - 1e-6
"""``add`` takes the exact path when ``log2(value) * 2**scale`` is this close to an integer
(a bucket boundary). Elsewhere its floor is the exact index: ``log2`` and OpenTelemetry's
``log(value) * 2**scale / ln 2`` differ by a few units in the last place (below 1e-9 for
every float), far less than the distance to the integer."""

_FACTORS = {scale: 2.0**scale if scale > 0 else 0.0 for scale in range(MIN_SCALE, MAX_SCALE + 1)}
"""``2**scale`` by scale, shared by every series; 0.0 at scales <= 0, which have no
logarithm path (``add`` then always finds itself at a boundary and takes the exact one)."""

_WIDER = {"I": "Q"}
"""The next wider unsigned type of a side's counts, for a count that no longer fits."""

_EMPTY: array[int] = array("I")
"""A side without buckets, shared by every series: never changed in place."""


def index_of(value: float, scale: int) -> int:
    """The bucket index of a positive ``value`` at ``scale`` (OpenTelemetry's)."""
    mantissa, exponent = math.frexp(value)  # value = mantissa * 2**exponent, mantissa in [0.5, 1)
    if mantissa == 0.5:  # an exact power of two closes its bucket
        return ((exponent - 1) << scale) - 1 if scale > 0 else (exponent - 2) >> -scale
    if scale > 0:
        return math.floor(math.log(value) * _LOG2E * (1 << scale))
    return (exponent - 1) >> -scale


class NativeSnapshot(NamedTuple):
    """One series' native buckets at one instant; counts are per bucket (not cumulative)."""

    scale: int
    zero_count: int
    positive_offset: int
    positive: tuple[int, ...]
    negative_offset: int
    negative: tuple[int, ...]


class NativeBuckets:
    """The native buckets of one series. Not thread-safe: the histogram handle calls
    ``add`` and ``snapshot`` under its lock."""

    __slots__ = ("_neg", "_neg_offset", "_pos", "_pos_offset", "_pos_shift", "_scale_factor", "scale", "zero_count")

    def __init__(self) -> None:
        self.scale = MAX_SCALE
        self._scale_factor = _FACTORS[MAX_SCALE]
        self.zero_count = 0
        self._pos = self._neg = _EMPTY
        self._pos_offset = self._neg_offset = 0
        self._pos_shift = 0.0  # float(_pos_offset), for add's fast path

    def add(self, value: float) -> None:
        """Count one observation (a finite float or int)."""
        if value > ZERO_THRESHOLD:
            # The fast path of a latency: the bucket's position in the window straight from
            # the logarithm, when it is not at a boundary and the window already holds it.
            x = _log2(value) * self._scale_factor - self._pos_shift
            if x > 0.0:
                position = _floor(x)
                if _NEAR < x - position < _FAR:
                    try:
                        self._pos[position] += 1
                        return
                    except IndexError:  # past the window's end
                        pass
                    except OverflowError:  # the count needs a wider type
                        self._pos = _bumped(array(_WIDER[self._pos.typecode], self._pos), position)
                        return
            self._count(value, negative=False)
        elif value < -ZERO_THRESHOLD:
            self._count(-value, negative=True)
        else:
            self.zero_count += 1

    def _index(self, value: float) -> int:
        """``index_of(value, self.scale)``, from the logarithm alone when not at a boundary."""
        x = _log2(value) * self._scale_factor
        index = _floor(x)
        if _NEAR < x - index < _FAR:
            return index
        return index_of(value, self.scale)

    def _count(self, magnitude: float, negative: bool) -> None:
        """Count one observation of size ``magnitude`` on one side: in its window, or widening it."""
        index = self._index(magnitude)
        offset, counts = (self._neg_offset, self._neg) if negative else (self._pos_offset, self._pos)
        position = index - offset
        if not 0 <= position < len(counts):
            self._widen(magnitude, index, negative)
        elif negative:
            self._neg = _bumped(counts, position)
        else:
            self._pos = _bumped(counts, position)

    def _widen(self, magnitude: float, index: int, negative: bool) -> None:
        """Count ``magnitude``, at ``index`` outside the side's window: grow the window, or
        first lower the scale until the side fits in MAX_BUCKETS and index it again there,
        as the SDK does (``index >> change`` can differ by one where the logarithm rounds
        onto a boundary)."""
        offset, counts = (self._neg_offset, self._neg) if negative else (self._pos_offset, self._pos)
        if counts:
            low, high = min(index, offset), max(index, offset + len(counts) - 1)
            change = 0
            while (high >> change) - (low >> change) + 1 > MAX_BUCKETS and self.scale - change > MIN_SCALE:
                change += 1
            if change:
                self._downscale(change)
                index = self._index(magnitude)
                offset, counts = (self._neg_offset, self._neg) if negative else (self._pos_offset, self._pos)
        if not counts:
            offset, counts = index, array("I", [0])
        elif index < offset:
            counts = array(counts.typecode, [0]) * (offset - index) + counts
            offset = index
        elif index >= offset + len(counts):
            counts.extend([0] * (index - offset - len(counts) + 1))
        counts = _bumped(counts, index - offset)
        if negative:
            self._neg_offset, self._neg = offset, counts
        else:
            self._pos_offset, self._pos, self._pos_shift = offset, counts, float(offset)

    def _downscale(self, change: int) -> None:
        """Halve the resolution ``change`` times: bucket ``i`` becomes ``i >> change``."""
        self._pos_offset, self._pos = _merged(self._pos_offset, self._pos, change)
        self._pos_shift = float(self._pos_offset)
        self._neg_offset, self._neg = _merged(self._neg_offset, self._neg, change)
        self.scale -= change
        self._scale_factor = _FACTORS[self.scale]

    def snapshot(self) -> NativeSnapshot:
        pos, neg = self._pos, self._neg
        return NativeSnapshot(self.scale, self.zero_count, self._pos_offset, tuple(pos), self._neg_offset, tuple(neg))

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]


def _bumped(counts: array[int], position: int) -> array[int]:
    """``counts`` with one more at ``position``: in place, or in a copy of a wider type
    when the count no longer fits."""
    try:
        counts[position] += 1
    except OverflowError:
        return _bumped(array(_WIDER[counts.typecode], counts), position)
    return counts


def _packed(counts: list[int]) -> array[int]:
    """``counts`` in the narrowest unsigned type that holds them all."""
    top = max(counts, default=0)
    code = "I"
    while top >> (8 * array(code).itemsize):
        code = _WIDER[code]
    return array(code, counts)


def _merged(offset: int, counts: array[int], change: int) -> tuple[int, array[int]]:
    if not counts:
        return offset, counts
    new_offset = offset >> change
    merged = [0] * (((offset + len(counts) - 1) >> change) - new_offset + 1)
    for position, n in enumerate(counts):
        if n:
            merged[((offset + position) >> change) - new_offset] += n
    return new_offset, _packed(merged)
