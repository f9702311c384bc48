"""The Prometheus protobuf exposition, written straight to the wire format.

A scrape asking for ``application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;
encoding=delimited`` gets a stream of ``io.prometheus.client.MetricFamily`` messages, each
preceded by its length as a varint: the messages of Prometheus' client_model
(``_client_model/io/prometheus/client/metrics.proto``). It is the one format that carries
native histograms. Only the few fields /metrics needs are written, by hand: varints,
zigzag varints, length-delimited fields, doubles by ``struct``; each series' labels are
encoded once and kept with its text labels. protoc's classes for the same file
(``_client_model``) are the reference decoder in the tests, never imported here.

Native buckets use Prometheus' numbering: OpenTelemetry's bucket ``i`` (``_native``) is
Prometheus' ``i + 1``. Each side's window of counts becomes spans (split where more than
two empty buckets follow each other) and the deltas between consecutive counts.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from operator import sub

from trading_telemetry._native import ZERO_THRESHOLD, NativeSnapshot

__all__ = [
    "CONTENT_TYPE",
    "COUNTER",
    "GAUGE",
    "HISTOGRAM",
    "Exemplar",
    "delimited",
    "family_header",
    "histogram",
    "label_pairs",
    "scalar",
]

CONTENT_TYPE = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"

COUNTER, GAUGE, HISTOGRAM = 0, 1, 4  # MetricType

Exemplar = tuple[float, str, str, float]
"""(value, trace id hex, span id hex, Unix time): an observation kept for /metrics; empty
ids for one made outside a span (OTEL_METRICS_EXEMPLAR_FILTER=always_on)."""

_double = struct.Struct("<d").pack


def _uvarint(n: int) -> bytes:
    """``n`` (0 <= n < 2**64) as a base-128 varint."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = 1 << 14
_UV = [_uvarint(n) for n in range(_SMALL)]  # the one- and two-byte varints


def varint(n: int) -> bytes:
    return _UV[n] if 0 <= n < _SMALL else _uvarint(n & 0xFFFFFFFFFFFFFFFF)


def _zigzag(n: int) -> bytes:
    return varint((n << 1) ^ (n >> 63))


_ZZ = {n: _zigzag(n) for n in range(-(_SMALL >> 1), _SMALL >> 1)}


def zigzag(n: int) -> bytes:
    """A sint32/sint64 value."""
    found = _ZZ.get(n)
    return found if found is not None else _zigzag(n)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: ``tag`` (field number << 3 | 2, encoded), length, payload."""
    return tag + varint(len(payload)) + payload


def _string(tag: bytes, value: str) -> bytes:
    return _field(tag, value.encode())


def label_pairs(items: Iterable[tuple[str, str]]) -> bytes:
    """A Metric's (or an Exemplar's) ``label`` fields, in the order given."""
    return b"".join([_field(b"\x0a", _string(b"\x0a", k) + _string(b"\x12", v)) for k, v in items])


def family_header(name: str, help_text: str, kind: int, unit: str = "") -> bytes:
    """A MetricFamily's fields but its metrics: name, help, type, unit."""
    head = _string(b"\x0a", name) + _string(b"\x12", help_text) + b"\x18" + varint(kind)
    return head + _string(b"\x2a", unit) if unit else head


def delimited(header: bytes, metrics: Sequence[bytes]) -> bytes:
    """One MetricFamily of ``metrics`` (each a Metric message), with its length in front."""
    body = header + b"".join([b"\x22" + varint(len(m)) + m for m in metrics])
    return varint(len(body)) + body


def scalar(labels: bytes, kind: int, value: float) -> bytes:
    """A counter's or a gauge's Metric message; ``labels`` from ``label_pairs``."""
    return labels + (b"\x1a\x09\x09" if kind == COUNTER else b"\x12\x09\x09") + _double(float(value))


def upper_bound(bound: float) -> bytes:
    """A classic Bucket's ``upper_bound`` field, kept per metric."""
    return b"\x11" + _double(bound)


