"""The protobuf /metrics against its reference decoder, protoc's classes for Prometheus'
client_model: on randomized workloads (native histograms with negative and zero values,
classic ones, counters, gauges, awkward label values) the body decodes to what the handles
hold and to the same families, samples, label sets and values as the text format. Also: the
Accept negotiation, exemplars on OpenMetrics and protobuf, and the generated classes kept in
step with the vendored metrics.proto."""

from __future__ import annotations

import gzip
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.utils import floatToGoString

from helpers import LABEL_VALUES, http_get, record_ops
from trading_telemetry import PlaneMetrics, TelemetryConfig, init_metrics_exporter, reset, serve_metrics
from trading_telemetry._client_model.io.prometheus.client import metrics_pb2
from trading_telemetry._exposition import OPENMETRICS, PROTOBUF, TEXT
from trading_telemetry._native import NativeSnapshot
from trading_telemetry.catalog import Kind, MetricSpec, Plane, plane_specs
from trading_telemetry.metrics_server import choose_format

ORACLE = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow])  # fmt: skip

PROTOBUF_ACCEPT = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
PROMETHEUS_3_ACCEPT = (  # Prometheus 3.16 with scrape_native_histograms: true
    f"{PROTOBUF_ACCEPT},application/openmetrics-text;version=1.0.0;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;q=0.3,"
    "text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)
UPTIME = "trading_telemetry_uptime_seconds"
AWKWARD = ['a"b', "back\\slash", "new\nline", "é€😀", '{x="1"}', "le", " ", "\\n", 'end\\"']
label_values = st.one_of(st.sampled_from(sorted(set(LABEL_VALUES.values()))), st.sampled_from(AWKWARD))
values = st.one_of(
    st.integers(-1000, 10**7),
    st.floats(min_value=-1e6, max_value=1e12, allow_nan=False, allow_infinity=False),
    st.floats(min_value=1e-6, max_value=10.0),
    st.sampled_from([0, 0.0, 1, 0.5, -1.5, 1e-9, 2.0, 4.0, -4.0, 1e-300, 2**53, -60.0, 1e21]),
)


def decode(body: bytes) -> list[metrics_pb2.MetricFamily]:
    """A delimited stream: each message's length as a varint, then the message."""
    families = []
    position = 0
    while position < len(body):
        length = shift = 0
        while True:
            byte = body[position]
            position += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        family = metrics_pb2.MetricFamily()
        family.ParseFromString(body[position : position + length])
        position += length
        families.append(family)
    assert position == len(body)
    return families


def native_buckets(offset: int, counts: tuple[int, ...]) -> dict[int, int]:
    """A snapshot side's non-empty buckets by Prometheus index (OpenTelemetry's + 1)."""
    return {offset + i + 1: n for i, n in enumerate(counts) if n}


def decoded_buckets(spans: Any, deltas: Any) -> dict[int, int]:
    """Spans and deltas decoded to the non-empty buckets by index."""
    buckets: dict[int, int] = {}
    index = 0
    count = 0
    deltas = iter(deltas)
    for number, span in enumerate(spans):
        index = span.offset if number == 0 else index + span.offset
        for _ in range(span.length):
            count += next(deltas)
            assert count >= 0
            if count:
                buckets[index] = count
            index += 1
    assert next(deltas, None) is None
    return buckets


@st.composite
def workloads(draw: st.DrawFn) -> tuple[Plane, str, list[tuple[str, dict[str, str], Any]]]:
    plane = draw(st.sampled_from(list(Plane)))
    specs = plane_specs(plane)
    ops = []
    for _ in range(draw(st.integers(1, 30))):
        key = draw(st.sampled_from(sorted(specs)))
        labels = {name: draw(label_values) for name in specs[key].labels}
        for value in draw(st.lists(values, min_size=1, max_size=8)):
            ops.append((key, labels, value))
    return plane, draw(st.sampled_from(["all", "catalog"])), ops


def text_samples(body: str) -> set[tuple[str, tuple[tuple[str, str], ...], Any]]:
    return {
        (s.name, tuple(sorted(s.labels.items())), s.value >= 0 if s.name == UPTIME else s.value)
        for f in parse_text(body)
        for s in f.samples
    }


def protobuf_samples(
    families: list[metrics_pb2.MetricFamily], specs: dict[str, MetricSpec]
) -> set[tuple[str, tuple[tuple[str, str], ...], Any]]:
    """The samples the text format writes for the same families: buckets with ``le``, and
    ``_count``/``_sum`` where the metric has them."""
    by_name = {s.prometheus_name: s for s in specs.values()}
    samples = set()
    for family in families:
        for metric in family.metric:
            labels = [(pair.name, pair.value) for pair in metric.label]
            if family.type == metrics_pb2.HISTOGRAM:
                h = metric.histogram
                for bucket in h.bucket:
                    le = ("le", floatToGoString(bucket.upper_bound))
                    samples.add((f"{family.name}_bucket", tuple(sorted([*labels, le])), float(bucket.cumulative_count)))
                if by_name[family.name].has_sum_and_count:
                    samples.add((f"{family.name}_count", tuple(sorted(labels)), float(h.sample_count)))
                    samples.add((f"{family.name}_sum", tuple(sorted(labels)), h.sample_sum))
            else:
                value = metric.counter.value if family.type == metrics_pb2.COUNTER else metric.gauge.value
                samples.add((family.name, tuple(sorted(labels)), value >= 0 if family.name == UPTIME else value))
    return samples


@ORACLE
@given(workload=workloads())
def test_the_protobuf_body_decodes_to_what_the_handles_hold_and_to_the_text_render(
    workload: tuple[Plane, str, list[Any]],
) -> None:
    """Classic cumulative counts, count, sum, native schema, zero bucket and buckets (spans and deltas) equal
    the handles'; families, types, samples, label sets and values equal the text format's."""
    plane, native, ops = workload
    reset()
    metrics = init_metrics_exporter(plane, config=TelemetryConfig(metrics_exporters=("prometheus",),
                                                                  native_histograms=native))  # fmt: skip
    record_ops(metrics, ops)
    assert metrics.exposition is not None
    specs = dict(metrics.store.specs)
    families = decode(metrics.exposition.render(PROTOBUF))
    assert len({f.name for f in families}) == len(families)
    by_name = {s.prometheus_name: s for s in specs.values()}
    for family in families:
        spec = by_name.get(family.name)
        if spec is None:
            continue
        assert family.help == spec.description
        assert family.type == {Kind.COUNTER: 0, Kind.GAUGE: 1, Kind.HISTOGRAM: 4}[spec.kind]
        assert family.unit == ("seconds" if spec.unit == "s" else "")
        series = metrics.store.series(spec.key)
        for metric in family.metric:
            labels = {pair.name: pair.value for pair in metric.label}
            assert labels.pop("service") == plane.value
            handle = series[tuple(labels[name] for name in spec.labels)]
            if spec.kind is not Kind.HISTOGRAM:
                value = metric.counter.value if spec.kind is Kind.COUNTER else metric.gauge.value
                assert value == handle.value
                continue
            counts, total, _, _, snapshot = handle.snapshot_native()
            h = metric.histogram
            assert [b.upper_bound for b in h.bucket] == [*(spec.buckets or ()), float("inf")]
            cumulative = [sum(counts[: i + 1]) for i in range(len(counts))]
            assert [b.cumulative_count for b in h.bucket] == cumulative
            assert h.sample_count == sum(counts)
            assert h.sample_sum == total
            assert snapshot is not None if spec.native else snapshot is None
            if snapshot is None:
                assert not h.HasField("schema")
                assert not h.positive_span
                assert not h.negative_span
                continue
            assert isinstance(snapshot, NativeSnapshot)
            assert h.schema == snapshot.scale
            assert h.zero_threshold == 0.0
            assert h.zero_count == snapshot.zero_count
            assert decoded_buckets(h.positive_span, h.positive_delta) == native_buckets(
                snapshot.positive_offset, snapshot.positive
            )
            assert decoded_buckets(h.negative_span, h.negative_delta) == native_buckets(
                snapshot.negative_offset, snapshot.negative
            )
            assert h.zero_count + sum(snapshot.positive) + sum(snapshot.negative) == h.sample_count
    assert protobuf_samples(families, specs) == text_samples(metrics.exposition.render(TEXT).decode())
    reset()


side = st.tuples(
    st.integers(-(2**20), 2**20),
    st.lists(st.one_of(st.just(0), st.integers(0, 20), st.integers(0, 2**40)), max_size=200).map(tuple),
)


@ORACLE
@given(scale=st.integers(-4, 8), zero=st.integers(0, 2**40), positive=side, negative=side)
def test_native_buckets_decode_to_the_snapshot(
    scale: int, zero: int, positive: tuple[int, tuple[int, ...]], negative: tuple[int, tuple[int, ...]]
) -> None:
    """Any snapshot (empty buckets anywhere, runs of them, counts past the one- and two-byte varints)
    encodes to spans and deltas that decode to its non-empty buckets, numbered as Prometheus does."""
    from trading_telemetry import _protobuf

    snapshot = NativeSnapshot(scale, zero, positive[0], positive[1], negative[0], negative[1])
    labels = _protobuf.label_pairs([("a", "b")])
    bounds = [_protobuf.upper_bound(float("inf"))]
    count = zero + sum(positive[1]) + sum(negative[1])
    metric = metrics_pb2.Metric()
    metric.ParseFromString(_protobuf.histogram(labels, [count], 1.5, bounds, snapshot, None))
    h = metric.histogram
    assert (h.schema, h.zero_count, h.zero_threshold, h.sample_count) == (scale, zero, 0.0, count)
    assert decoded_buckets(h.positive_span, h.positive_delta) == native_buckets(*positive)
    assert decoded_buckets(h.negative_span, h.negative_delta) == native_buckets(*negative)
    for spans in (h.positive_span, h.negative_span):
        assert all(span.length > 0 for span in spans[1:])
        assert all(span.offset > 2 for span in spans[1:])  # runs of three or more empty buckets are left out
    if not positive[1] and not negative[1] and not zero:
        assert [(s.offset, s.length) for s in h.positive_span] == [(0, 0)]  # still a native histogram


@pytest.mark.parametrize(
    ("accept", "form"),
    [
        (PROMETHEUS_3_ACCEPT, PROTOBUF),
        (f"{PROTOBUF_ACCEPT};q=0.9,application/openmetrics-text;version=1.0.0;q=0.8,*/*;q=0.1", PROTOBUF),
        (f"{PROTOBUF_ACCEPT};q=0.5,application/openmetrics-text;version=1.0.0;q=0.8", OPENMETRICS),
        ("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.25,*/*;q=0.1", OPENMETRICS),
        ("application/openmetrics-text;version=1.0.0;q=0.2,text/plain;version=0.0.4;q=0.9", TEXT),
        (f"{PROTOBUF_ACCEPT};q=0,text/plain", TEXT),
        ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text", TEXT),
        ("application/vnd.google.protobuf", TEXT),
        ("application/openmetrics-text;version=0.0.1", TEXT),
        ("", TEXT),
        ("application/json", TEXT),
        ("*/*", TEXT),
        (f"{PROTOBUF_ACCEPT};q=banana", TEXT),
        ('application/vnd.google.protobuf; proto="io.prometheus.client.MetricFamily"; encoding=delimited', PROTOBUF),
    ],
)
def test_the_format_is_the_accepted_one_with_the_highest_q(accept: str, form: str) -> None:
    """q-values choose among protobuf, OpenMetrics and text; no Accept, unknown types, q=0 and other
    protobuf messages or encodings give the text format."""
    chosen, content_type = choose_format(accept)
    assert chosen == form
    prefix = {PROTOBUF: "application/vnd.google.protobuf", OPENMETRICS: "application/openmetrics-text"}
    assert content_type.startswith(prefix.get(form, "text/plain"))
    if form == PROTOBUF:
        assert "proto=io.prometheus.client.MetricFamily" in content_type
        assert "encoding=delimited" in content_type


def test_a_protobuf_scrape_gets_the_delimited_stream_gzipped_or_not() -> None:
    """Over HTTP, the protobuf Accept gets the delimited MetricFamily stream and its Content-Type; gzip as
    for text; the text and OpenMetrics answers are unchanged beside it."""
    reset()
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=("prometheus",),
                                                                          native_histograms="all"))  # fmt: skip
    for value in (0.001, 0.002, 0.15, 0.0):
        metrics.observe("data_freshness", value, source="ibkr_rt", symbol="SPY")
    with serve_metrics(metrics, port=0) as server:
        status, headers, body = http_get(f"{server.url}/metrics", {"Accept": PROMETHEUS_3_ACCEPT})
        _, zipped_headers, zipped = http_get(
            f"{server.url}/metrics", {"Accept": PROMETHEUS_3_ACCEPT, "Accept-Encoding": "gzip"}
        )
        _, text_headers, text = http_get(f"{server.url}/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith(
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
    )
    assert zipped_headers["Content-Encoding"] == "gzip"
    unzipped = {f.name: f for f in decode(gzip.decompress(zipped))}
    families = {f.name: f for f in decode(body)}
    assert unzipped.keys() == families.keys()
    family = families["data_freshness_seconds"]
    assert unzipped[family.name] == family
    h = family.metric[0].histogram
    assert (h.sample_count, h.zero_count, h.schema) == (4, 1, 4)  # 0.001 to 0.15 in 160 buckets: schema 4
    assert text_headers["Content-Type"].startswith("text/plain")
    assert b'data_freshness_seconds_bucket{le="+Inf",source="ibkr_rt",symbol="SPY",service="data_plane"}' not in text
    assert 'data_freshness_seconds_count{service="data_plane",source="ibkr_rt",symbol="SPY"} 4.0' in text.decode()
    reset()


