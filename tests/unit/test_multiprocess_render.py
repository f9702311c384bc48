"""Multiprocess mode against one process: /metrics summed from the files of several
processes renders exactly what one process doing all their work renders; the file format
under growth, half-written records and ended writers; and the push path of a forked child
(its own instance, its own counts) received by an OTLP/HTTP endpoint."""

from __future__ import annotations

import gzip
import http.server
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from prometheus_client.parser import text_string_to_metric_families

from helpers import serving
from mp_workers import fork, wait_exit
from trading_telemetry import PlaneMetrics, TelemetryConfig, init_metrics_exporter, reset
from trading_telemetry._mpfile import FileReader, SlotFile
from trading_telemetry.catalog import Kind, Plane, plane_specs

pytestmark = pytest.mark.filterwarnings("ignore:.*multi-threaded.*:DeprecationWarning")  # fork with threads, 3.12+

EXAMPLES = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip
UPTIME = "trading_telemetry_uptime_seconds"
LABEL_VALUES = ["SPY", "QQQ", 'a"b', "new\nline", "é€"]
# Values whose sums are exact in binary, so that the order in which processes add them up cannot matter.
EXACT = st.one_of(st.integers(-3, 10**6), st.sampled_from([0.25, 0.5, 1.5, 7.0, -2.5, 1e-3]))
ANY = st.one_of(
    EXACT, st.floats(min_value=-1e6, max_value=1e12, allow_nan=False, allow_infinity=False), st.just(float("nan"))
)

Op = tuple[str, str, dict[str, str], Any]


