"""Counts recorded in other processes: forked children, multiprocessing pools (fork and
spawn) and pre-forked workers reach the /metrics of the process serving it, summed."""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client.parser import text_string_to_metric_families

from helpers import http_get, wait_for
from mp_workers import FRESHNESS, TICK_LABELS, Worker, fork, record_task, wait_exit
from trading_telemetry import PlaneMetrics, TelemetryConfig, init_metrics_exporter, reset, serve_metrics
from trading_telemetry._globals import STATE
from trading_telemetry.errors import ConfigError
from trading_telemetry.multiprocess import clear_directory

pytestmark = pytest.mark.filterwarnings("ignore:.*multi-threaded.*:DeprecationWarning")  # fork with threads, 3.12+

TICKS = ("data_ticks_received_total", (("service", "data_plane"), ("source", "ibkr_rt"), ("symbol", "SPY")))
SERIES = (("service", "data_plane"), ("source", "ibkr_rt"), ("symbol", "SPY"))
DROPS = (
    "trading_telemetry_dropped_measurements_total",
    (("metric", "ticks_received"), ("reason", "negative_increment"), ("service", "data_plane")),
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def rendered(metrics: PlaneMetrics) -> Samples:
    assert metrics.exposition is not None
    return parse(metrics.exposition.render().decode())


def freshness(samples: Samples) -> tuple[float, float]:
    """data_freshness's (count, sum) for the test's series."""
    return samples[("data_freshness_seconds_count", SERIES)], samples[("data_freshness_seconds_sum", SERIES)]


def bucket(samples: Samples, le: str) -> float:
    return samples[("data_freshness_seconds_bucket", tuple(sorted((*SERIES, ("le", le)))))]


@pytest.fixture
def directory(tmp_path: Path) -> str:
    return str(tmp_path / "multiprocess")


def multiprocess(directory: str, **kw: Any) -> TelemetryConfig:
    return TelemetryConfig(multiprocess_dir=directory, **kw)


def test_what_forked_children_record_is_summed_on_the_parents_metrics(directory: str) -> None:
    """Parent 5 ticks, children 7, 11 and 13: /metrics shows 36, the histogram and drops summed too."""
    metrics = init_metrics_exporter("data_plane", config=multiprocess(directory))
    for _ in range(5):
        metrics.inc("ticks_received", **TICK_LABELS)
    metrics.observe("data_freshness", FRESHNESS[0], **TICK_LABELS)
    metrics.inc("ticks_received", -1, **TICK_LABELS)

    def child(ticks: int) -> None:
        for _ in range(ticks):
            metrics.inc("ticks_received", **TICK_LABELS)
        metrics.observe("data_freshness", FRESHNESS[2], **TICK_LABELS)
        metrics.observe("data_freshness", FRESHNESS[3], **TICK_LABELS)
        metrics.inc("ticks_received", -1, **TICK_LABELS)
        assert metrics.bind("ticks_received", **TICK_LABELS).value == ticks  # type: ignore[attr-defined]

    for pid in [fork(lambda n=n: child(n)) for n in (7, 11, 13)]:
        assert wait_exit(pid) == 0
    samples = rendered(metrics)
    assert samples[TICKS] == 5 + 7 + 11 + 13
    assert freshness(samples) == (7, pytest.approx(FRESHNESS[0] + 3 * (FRESHNESS[2] + FRESHNESS[3])))
    assert (bucket(samples, "0.005"), bucket(samples, "0.5"), bucket(samples, "5.0"), bucket(samples, "+Inf")) == (
        1, 4, 4, 7,
    )  # fmt: skip
    assert samples[DROPS] == 4
    assert metrics.bind("ticks_received", **TICK_LABELS).value == 5  # type: ignore[attr-defined]
    assert len(os.listdir(directory)) == 4  # one file per process that recorded


@pytest.mark.integration  # starts pools of fresh interpreters (spawn, forkserver): out of `make check`
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_pool_s_workers_counts_are_summed_ended_workers_included(
    method: str, directory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A multiprocessing pool whose workers are replaced every 2 tasks: /metrics has every task's ticks,
    observations and drops, and the parent's own."""
    monkeypatch.setenv("TRADING_TELEMETRY_MULTIPROCESS_DIR", directory)  # how spawned workers learn it
    metrics = init_metrics_exporter("data_plane", config=multiprocess(directory))
    metrics.inc("ticks_received", 3, **TICK_LABELS)
    tasks = [(i, 10 + i) for i in range(10)]
    with multiprocessing.get_context(method).Pool(3, maxtasksperchild=2) as pool:
        results = pool.map(record_task, tasks, chunksize=1)
    pids = {pid for pid, _, _ in results}
    assert len(pids) >= 5  # workers were replaced: ended ones' counts must still count
    samples = rendered(metrics)
    assert samples[TICKS] == 3 + sum(ticks for _, ticks, _ in results)
    assert freshness(samples)[0] == sum(observations for _, _, observations in results)
    assert samples[DROPS] == len(tasks)


def test_pre_forked_workers_one_killed_and_replaced_lose_nothing(directory: str) -> None:
    """Gunicorn-style: the parent serves /metrics, three forked workers record, one is killed (SIGKILL) and
    replaced; the scrape shows the exact sum of what every process recorded."""
    metrics = init_metrics_exporter("data_plane", config=multiprocess(directory))
    with serve_metrics(metrics, port=0) as server:
        metrics.inc("ticks_received", 2, **TICK_LABELS)
        workers = [Worker(metrics) for _ in range(3)]
        for n, worker in enumerate(workers):
            worker.ask(f"ticks {100 + n}")
        workers[1].kill()
        workers[1] = Worker(metrics)
        workers[1].ask("ticks 1000")
        workers[0].ask("ticks 5")
        expected = 2 + 100 + 101 + 102 + 1000 + 5

        def scraped() -> Samples:
            status, _, body = http_get(server.url + "/metrics")
            assert status == 200
            return parse(body.decode())

        wait_for("/metrics to show every worker's ticks", lambda: scraped()[TICKS] == expected)
        assert freshness(scraped())[0] == 5  # one observation per command
        for worker in (workers[0], workers[1], workers[2]):
            worker.stop()
        assert scraped()[TICKS] == expected  # ended workers keep counting


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("mostrecent", {"": 0.3}),
        ("livesum", {"": pytest.approx(0.9)}),
        ("livemax", {"": 0.4}),
        ("livemin", {"": 0.2}),
        ("liveall", {"parent": 0.4, "b": 0.2, "c": 0.3}),
    ],
)
def test_gauges_follow_the_configured_mode(directory: str, mode: str, expected: dict[Any, Any]) -> None:
    """Parent 0.4, worker A 0.95 then ended, worker B 0.2, worker C 0.3 last: each mode's value; the ended
    worker's only in mostrecent, had it set last."""
    metrics = init_metrics_exporter("data_plane", config=multiprocess(directory, multiprocess_gauge=mode))
    metrics.set("completeness_score", 0.4, symbol="SPY")
    a, b, c = Worker(metrics), Worker(metrics), Worker(metrics)
    a.ask("gauge 0.95")
    a.stop()
    b.ask("gauge 0.2")
    c.ask("gauge 0.3")
    samples = {labels: v for (name, labels), v in rendered(metrics).items() if name == "data_completeness_score"}
    pids = {"parent": os.getpid(), "b": b.pid, "c": c.pid}
    expected = {
        tuple(sorted({"service": "data_plane", "symbol": "SPY", **({"pid": str(pids[k])} if k else {})}.items())): v
        for k, v in expected.items()
    }
    assert samples == expected
    b.stop()
    c.stop()