@pytest.fixture
def traced() -> Iterator[tuple[PlaneMetrics, InMemorySpanExporter]]:
    reset()
    spans = InMemorySpanExporter()
    metrics = init_metrics_exporter("order_plane", config=TelemetryConfig(metrics_exporters=("prometheus",),
                                                                          native_histograms="all"),
                                    span_exporters=[spans])  # fmt: skip
    yield metrics, spans
    reset()


LATENCY = "intent_to_submit_latency"
LATENCY_LABELS = {"strategy": "s1", "symbol": "SPY", "order_type": "LIMIT"}


def test_an_observation_in_a_span_is_the_exemplar_of_its_bucket_in_openmetrics_and_protobuf(
    traced: tuple[PlaneMetrics, InMemorySpanExporter],
) -> None:
    """The trace_based filter keeps the last observation made inside a recording span, in its bucket, with
    the span's trace and span ids; OpenMetrics (read by prometheus_client's parser) and protobuf carry it,
    the text format does not."""
    metrics, _ = traced
    assert metrics.tracer is not None
    metrics.observe(LATENCY, 0.0042, **LATENCY_LABELS)  # outside a span: no exemplar
    with metrics.tracer.start_as_current_span("submit") as span:
        metrics.observe(LATENCY, 0.0031, **LATENCY_LABELS)
        context = span.get_span_context()
    trace_id, span_id = f"{context.trace_id:032x}", f"{context.span_id:016x}"
    assert metrics.exposition is not None
    om = metrics.exposition.render(OPENMETRICS).decode()
    (family,) = [f for f in parse_openmetrics(om) if f.name == "orders_intent_to_submit_latency_seconds"]
    with_exemplar = [s for s in family.samples if s.exemplar is not None]
    assert len(with_exemplar) == 1
    sample = with_exemplar[0]
    assert sample.labels["le"] == "0.005"
    assert sample.exemplar.labels == {"trace_id": trace_id, "span_id": span_id}
    assert sample.exemplar.value == 0.0031
    assert sample.exemplar.timestamp is not None
    assert " # {" not in metrics.exposition.render(TEXT).decode()
    (pb_family,) = [f for f in decode(metrics.exposition.render(PROTOBUF)) if f.name == family.name]
    h = pb_family.metric[0].histogram
    bucket = next(b for b in h.bucket if b.upper_bound == 0.005)
    assert {p.name: p.value for p in bucket.exemplar.label} == {"trace_id": trace_id, "span_id": span_id}
    assert bucket.exemplar.value == 0.0031
    assert bucket.exemplar.timestamp.seconds > 0
    assert [b.HasField("exemplar") for b in h.bucket].count(True) == 1
    assert [(e.value, e.timestamp.seconds > 0) for e in h.exemplars] == [(0.0031, True)]