def _exemplar(kept: Exemplar) -> bytes:
    value, trace_id, span_id, at = kept
    labels = label_pairs((("trace_id", trace_id), ("span_id", span_id))) if trace_id else b""
    seconds = int(at // 1)
    nanos = int((at - seconds) * 1e9)
    stamp = b"\x08" + varint(seconds) + (b"\x10" + varint(nanos) if nanos > 0 else b"")
    return labels + b"\x11" + _double(value) + _field(b"\x1a", stamp)


_BUCKET_HEAD = [b"\x1a" + bytes((10 + k,)) + b"\x08" for k in range(11)]
"""A classic Bucket field's head by its count's varint length: tag, message length (the
count's field and the 9-byte upper_bound), count tag."""


def histogram(
    labels: bytes,
    counts: Sequence[int],
    total: float,
    bounds: Sequence[bytes],
    native: NativeSnapshot | None,
    exemplars: Sequence[Exemplar | None] | None,
) -> bytes:
    """A histogram's Metric message: the classic buckets (cumulative, ``+Inf`` included, each
    with its exemplar), count and sum, and the native buckets when ``native`` is given;
    ``bounds`` are the buckets' ``upper_bound`` fields (``upper_bound``)."""
    uv, head = _UV, _BUCKET_HEAD
    count = 0
    parts = []
    if exemplars is None:
        for n, bound in zip(counts, bounds, strict=True):
            count += n
            encoded = uv[count] if count < _SMALL else varint(count)
            parts.append(head[len(encoded)] + encoded + bound)
    else:
        for n, bound, kept in zip(counts, bounds, exemplars, strict=True):
            count += n
            bucket = b"\x08" + varint(count) + bound
            if kept is not None:
                bucket += _field(b"\x1a", _exemplar(kept))
            parts.append(b"\x1a" + varint(len(bucket)) + bucket)
    if native is not None:
        parts.append(_native(native))
        if exemplars is not None:
            stored = sorted((e for e in exemplars if e is not None), key=lambda e: e[3])
            parts.extend([_field(b"\x82\x01", _exemplar(e)) for e in stored])
    body = b"\x08" + varint(count) + b"\x11" + _double(float(total)) + b"".join(parts)
    return labels + b"\x3a" + varint(len(body)) + body


def _native(snapshot: NativeSnapshot) -> bytes:
    """The native fields of a Histogram: schema, zero bucket, spans and deltas of each side."""
    out = b"\x28" + zigzag(snapshot.scale) + b"\x31" + _double(ZERO_THRESHOLD) + b"\x38" + varint(snapshot.zero_count)
    if snapshot.negative:
        out += _side(b"\x4a", b"\x52", snapshot.negative_offset, snapshot.negative)
    if snapshot.positive:
        out += _side(b"\x62", b"\x6a", snapshot.positive_offset, snapshot.positive)
    elif not snapshot.negative and not snapshot.zero_count:  # no bucket at all: still a native histogram
        out += b"\x62\x00"
    return out


def _side(span_tag: bytes, delta_tag: bytes, offset: int, counts: tuple[int, ...]) -> bytes:
    """One side's spans and deltas: its window ``counts`` from OpenTelemetry index ``offset``."""
    spans, kept = _spans(offset + 1, counts)
    encoded = b"".join([_span(span_tag, gap, length) for gap, length in spans])
    try:
        packed = b"".join(map(_ZZ.__getitem__, map(sub, kept, (0, *kept[:-1]))))
    except KeyError:  # a delta of 8192 or more
        packed = b"".join(map(zigzag, map(sub, kept, (0, *kept[:-1]))))
    return encoded + _field(delta_tag, packed)


def _span(tag: bytes, gap: int, length: int) -> bytes:
    """A BucketSpan field: offset (sint32) and length, at most 12 bytes."""
    gap_bytes = _ZZ.get(gap) or _zigzag(gap)
    length_bytes = _UV[length] if length < _SMALL else varint(length)
    return tag + bytes((2 + len(gap_bytes) + len(length_bytes),)) + b"\x08" + gap_bytes + b"\x10" + length_bytes


_GAP = b"\x00\x00\x00"


def _spans(start: int, counts: tuple[int, ...]) -> tuple[list[tuple[int, int]], tuple[int, ...]]:
    """Spans over ``counts`` (its first bucket at Prometheus index ``start``), leaving out
    empty buckets at the ends and runs of more than two inside: (gap to the previous span,
    or the first one's index; length) each, and the counts they cover."""
    mask = bytes(map(bool, counts))  # the searches below run in C
    i = mask.find(1)
    if i < 0:
        return [], ()
    last = mask.rfind(1) + 1
    if mask.find(_GAP, i, last) < 0:  # the common case: one span
        return [(start + i, last - i)], counts[i:last]
    spans: list[tuple[int, int]] = []
    kept: list[int] = []
    end = None  # Prometheus index after the last span
    while i >= 0:
        j = mask.find(_GAP, i, last)
        if j < 0:
            j = last
        index = start + i
        spans.append((index if end is None else index - end, j - i))
        kept.extend(counts[i:j])
        end = start + j
        i = mask.find(1, j, last)
    return spans, tuple(kept)