def test_mostrecent_shows_an_ended_workers_value_when_it_was_set_last(directory: str) -> None:
    """The gauge keeps the last value set, as one process would, even when its process has ended."""
    metrics = init_metrics_exporter("data_plane", config=multiprocess(directory))
    metrics.set("completeness_score", 0.4, symbol="SPY")
    worker = Worker(metrics)
    worker.ask("gauge 0.95")
    worker.stop()
    assert rendered(metrics)[("data_completeness_score", (("service", "data_plane"), ("symbol", "SPY")))] == 0.95


def test_a_lock_held_at_the_fork_does_not_block_the_childs_recording(directory: str) -> None:
    """The plane's, the series', the drop counts', the suggestions' and the SDK's provider locks held by the parent
    when it forks: the child still records, new series and drops (logged with a suggestion) included, and its
    counts are summed."""
    config = multiprocess(directory, metrics_exporters=("prometheus", "console"))  # a push reader to build again
    metrics = init_metrics_exporter("data_plane", config=config)
    handle = metrics.bind("ticks_received", **TICK_LABELS)
    locks = [metrics.store._lock, metrics.policy._lock, handle._lock]  # type: ignore[attr-defined]
    locks += [STATE.lock, STATE.suggestions_lock, STATE.exporter_log_lock]
    locks.append(MeterProvider._all_metric_readers_lock)  # the SDK's, taken by every provider's construction
    for lock in locks:
        lock.acquire()

    def child() -> None:
        handle.inc(3)
        metrics.inc("ticks_received", 4, source="ibkr_rt", symbol="QQQ")  # a new series
        metrics.inc("ticks_received", -1, **TICK_LABELS)  # a drop
        metrics.inc("tick_received", **TICK_LABELS)  # a drop logged with a suggestion ("did you mean")

    try:
        assert wait_exit(fork(child), timeout=20) == 0
    finally:
        for lock in locks:
            lock.release()
    samples = rendered(metrics)
    assert samples[TICKS] == 3
    assert (
        samples[("data_ticks_received_total", (("service", "data_plane"), ("source", "ibkr_rt"), ("symbol", "QQQ")))]
        == 4
    )
    assert samples[DROPS] == 1


