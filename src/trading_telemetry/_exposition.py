"""``/metrics`` rendered straight from the handles.

The OTel Prometheus exporter turns each scrape into an SDK collection (an Observation per
series), then into prometheus_client families, which escape and validate every label of
every sample again: at 20,000 series that held the trading process's GIL for seconds.
Here each series renders its escaped label string once, when first scraped, and a scrape
is a walk over the handles formatting numbers. The output is what the OTel exporter
produces for the same instruments and views with ``scope_info_enabled=False`` (the same
families, samples, label sets and values, ``target_info`` included):
``tests/unit/test_exposition.py`` keeps that exporter as the oracle on randomized workloads.

The ``otel_scope_name``, ``otel_scope_version`` and ``otel_scope_schema_url`` labels the
exporter adds by default are left out: every series of a plane has the same three (one
meter, ``trading_telemetry``), the specification's names have none, and they tripled the labels of
every sample (1.64x the bytes of prometheus_client's output at 20k series).

Three formats, chosen by the scraper's ``Accept`` (``metrics_server``): the text format,
OpenMetrics (with each histogram bucket's last exemplar, when the exemplar filter offers
them), and Prometheus' protobuf exposition (``_protobuf``), the one that carries native
histograms. A series' labels are rendered once for all three (``SeriesLabels``, kept on
the handle).

A render proceeds in chunks of CHUNK_SERIES series, each encoded on its own, with a
``time.sleep(0)`` between them, so other threads (the trading loop) get the GIL back
within a chunk's time; no single step is a long C call over the whole body.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client.exposition import generate_latest as text_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.utils import floatToGoString

from trading_telemetry._safe import safe_str, type_name
from trading_telemetry._self_metrics import SelfMetric, Values
from trading_telemetry._series import SeriesReader
from trading_telemetry.catalog import SERVICE_LABEL, Kind, MetricSpec

__all__ = ["CHUNK_SERIES", "FORMATS", "OPENMETRICS", "PROTOBUF", "TEXT", "PlaneExposition", "SeriesLabels"]

TEXT, OPENMETRICS, PROTOBUF = "text", "openmetrics", "protobuf"
FORMATS = (TEXT, OPENMETRICS, PROTOBUF)

CHUNK_SERIES = 2000
"""Series rendered between two yields of the GIL."""

_EOF = b"# EOF\n"


def escape_label_value(value: str) -> str:
    """The text format's (and OpenMetrics') escaping of a label value."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def label_name(key: str) -> str:
    """An attribute key as the OTel exporter turns it into a label name."""
    name = re.sub(r"[^a-zA-Z0-9_]", "_", key)
    return f"key_{name}" if name[:1].isdigit() else name


_go_float: Callable[[float], str] = floatToGoString


def number(value: float) -> str:
    """``value`` as prometheus_client writes a sample value (``floatToGoString``)."""
    if value.__class__ is int and -1_000_000 < value < 1_000_000:
        return f"{value}.0"
    return _go_float(value)


class SeriesLabels:
    """A series' labels as every format writes them, rendered at its first scrape and kept
    on its handle (``label_text``): the text formats' escaped ``k="v",...`` string and, for a
    histogram, its halves around where ``le`` sorts; the protobuf ``label`` fields, encoded
    at the first protobuf scrape."""

    __slots__ = ("after", "before", "pb", "text")

    def __init__(self, text: str, before: str = "", after: str = "") -> None:
        self.text = text
        self.before = before
        self.after = after
        self.pb: bytes | None = None


def _exemplar_text(kept: tuple[float, str, str, float] | None) -> str:
    """A bucket line's OpenMetrics exemplar: `` # {trace_id="…",span_id="…"} value time``."""
    if kept is None:
        return ""
    value, trace_id, span_id, at = kept
    labels = f'trace_id="{trace_id}",span_id="{span_id}"' if trace_id else ""
    return f" # {{{labels}}} {number(value)} {at:.3f}"


def _no_exemplars() -> None:
    return None


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def _headers(family: Metric) -> tuple[str, str]:
    """(text format, OpenMetrics) HELP/TYPE/UNIT lines of a family, as prometheus_client writes them."""
    text = text_latest(_Families([family])).decode()
    om = openmetrics_latest(_Families([family])).decode().removesuffix("# EOF\n")  # type: ignore[no-untyped-call]
    return text, om