def test_no_exemplar_is_kept_outside_a_span_nor_with_always_off() -> None:
    """trace_based keeps nothing for observations outside a span; always_off keeps nothing even inside one;
    always_on keeps every observation, one made outside a span with no trace ids."""
    for exemplar_filter, inside, expected in (("trace_based", False, None), ("always_off", True, None),
                                              ("always_on", False, {})):  # fmt: skip
        reset()
        config = TelemetryConfig(metrics_exporters=("prometheus",), exemplar_filter=exemplar_filter)
        metrics = init_metrics_exporter("order_plane", config=config, span_exporters=[InMemorySpanExporter()])
        assert metrics.tracer is not None
        if inside:
            with metrics.tracer.start_as_current_span("submit"):
                metrics.observe(LATENCY, 0.0031, **LATENCY_LABELS)
        else:
            metrics.observe(LATENCY, 0.0031, **LATENCY_LABELS)
        assert metrics.exposition is not None
        om = metrics.exposition.render(OPENMETRICS).decode()
        (family,) = [f for f in parse_openmetrics(om) if f.name == "orders_intent_to_submit_latency_seconds"]
        exemplars = [s.exemplar for s in family.samples if s.exemplar is not None]
        if expected is None:
            assert exemplars == [], exemplar_filter
        else:
            assert [(e.labels, e.value) for e in exemplars] == [(expected, 0.0031)], exemplar_filter
    reset()