@st.composite
def workloads(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> tuple[Plane, list[Op]]:
    """(plane, [(how, key, labels, value)]): keyed calls, and bound calls (the checked methods, or the
    unchecked path decorators take, with a valid value)."""
    plane = draw(st.sampled_from(list(Plane)))
    specs = plane_specs(plane)
    ops: list[Op] = []
    for _ in range(draw(st.integers(1, 30))):
        key = draw(st.sampled_from(sorted(specs)))
        labels = {name: draw(st.sampled_from(LABEL_VALUES)) for name in specs[key].labels}
        how = draw(st.sampled_from(["keyed", "bound", "unchecked"]))
        value = draw(values)
        if how == "unchecked" and (specs[key].kind is Kind.GAUGE or not (value == value and 0 <= value <= 1e9)):
            how = "bound"
        ops.append((how, key, labels, value))
    return plane, ops


def record(metrics: PlaneMetrics, ops: list[Op]) -> None:
    specs = plane_specs(metrics.plane)
    for how, key, labels, value in ops:
        method = {Kind.COUNTER: "inc", Kind.GAUGE: "set", Kind.HISTOGRAM: "observe"}[specs[key].kind]
        if how == "keyed":
            getattr(metrics, method)(key, value, **labels)
        elif how == "bound":
            getattr(metrics.bind(key, **labels), method)(value)
        else:
            metrics.bind(key, **labels).record_unchecked(value)


def families(metrics: PlaneMetrics) -> dict[str, Any]:
    """family -> (type, help, {(sample, sorted labels, value)}): the uptime's value left out (it moves)."""
    assert metrics.exposition is not None
    return {
        f.name: (
            f.type,
            f.documentation,
            {(s.name, tuple(sorted(s.labels.items())), None if f.name == UPTIME else s.value) for s in f.samples},
        )
        for f in text_string_to_metric_families(metrics.exposition.render().decode())
    }


def one_process(plane: Plane, ops: list[Op]) -> dict[str, Any]:
    reset()
    metrics = init_metrics_exporter(plane, config=TelemetryConfig())
    record(metrics, ops)
    expected = families(metrics)
    reset()
    return expected


@EXAMPLES
@given(workload=workloads(ANY))
def test_in_one_process_multiprocess_mode_renders_what_the_default_mode_renders(
    workload: tuple[Plane, list[Op]],
) -> None:
    """Same families, types, help, samples, label sets (escaping included) and values, drops and target_info."""
    plane, ops = workload
    expected = one_process(plane, ops)
    directory = tempfile.mkdtemp()
    try:
        metrics = init_metrics_exporter(plane, config=TelemetryConfig(multiprocess_dir=directory))
        record(metrics, ops)
        assert families(metrics) == expected
    finally:
        reset()
        shutil.rmtree(directory)


@settings(EXAMPLES, max_examples=15)
@given(workload=workloads(EXACT), cuts=st.tuples(st.floats(0, 1), st.floats(0, 1)))
@pytest.mark.integration  # a forked child records a long workload: out of `make check`
def test_work_split_between_a_parent_and_its_forked_child_renders_as_one_process(
    workload: tuple[Plane, list[Op]], cuts: tuple[float, float]
) -> None:
    """The parent does the first part, a forked child the middle, the parent the rest: /metrics is what one
    process doing all of it shows (gauges: the value set last)."""
    plane, ops = workload
    first, second = sorted(round(c * len(ops)) for c in cuts)
    expected = one_process(plane, ops)
    directory = tempfile.mkdtemp()
    try:
        metrics = init_metrics_exporter(plane, config=TelemetryConfig(multiprocess_dir=directory))
        record(metrics, ops[:first])
        assert wait_exit(fork(lambda: record(metrics, ops[first:second]))) == 0
        record(metrics, ops[second:])
        assert families(metrics) == expected
    finally:
        reset()
        shutil.rmtree(directory)


def test_a_file_grows_and_every_record_keeps_its_place(tmp_path: Path) -> None:
    """Past the first 64 KiB the file is mapped again: views handed out before still write into the file."""
    writer = SlotFile(str(tmp_path / "data_plane-1-a.mmap"))
    views = [writer.add(f'["k{i:05}", ["{"x" * 90}"]]'.encode(), 3) for i in range(1000)]
    for i, view in enumerate(views):
        view[0], view[2] = i, -i / 4
    reader = FileReader(writer.path)
    reader.refresh()
    assert len(reader.records) == 1000
    assert os.path.getsize(writer.path) > 1 << 16
    for i, (key, offset, count) in enumerate(reader.records):
        assert key == [f"k{i:05}", ["x" * 90]]
        assert reader.values(offset, count) == (i, 0.0, -i / 4)
    views[0][1] = 42.0  # through the first mapping, after the file grew
    assert reader.values(*reader.records[0][1:]) == (0.0, 42.0, 0.0)


def test_a_record_is_read_once_whole_and_a_bad_key_is_left_out(tmp_path: Path) -> None:
    """Bytes past the published length are not read; a key that is not JSON is skipped and counted."""
    writer = SlotFile(str(tmp_path / "data_plane-1-a.mmap"))
    writer.add(b'["a", []]', 1)[0] = 1.0
    writer.add(b"not json", 1)
    reader = FileReader(writer.path)
    reader.refresh()
    assert ([key for key, _, _ in reader.records], reader.bad) == ([["a", []]], 1)
    used = int.from_bytes(Path(writer.path).read_bytes()[4:8], "little")
    with open(writer.path, "r+b") as raw:  # a record being written: its bytes there, the length not yet moved
        raw.seek(used)
        raw.write((9).to_bytes(4, "little") + (1).to_bytes(4, "little") + b'["b", []]')
    reader.refresh()
    assert [key for key, _, _ in reader.records] == [["a", []]]
    writer.add(b'["c", []]', 1)[0] = 3.0
    reader.refresh()
    assert [key for key, _, _ in reader.records] == [["a", []], ["c", []]]


def test_a_file_reads_live_while_its_process_holds_it_and_ended_after(tmp_path: Path) -> None:
    """The writer's lock is how readers tell a running process from an ended one, however it ended."""
    writer = SlotFile(str(tmp_path / "data_plane-1-a.mmap"))
    reader = FileReader(writer.path)
    assert reader.live()
    writer.disown()
    assert not reader.live()
    child = SlotFile  # a process killed outright: the kernel drops its lock

    def hold() -> None:
        child(str(tmp_path / "data_plane-2-b.mmap"))
        os.kill(os.getpid(), 9)

    pid = fork(hold)
    assert wait_exit(pid) == -9
    assert not FileReader(str(tmp_path / "data_plane-2-b.mmap")).live()


class _Receiver(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP metrics endpoint that keeps every request."""

    requests: list[ExportMetricsServiceRequest]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportMetricsServiceRequest()
        request.ParseFromString(body)
        self.requests.append(request)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[ExportMetricsServiceRequest]]]:
    requests: list[ExportMetricsServiceRequest] = []
    with serving(type("R", (_Receiver,), {"requests": requests})) as url:
        yield f"{url}/v1/metrics", requests


def ticks_by_instance(requests: list[ExportMetricsServiceRequest]) -> dict[str, list[float]]:
    """service.instance.id -> every data_ticks_received value it exported, in order."""
    out: dict[str, list[float]] = {}
    for request in requests:
        for rm in request.resource_metrics:
            attributes = {a.key: a.value.string_value for a in rm.resource.attributes}
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == "data_ticks_received":
                        points = metric.sum.data_points
                        out.setdefault(attributes["service.instance.id"], []).extend(
                            getattr(p, p.WhichOneof("value")) for p in points
                        )
    return out


@pytest.mark.parametrize("directory", [False, True], ids=["default", "multiprocess"])
def test_a_forked_child_pushes_its_own_counts_as_its_own_instance(
    receiver: tuple[str, list[ExportMetricsServiceRequest]], tmp_path: Path, directory: bool
) -> None:
    """Parent 5, child 7: the child's exports carry its pid in service.instance.id and only its 7; nothing is
    exported from the child under the parent's instance; the instances sum to 12."""
    url, requests = receiver
    config = TelemetryConfig(
        metrics_exporters=("otlp",), otlp_metrics_endpoint=url, multiprocess_dir=str(tmp_path) if directory else ""
    )
    metrics = init_metrics_exporter("data_plane", config=config)
    metrics.inc("ticks_received", 5, source="ibkr_rt", symbol="SPY")

    def child() -> None:
        metrics.inc("ticks_received", 7, source="ibkr_rt", symbol="SPY")
        assert metrics.force_flush()
        assert reset(timeout=10)

    child_pid = fork(child)
    assert wait_exit(child_pid) == 0
    assert metrics.force_flush()
    host = socket.gethostname()
    parent = f"{host}/data_plane/{os.getpid()}" if directory else f"{host}/data_plane"
    exported = ticks_by_instance(requests)
    assert set(exported) == {parent, f"{host}/data_plane/{child_pid}"}
    assert set(exported[parent]) == {5}
    assert set(exported[f"{host}/data_plane/{child_pid}"]) == {7}
    assert reset(timeout=10)