def test_a_forked_child_lets_go_of_the_parents_server_port(directory: str) -> None:
    """While a forked child runs, the parent can close its /metrics server and serve again on the same port."""
    metrics = init_metrics_exporter("data_plane", config=multiprocess(directory))
    server = serve_metrics(metrics, port=0)
    port = server.port
    worker = Worker(metrics)
    worker.ask("ticks 1")
    server.close()
    with serve_metrics(metrics, port=port) as again:
        status, _, body = http_get(again.url + "/metrics")
        assert status == 200
        assert parse(body.decode())[TICKS] == 1
    worker.stop()


def test_without_a_directory_a_forked_child_warns_once_and_counts_from_zero(tmp_path: Path) -> None:
    """No multiprocess directory, the parent serving /metrics: the child logs one warning naming the fix, and
    counts only what it records, under an instance id of its own."""
    log = tmp_path / "child.log"
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig())
    metrics.inc("ticks_received", 5, **TICK_LABELS)
    import logging

    handler = logging.FileHandler(log)
    logging.getLogger("trading_telemetry").addHandler(handler)
    try:
        with serve_metrics(metrics, port=0):

            def child() -> None:
                metrics.inc("ticks_received", 7, **TICK_LABELS)
                samples = rendered(metrics)
                assert samples[TICKS] == 7
                (instance,) = [
                    dict(labels)["service_instance_id"] for (name, labels) in samples if name == "target_info"
                ]
                assert instance == f"{socket.gethostname()}/data_plane/{os.getpid()}"

            pid = fork(child)
            assert wait_exit(pid) == 0
    finally:
        logging.getLogger("trading_telemetry").removeHandler(handler)
        handler.close()
    lines = log.read_text().splitlines()
    assert len(lines) == 1, lines
    assert f"process {pid} was forked" in lines[0]
    assert "TRADING_TELEMETRY_MULTIPROCESS_DIR" in lines[0]
    assert rendered(metrics)[TICKS] == 5


def test_without_a_server_in_the_parent_a_forked_child_does_not_warn(tmp_path: Path) -> None:
    """Nothing served before the fork: nothing the child records goes missing from a /metrics, no warning."""
    log = tmp_path / "child.log"
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig())
    import logging

    handler = logging.FileHandler(log)
    logging.getLogger("trading_telemetry").addHandler(handler)
    try:
        assert wait_exit(fork(lambda: metrics.inc("ticks_received", **TICK_LABELS))) == 0
    finally:
        logging.getLogger("trading_telemetry").removeHandler(handler)
        handler.close()
    assert log.read_text() == ""