def test_multiprocess_mode_serves_protobuf_with_classic_buckets(tmp_path: Path) -> None:
    """The summed series of multiprocess mode (classic buckets only) decode to the text render's samples."""
    reset()
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(multiprocess_dir=str(tmp_path)))
    for value in (0.001, 0.2, 7.0):
        metrics.observe("data_freshness", value, source="ibkr_rt", symbol='a"b')
    metrics.inc("ticks_received", 3, source="ibkr_rt", symbol="SPY")
    assert metrics.exposition is not None
    families = decode(metrics.exposition.render(PROTOBUF))
    specs = dict(metrics.store.specs)
    samples = protobuf_samples(families, specs)
    assert samples == text_samples(metrics.exposition.render(TEXT).decode())
    assert (
        "data_ticks_received_total",
        (("service", "data_plane"), ("source", "ibkr_rt"), ("symbol", "SPY")),
        3.0,
    ) in (samples)
    reset()


def test_the_generated_classes_are_what_protoc_makes_of_the_vendored_proto(tmp_path: Path) -> None:
    """`make proto` regenerates metrics_pb2.py and .pyi from metrics.proto; the committed ones are identical."""
    try:
        import grpc_tools  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("grpcio-tools (the dev extra) is missing; under CI=true this test must not skip")
        pytest.skip("grpcio-tools (the dev extra) is not installed")
    from trading_telemetry._client_model import _generate

    for path in _generate.generate(tmp_path):
        committed = _generate.ROOT / path.relative_to(tmp_path)
        assert committed.read_bytes() == path.read_bytes(), f"{committed} is stale: run `make proto`"


def test_neither_the_package_nor_a_protobuf_render_imports_the_generated_code() -> None:
    """The generated classes are the tests' decoder: importing the package and rendering protobuf leave them out."""
    import subprocess

    code = (
        "import sys; from trading_telemetry import init_metrics_exporter, TelemetryConfig;"
        "m = init_metrics_exporter('data_plane', config=TelemetryConfig(metrics_exporters=('prometheus',)));"
        "m.exposition.render('protobuf');"
        "print(any('metrics_pb2' in name for name in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"