def _self_family(s: MetricSpec) -> Metric:
    """A self-metric's family, without a UNIT line (its name says it)."""
    if s.kind is Kind.COUNTER:
        return CounterMetricFamily(s.prometheus_name, s.description, labels=[])
    return GaugeMetricFamily(s.prometheus_name, s.description, labels=[])


class _NoSeries:
    def series(self, key: str) -> Mapping[tuple[str, ...], Any]:
        return {}


_NO_SERIES = _NoSeries()


def _family(s: MetricSpec) -> Metric:
    unit = "seconds" if s.unit == "s" else ""
    if s.kind is Kind.COUNTER:
        return CounterMetricFamily(s.prometheus_name, s.description, labels=[], unit=unit)
    if s.kind is Kind.GAUGE:
        return GaugeMetricFamily(s.prometheus_name, s.description, labels=[], unit=unit)
    return HistogramMetricFamily(s.prometheus_name, s.description, labels=[], unit=unit)


class _Metric:
    """One catalog metric's rendering: headers, names, bucket bounds."""

    __slots__ = ("bounds", "buckets", "headers", "key", "kind", "name", "native", "pb", "spec", "sum_and_count")

    def __init__(self, s: MetricSpec) -> None:
        self.spec = s
        self.key = s.key
        self.kind = s.kind
        self.native = s.native
        self.headers = _headers(_family(s))
        self.name = s.prometheus_name
        self.sum_and_count = s.has_sum_and_count
        self.buckets = [_go_float(b) for b in s.buckets or ()] + ["+Inf"]
        self.pb: bytes | None = None  # the protobuf family's fields but its metrics, at the first protobuf render
        self.bounds: list[bytes] = []  # the protobuf buckets' upper_bound fields, +Inf included

    def protobuf(self) -> bytes:
        """The MetricFamily fields but its metrics (made once): name, help, type, unit."""
        if self.pb is None:
            from trading_telemetry import _protobuf as pb

            s = self.spec
            kind = {Kind.COUNTER: pb.COUNTER, Kind.GAUGE: pb.GAUGE}.get(s.kind, pb.HISTOGRAM)
            self.bounds = [pb.upper_bound(b) for b in (*(s.buckets or ()), math.inf)]
            self.pb = pb.family_header(self.name, s.description, kind, "seconds" if s.unit == "s" else "")
        return self.pb