def test_an_uncreatable_directory_is_a_set_up_error(tmp_path: Path) -> None:
    """A directory that cannot be created raises at the plane's start, naming the variable and the path."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="TRADING_TELEMETRY_MULTIPROCESS_DIR") as caught:
        init_metrics_exporter("data_plane", config=multiprocess(str(blocker / "mp")))
    assert str(blocker / "mp") in str(caught.value)


def test_a_directory_removed_under_the_plane_never_breaks_recording(
    directory: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The directory gone before the first recording: recording goes on in memory, one error line says so."""
    import shutil

    metrics = init_metrics_exporter("data_plane", config=multiprocess(directory))
    shutil.rmtree(directory)
    for _ in range(3):
        metrics.inc("ticks_received", **TICK_LABELS)
        metrics.observe("data_freshness", 0.1, source="ibkr_rt", symbol="QQQ")
    assert metrics.bind("ticks_received", **TICK_LABELS).value == 3  # type: ignore[attr-defined]
    errors = [r for r in caplog.records if "cannot write to the multiprocess directory" in r.getMessage()]
    assert len(errors) == 1
    assert metrics.multiprocess is not None
    assert metrics.multiprocess.failed
    health = metrics.health()
    assert health["status"] == "degraded"
    assert "FileNotFoundError" in health["multiprocess"]["write_failure"]


@pytest.fixture(autouse=True)
def _no_plane_left() -> Iterator[None]:
    yield
    reset()


@pytest.mark.integration  # forks forty workers one after another: out of `make check`
def test_ended_workers_files_are_read_once_and_closed(directory: str) -> None:
    """Forty short-lived workers: their files are summed once and closed, so a scrape reads (and holds open) the
    files of running processes only, and every later scrape shows the same totals."""
    metrics = init_metrics_exporter("data_plane", config=multiprocess(directory))
    metrics.inc("ticks_received", **TICK_LABELS)
    fds = len(os.listdir("/proc/self/fd"))
    for n in range(40):
        assert wait_exit(fork(lambda n=n: metrics.inc("ticks_received", n, **TICK_LABELS))) == 0
    expected = 1 + sum(range(40))
    for _ in range(3):
        assert rendered(metrics)[TICKS] == expected
    assert metrics.multiprocess is not None
    assert len(metrics.multiprocess._readers) == 1  # the parent's own file
    state = metrics.health()["multiprocess"]
    assert (state["running_process_files"], state["ended_process_files"], state["write_failure"]) == (1, 40, None)
    assert len(os.listdir("/proc/self/fd")) <= fds + 2  # the reader of the parent's file, and its mapping
    worker = Worker(metrics)
    worker.ask("ticks 5")
    assert rendered(metrics)[TICKS] == expected + 5
    worker.stop()
    assert rendered(metrics)[TICKS] == expected + 5


def test_clearing_the_directory_removes_ended_processes_files_only(
    directory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new run starts from zero: clear_directory removes the files an earlier run left, never a running
    process's, nor files that are not ours."""
    metrics = init_metrics_exporter("data_plane", config=multiprocess(directory))
    metrics.inc("ticks_received", **TICK_LABELS)
    for n in (1, 2):
        assert wait_exit(fork(lambda n=n: metrics.inc("ticks_received", n, **TICK_LABELS))) == 0
    Path(directory, "notes.txt").write_text("kept")
    monkeypatch.setenv("TRADING_TELEMETRY_MULTIPROCESS_DIR", directory)
    assert clear_directory() == 2
    assert sorted(p.split("-")[0] for p in os.listdir(directory)) == ["data_plane", "notes.txt"]
    assert clear_directory(directory) == 0
    reset()
    assert clear_directory(directory) == 1  # the plane stopped: its file is an ended process's now
    assert os.listdir(directory) == ["notes.txt"]
    assert clear_directory(str(Path(directory, "missing"))) == 0


def test_a_full_file_system_never_breaks_recording(
    directory: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The space for more series cannot be reserved (ENOSPC): recording goes on, in memory for the new series,
    one error line says so, /health says degraded, and the series already in the file keep being summed."""
    import errno

    metrics = init_metrics_exporter("data_plane", config=multiprocess(directory))
    metrics.inc("ticks_received", **TICK_LABELS)

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    for i in range(200):  # past the first page: the file must grow
        metrics.inc("ticks_received", source="ibkr_rt", symbol=f"S{i:03d}")
    metrics.inc("ticks_received", 2, **TICK_LABELS)
    assert metrics.bind("ticks_received", source="ibkr_rt", symbol="S199").value == 1  # type: ignore[attr-defined]
    assert rendered(metrics)[TICKS] == 3
    errors = [r for r in caplog.records if "cannot write to the multiprocess directory" in r.getMessage()]
    assert len(errors) == 1
    assert "No space left on device" in errors[0].getMessage()
    assert metrics.health()["status"] == "degraded"
