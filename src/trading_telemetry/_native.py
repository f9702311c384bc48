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
the negative buckets, mirrored. The counts of each side are one ``array`` of 8-byte
integers from the side's first index: no Python object per bucket.

The index of a value is OpenTelemetry's ``LogarithmMapping`` / ``ExponentMapping``: exact
at powers of two, ``floor(log(value) * 2**scale / ln 2)`` otherwise.
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

    __slots__ = ("_neg", "_neg_offset", "_pos", "_pos_offset", "_scale_factor", "scale", "zero_count")

    def __init__(self) -> None:
        self.scale = MAX_SCALE
        self._scale_factor = _LOG2E * (1 << MAX_SCALE)
        self.zero_count = 0
        self._pos = array("q")
        self._pos_offset = 0
        self._neg = array("q")
        self._neg_offset = 0

    def add(self, value: float) -> None:
        """Count one observation (a finite float or int)."""
        if value > ZERO_THRESHOLD:
            index = self._index(value)
            position = index - self._pos_offset
            if 0 <= position < len(self._pos):  # the common case: a bucket in the window
                self._pos[position] += 1
            else:
                self._widen(index, negative=False)
        elif value < -ZERO_THRESHOLD:
            index = self._index(-value)
            position = index - self._neg_offset
            if 0 <= position < len(self._neg):
                self._neg[position] += 1
            else:
                self._widen(index, negative=True)
        else:
            self.zero_count += 1

    def _index(self, value: float) -> int:
        scale = self.scale
        if scale <= 0 or math.frexp(value)[0] == 0.5:
            return index_of(value, scale)
        return math.floor(math.log(value) * self._scale_factor)

    def _widen(self, index: int, negative: bool) -> None:
        """Count at ``index``, outside the side's window: grow the window, or first lower
        the scale until the side fits in MAX_BUCKETS."""
        offset, counts = (self._neg_offset, self._neg) if negative else (self._pos_offset, self._pos)
        if counts:
            low, high = min(index, offset), max(index, offset + len(counts) - 1)
            change = 0
            while (high >> change) - (low >> change) + 1 > MAX_BUCKETS and self.scale - change > MIN_SCALE:
                change += 1
            if change:
                self._downscale(change)
                index >>= change
                offset, counts = (self._neg_offset, self._neg) if negative else (self._pos_offset, self._pos)
        if not counts:
            offset, counts = index, array("q", [0])
        elif index < offset:
            counts = array("q", [0]) * (offset - index) + counts
            offset = index
        elif index >= offset + len(counts):
            counts.extend([0] * (index - offset - len(counts) + 1))
        counts[index - offset] += 1
        if negative:
            self._neg_offset, self._neg = offset, counts
        else:
            self._pos_offset, self._pos = offset, counts

    def _downscale(self, change: int) -> None:
        """Halve the resolution ``change`` times: bucket ``i`` becomes ``i >> change``."""
        self._pos_offset, self._pos = _merged(self._pos_offset, self._pos, change)
        self._neg_offset, self._neg = _merged(self._neg_offset, self._neg, change)
        self.scale -= change
        self._scale_factor = _LOG2E * 2.0**self.scale

    def snapshot(self) -> NativeSnapshot:
        pos, neg = self._pos, self._neg
        return NativeSnapshot(self.scale, self.zero_count, self._pos_offset, tuple(pos), self._neg_offset, tuple(neg))

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]


def _merged(offset: int, counts: array[int], change: int) -> tuple[int, array[int]]:
    if not counts:
        return offset, counts
    new_offset = offset >> change
    merged = array("q", [0]) * (((offset + len(counts) - 1) >> change) - new_offset + 1)
    for position, n in enumerate(counts):
        if n:
            merged[((offset + position) >> change) - new_offset] += n
    return new_offset, merged