class PlaneExposition:
    """Renders one plane's ``/metrics`` from its series.

    ``specs`` and ``store`` are the plane's catalog and its series (read through
    ``series(key)``, the protocol of ``_series``); ``resource`` the Resource attributes for
    ``target_info``; ``self_metrics`` the package's own metrics, rendered after the
    catalog's. ``source``, in multiprocess mode, gives at each render the series to show
    instead (every process's, summed) and self-metric values by key that replace those
    read here.
    """

    def __init__(
        self,
        specs: Mapping[str, MetricSpec],
        store: SeriesReader,
        resource: Mapping[str, Any],
        self_metrics: Sequence[SelfMetric],
        service: str,
        source: Callable[[], tuple[SeriesReader, Mapping[str, Values]]] | None = None,
    ) -> None:
        self._metrics = [_Metric(s) for s in specs.values()]
        self._store = store
        self._source = source
        self._service = service
        self._self_metrics = [(m, _headers(_self_family(m.spec))) for m in self_metrics]
        info = InfoMetricFamily("target", "Target metadata", labels=[])
        target = {label_name(k): str(v) for k, v in resource.items()}
        self._target_items = sorted(target.items())
        self._target_pb: bytes | None = None
        self._target = (
            _headers(info),
            "target_info{" + ",".join(f'{k}="{escape_label_value(v)}"' for k, v in sorted(target.items())) + "} 1.0\n",
        )
        self.failures = 0
        self.last_failure: str | None = None

    def _labels(self, items: list[tuple[str, str]]) -> str:
        items = sorted(items)
        return ",".join(f'{k}="{escape_label_value(v)}"' for k, v in items)

    def _value_labels(self, items: list[tuple[str, str]]) -> SeriesLabels:
        """A counter's or gauge's labels."""
        return SeriesLabels(self._labels(items))

    def _split(self, items: list[tuple[str, str]]) -> SeriesLabels:
        """A histogram's labels: the label string, and its two halves around where ``le`` sorts."""
        items = sorted(items)
        before = "".join(f'{k}="{escape_label_value(v)}",' for k, v in items if k < "le")
        after = "".join(f',{k}="{escape_label_value(v)}"' for k, v in items if k > "le")
        return SeriesLabels(self._labels(items), before, after)

    def render(self, form: str = TEXT) -> bytes:
        """The body of a scrape in ``form`` (one of FORMATS): the text format, OpenMetrics
        (with ``# EOF``), or the protobuf exposition (delimited MetricFamily messages).

        Each family is encoded on its own (a long one in chunks of CHUNK_SERIES series,
        yielding the GIL between them); a family that fails to render or encode is left
        out whole and counted in ``failures``, and the rest is served; so is ``target_info``."""
        if form not in FORMATS:
            raise ValueError(f"unknown exposition format {form!r}: one of {', '.join(FORMATS)}")
        reader, replaced = self._read()
        if form == PROTOBUF:
            return self._render_protobuf(reader, replaced)
        openmetrics = form == OPENMETRICS
        index = 1 if openmetrics else 0
        chunks: list[bytes] = []
        for metric in self._metrics:
            handles = list(reader.series(metric.key).values())
            if not handles:
                continue
            mark = len(chunks)
            try:
                self._render_metric(metric, handles, index, chunks)
            except Exception as error:  # noqa: BLE001 - leave the family out, serve the rest
                self._failed(metric.name, error)
                del chunks[mark:]
        for self_metric, headers in self._self_metrics:
            spec = self_metric.spec
            try:
                values = replaced.get(spec.key)
                chunks.append(self._render_self(spec, headers[index], self_metric.read() if values is None else values))
            except Exception as error:  # noqa: BLE001
                self._failed(spec.prometheus_name, error)
        try:  # the Resource's values are checked where they enter; this guard is for what slips past
            head = (self._target[0][index] + self._target[1]).encode()
        except Exception as error:  # noqa: BLE001
            self._failed("target_info", error)
            head = b""
        return b"".join([head, *chunks, _EOF] if openmetrics else [head, *chunks])

    def _read(self) -> tuple[SeriesReader, Mapping[str, Values]]:
        """The series to render and the self-metric values replacing this process's: in
        multiprocess mode every process's sum (none if the files cannot be read)."""
        if self._source is None:
            return self._store, {}
        try:
            return self._source()
        except Exception as error:  # noqa: BLE001 - no part-sum (a counter going down): families left out
            self._failed("multiprocess files", error)
            # No counter of this process alone either (a part-sum goes down); the gauges (uptime) stay.
            return _NO_SERIES, {m.spec.key: {} for m, _ in self._self_metrics if m.spec.kind is Kind.COUNTER}

    def _render_metric(self, metric: _Metric, handles: list[Any], form: int, chunks: list[bytes]) -> None:
        """Append the family's encoded lines to ``chunks``: nothing if no handle has a point.
        ``form``: 0 text format, 1 OpenMetrics (bucket lines with their exemplars)."""
        parts = [metric.headers[form]]
        name = metric.name
        rendered = pending = 0
        for handle in handles:
            if metric.kind is Kind.HISTOGRAM:
                counts, total, _, _ = handle.snapshot()
                if not any(counts):  # no observation yet: no point, as in the SDK
                    continue
                text = handle.label_text(self._split)
                kept = getattr(handle, "exemplars", _no_exemplars)() if form else None
                count = 0
                if kept is None:
                    for le, n in zip(metric.buckets, counts, strict=True):
                        count += n
                        parts.append(f'{name}_bucket{{{text.before}le="{le}"{text.after}}} {number(count)}\n')
                else:
                    for le, n, e in zip(metric.buckets, counts, kept, strict=True):
                        count += n
                        parts.append(
                            f'{name}_bucket{{{text.before}le="{le}"{text.after}}} {number(count)}{_exemplar_text(e)}\n'
                        )
                if metric.sum_and_count:
                    parts.append(f"{name}_count{{{text.text}}} {number(count)}\n")
                    parts.append(f"{name}_sum{{{text.text}}} {number(total)}\n")
            else:
                value = handle.value
                if value is None:  # a gauge never set
                    continue
                text = handle.label_text(self._value_labels)
                parts.append(f"{name}{{{text.text}}} {number(value)}\n")
            rendered += 1
            pending += 1
            if pending >= CHUNK_SERIES:
                chunks.append("".join(parts).encode())
                parts.clear()
                pending = 0
                time.sleep(0)  # give the GIL to the trading threads
        if rendered:
            chunks.append("".join(parts).encode())
            time.sleep(0)

    def _render_protobuf(self, reader: SeriesReader, replaced: Mapping[str, Values]) -> bytes:
        """The protobuf body: a delimited MetricFamily per family, ``target_info`` first."""
        from trading_telemetry import _protobuf as pb

        chunks: list[bytes] = []
        try:
            if self._target_pb is None:
                info = pb.scalar(pb.label_pairs(self._target_items), pb.GAUGE, 1)
                self._target_pb = pb.delimited(pb.family_header("target_info", "Target metadata", pb.GAUGE), [info])
            chunks.append(self._target_pb)
        except Exception as error:  # noqa: BLE001
            self._failed("target_info", error)
        for metric in self._metrics:
            handles = list(reader.series(metric.key).values())
            if not handles:
                continue
            try:
                family = self._protobuf_metric(pb, metric, handles)
            except Exception as error:  # noqa: BLE001 - leave the family out, serve the rest
                self._failed(metric.name, error)
                continue
            if family:
                chunks.append(family)
        for self_metric, _ in self._self_metrics:
            spec = self_metric.spec
            try:
                values = replaced.get(spec.key)
                chunks.append(self._protobuf_self(pb, spec, self_metric.read() if values is None else values))
            except Exception as error:  # noqa: BLE001
                self._failed(spec.prometheus_name, error)
        return b"".join(chunks)

    def _protobuf_metric(self, pb: Any, metric: _Metric, handles: list[Any]) -> bytes:
        """One family's delimited MetricFamily; empty if no handle has a point."""
        header = metric.protobuf()
        messages: list[bytes] = []
        pending = 0
        if metric.kind is Kind.HISTOGRAM:
            bounds, native, histogram = metric.bounds, metric.native, pb.histogram
            for handle in handles:
                if native:
                    counts, total, _, _, snapshot = handle.snapshot_native()
                else:
                    (counts, total, _, _), snapshot = handle.snapshot(), None
                if not any(counts):
                    continue
                text = handle.label_text(self._split)
                labels = text.pb
                if labels is None:
                    labels = text.pb = pb.label_pairs(sorted(handle.label_items()))
                kept = getattr(handle, "exemplars", _no_exemplars)()
                messages.append(histogram(labels, counts, total, bounds, snapshot, kept))
                pending += 1
                if pending >= CHUNK_SERIES:
                    pending = 0
                    time.sleep(0)  # give the GIL to the trading threads
        else:
            kind, scalar = (pb.COUNTER if metric.kind is Kind.COUNTER else pb.GAUGE), pb.scalar
            for handle in handles:
                value = handle.value
                if value is None:
                    continue
                text = handle.label_text(self._value_labels)
                labels = text.pb
                if labels is None:
                    labels = text.pb = pb.label_pairs(sorted(handle.label_items()))
                messages.append(scalar(labels, kind, value))
                pending += 1
                if pending >= CHUNK_SERIES:
                    pending = 0
                    time.sleep(0)
        if not messages:
            return b""
        body: bytes = pb.delimited(header, messages)
        time.sleep(0)
        return body

    def _protobuf_self(self, pb: Any, spec: MetricSpec, values: Values) -> bytes:
        """A self-metric's delimited MetricFamily: nothing when it has no value yet."""
        if not values:
            return b""
        kind = pb.COUNTER if spec.kind is Kind.COUNTER else pb.GAUGE
        messages = []
        for labels, value in sorted(values.items()):
            items = sorted([*zip(spec.labels, labels, strict=True), (SERVICE_LABEL, self._service)])
            messages.append(pb.scalar(pb.label_pairs(items), kind, value))
        body: bytes = pb.delimited(pb.family_header(spec.prometheus_name, spec.description, kind), messages)
        return body

    def _render_self(self, spec: MetricSpec, headers: str, values: Values) -> bytes:
        """A self-metric's family: nothing when it has no value yet."""
        if not values:
            return b""
        name, lines = spec.prometheus_name, [headers]
        for labels, value in sorted(values.items()):
            items = [*zip(spec.labels, labels, strict=True), (SERVICE_LABEL, self._service)]
            lines.append(f"{name}{{{self._labels(items)}}} {number(value)}\n")
        return "".join(lines).encode()

    def _failed(self, family: str, error: Exception) -> None:
        self.failures += 1
        self.last_failure = f"{type_name(error)} in family {family}: {safe_str(error)}"
