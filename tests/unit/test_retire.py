"""Retiring series: ``metrics.retire`` removes series from /metrics and the SDK's readers,
frees their place under the cardinality limit, and makes their bound handles inert."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from prometheus_client.parser import text_string_to_metric_families

from trading_telemetry import OrderLifecycle, PlaneMetrics, TelemetryConfig, init_metrics_exporter, reset, timed
from trading_telemetry._sdk import otlp_temporality
from trading_telemetry.errors import LabelError, RetiredSeriesError, RetireUnsupportedError, UnknownMetricError

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])  # fmt: skip

PRODUCTION = TelemetryConfig(metrics_exporters=("prometheus",))
STRICT = TelemetryConfig(strict=True, metrics_exporters=("prometheus",))
Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def plane(
    name: str = "data_plane",
    config: TelemetryConfig = PRODUCTION,
    delta: bool = False,
    extra_readers: Sequence[InMemoryMetricReader] = (),
) -> tuple[PlaneMetrics, InMemoryMetricReader]:
    """A plane serving /metrics, with an in-memory SDK reader (cumulative, or delta), and ``extra_readers``."""
    temporality = {}
    if delta:
        from opentelemetry.sdk.metrics import Counter, Histogram

        temporality = {Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}
    reader = InMemoryMetricReader(preferred_temporality=temporality)  # type: ignore[arg-type]
    return init_metrics_exporter(name, config=config, metric_readers=[reader, *extra_readers]), reader


def pulled(metrics: PlaneMetrics, family: str) -> Series:
    """The samples of ``family`` on /metrics (service label left out), by name and labels."""
    assert metrics.exposition is not None
    out: Series = {}
    for f in text_string_to_metric_families(metrics.exposition.render().decode()):
        if f.name == family:
            for s in f.samples:
                labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "service"))
                out[(s.name, labels)] = s.value
    return out


def collected(reader: InMemoryMetricReader) -> dict[str, dict[tuple[tuple[str, str], ...], Any]]:
    """The data points of one SDK collection, by instrument and labels (service left out)."""
    out: dict[str, dict[tuple[tuple[str, str], ...], Any]] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    labels = tuple(sorted((k, v) for k, v in point.attributes.items() if k != "service"))
                    out.setdefault(metric.name, {})[labels] = point
    return out


def pushed(reader: InMemoryMetricReader, name: str) -> dict[tuple[tuple[str, str], ...], Any]:
    """The data points of instrument ``name`` in one SDK collection, by labels (service left out)."""
    return collected(reader).get(name, {})


def drops(metrics: PlaneMetrics) -> dict[tuple[str, str], int]:
    return metrics.policy.counts()


ESZ6 = {"source": "cme", "symbol": "ESZ6"}
ESH7 = {"source": "cme", "symbol": "ESH7"}
ESZ6_KEY = (("source", "cme"), ("symbol", "ESZ6"))
ESH7_KEY = (("source", "cme"), ("symbol", "ESH7"))


def test_a_retired_symbol_leaves_metrics_and_the_sdk_readers() -> None:
    """retire(symbol=...) removes that symbol's series of every metric, from /metrics and the SDK, nothing else."""
    metrics, reader = plane()
    for labels in (ESZ6, ESH7):
        metrics.inc("ticks_received", 3, **labels)
        metrics.observe("data_freshness", 0.1, **labels)
        metrics.set("completeness_score", 0.9, symbol=labels["symbol"])
    assert set(pushed(reader, "data_ticks_received")) == {ESZ6_KEY, ESH7_KEY}
    assert metrics.retire(symbol="ESZ6") == 3
    assert pulled(metrics, "data_ticks_received") == {("data_ticks_received_total", ESH7_KEY): 3}
    assert set(pushed(reader, "data_ticks_received")) == {ESH7_KEY}
    assert set(pushed(reader, "data_freshness")) == {ESH7_KEY}
    assert set(pushed(reader, "data_completeness_score")) == {(("symbol", "ESH7"),)}
    assert {labels for _, labels in pulled(metrics, "data_completeness_score")} == {(("symbol", "ESH7"),)}
    assert metrics.series_count("ticks_received") == 1
    assert metrics.retire(symbol="ESZ6") == 0
    assert drops(metrics) == {}


def test_retire_one_metric_of_a_stopped_strategy() -> None:
    """retire(key, strategy=...) removes that metric's series of the strategy only."""
    metrics, reader = plane("strategy_plane")
    for strategy in ("mom_1", "mr_2"):
        metrics.set("pnl_unrealized_usd", 10.0, strategy=strategy)
        metrics.set("pnl_realized_usd", 5.0, strategy=strategy)
    assert metrics.retire("pnl_unrealized_usd", strategy="mom_1") == 1
    assert set(pushed(reader, "strategy_pnl_unrealized_usd")) == {(("strategy", "mr_2"),)}
    assert set(pushed(reader, "strategy_pnl_realized_usd")) == {(("strategy", "mom_1"),), (("strategy", "mr_2"),)}
    assert metrics.retire("pnl_realized_usd") == 2  # a key alone: all its series
    assert pushed(reader, "strategy_pnl_realized_usd") == {}
    assert pulled(metrics, "strategy_pnl_realized_usd") == {}


def test_a_bound_handle_of_a_retired_series_is_inert_and_counts_a_drop() -> None:
    """In production mode a retired series' handle records nothing, never raises, and counts drops as retired."""
    metrics, reader = plane()
    handle = metrics.bind("ticks_received", **ESZ6)
    gauge = metrics.bind("completeness_score", symbol="ESZ6")
    handle.inc(2)
    metrics.retire(symbol="ESZ6")
    handle.inc(5)
    handle.record_unchecked(1)
    gauge.set(0.5)
    assert pulled(metrics, "data_ticks_received") == {}
    assert pushed(reader, "data_ticks_received") == {}
    assert drops(metrics) == {("ticks_received", "retired"): 2, ("completeness_score", "retired"): 1}
    assert handle.retired
    assert repr(handle).startswith("<RetiredCounterHandle data_plane/ticks_received")


def test_a_retired_handle_raises_in_strict_mode() -> None:
    """In strict mode using a retired handle raises RetiredSeriesError naming the metric and its labels."""
    metrics, _ = plane(config=STRICT)
    handle = metrics.bind("data_freshness", **ESZ6)
    metrics.retire("data_freshness", symbol="ESZ6")
    with pytest.raises(RetiredSeriesError, match=r"data_freshness: the series .*ESZ6.* was retired") as raised:
        handle.observe(0.1)
    assert raised.value.reason == "retired"


@pytest.mark.parametrize("delta", [False, True])
def test_recording_again_after_retirement_starts_a_new_series_from_zero(delta: bool) -> None:
    """The same labels recorded after retirement make a new series from zero, on /metrics and in the SDK."""
    metrics, reader = plane(delta=delta)
    old = metrics.bind("ticks_received", **ESZ6)
    metrics.inc("ticks_received", 5, **ESZ6)
    metrics.observe("data_freshness", 2.0, **ESZ6)
    first = pushed(reader, "data_ticks_received")[ESZ6_KEY]
    metrics.retire(symbol="ESZ6")
    assert pushed(reader, "data_ticks_received") == {}
    metrics.inc("ticks_received", 1, **ESZ6)
    metrics.observe("data_freshness", 0.5, **ESZ6)
    new = metrics.bind("ticks_received", **ESZ6)
    assert new is not old
    assert not new.retired
    assert pulled(metrics, "data_ticks_received") == {("data_ticks_received_total", ESZ6_KEY): 1}
    now = collected(reader)
    point = now["data_ticks_received"][ESZ6_KEY]
    assert point.value == 1
    assert point.start_time_unix_nano > first.start_time_unix_nano
    histogram = now["data_freshness"][ESZ6_KEY]
    assert (histogram.count, histogram.sum) == (1, 0.5)
    assert drops(metrics) == {}


def test_retirement_frees_the_series_place_under_the_cardinality_limit() -> None:
    """At the limit, retiring a series lets a new label set in."""
    config = TelemetryConfig(strict=True, metrics_exporters=(), cardinality_limit=2)
    metrics, _ = plane(config=config)
    metrics.inc("ticks_received", **ESZ6)
    metrics.inc("ticks_received", **ESH7)
    assert metrics.retire(symbol="ESZ6") == 1
    metrics.inc("ticks_received", source="cme", symbol="ESM7")
    assert metrics.series_count("ticks_received") == 2


@pytest.mark.parametrize(
    ("key", "labels", "error", "reason", "words"),
    [
        ("tick_received", {"symbol": "X"}, UnknownMetricError, "unknown_metric", "unknown metric 'tick_received'"),
        ("completeness_score", {"source": "cme"}, LabelError, "unknown_label", "retire() by label 'source'='cme'"),
        (None, {"strategy": "mom_1"}, LabelError, "unknown_label", "no metric of data_plane has it"),
        ("ticks_received", {"symbol": ""}, LabelError, "invalid_label_value", "label symbol=''"),
        (None, {}, Exception, "invalid_input", "needs a metric key, a label=value, or both"),
    ],
)  # fmt: skip
def test_bad_retire_calls_follow_the_two_regimes(
    key: str | None, labels: dict[str, Any], error: type[Exception], reason: str, words: str
) -> None:
    """A bad retire call raises a clear error in strict mode; production mode removes nothing and counts a drop."""
    strict, _ = plane(config=TelemetryConfig(strict=True, metrics_exporters=()))
    strict.inc("ticks_received", **ESZ6)
    with pytest.raises(error) as raised:
        strict.retire(key, **labels)
    assert words in str(raised.value)
    assert getattr(raised.value, "reason", None) == reason
    reset()
    production, _ = plane(config=TelemetryConfig(metrics_exporters=()))
    production.inc("ticks_received", **ESZ6)
    assert production.retire(key, **labels) == 0
    assert production.series_count("ticks_received") == 1
    assert sum(n for (_, why), n in drops(production).items() if why == reason) == 1


def test_labels_no_metric_has_together_retire_nothing() -> None:
    """Labels each known to the plane but never on one metric together remove nothing, without a drop."""
    metrics, _ = plane("order_plane")
    metrics.inc("orders_rejected", strategy="mom_1", symbol="SPY", reason="risk")
    assert metrics.retire(reason="risk", direction="buy") == 0
    assert drops(metrics) == {}


def test_order_lifecycle_records_on_new_series_after_its_strategy_retires() -> None:
    """OrderLifecycle's shared handles of a retired strategy are made anew: later orders count from zero."""
    metrics, reader = plane("order_plane")
    order = {"strategy": "mom_1", "symbol": "SPY", "direction": "BUY", "order_type": "LIMIT"}
    OrderLifecycle(**order, metrics=metrics).intent()
    OrderLifecycle(**order, metrics=metrics).intent()
    assert metrics.retire(strategy="mom_1") >= 1
    OrderLifecycle(**order, metrics=metrics).intent()
    (point,) = pushed(reader, "orders_received").values()
    assert point.value == 1
    assert drops(metrics) == {}


def sdk_aggregations(metrics: PlaneMetrics, key: str) -> int:
    """How many aggregations the SDK's readers hold for ``key``'s instrument (private SDK state, read to show it
    is released)."""
    instrument = metrics.store._instruments[key]
    return sum(
        len(match._attributes_aggregation)
        for storage in instrument._measurement_consumer._reader_storages.values()
        for match in storage._instrument_view_instrument_matches.get(instrument, ())
    )


def test_retired_series_leave_no_state_in_the_sdk() -> None:
    """Strategies that come and go: after each retirement the SDK's readers (cumulative and delta) hold an
    aggregation for the live series only, and a strategy that comes back is exported from zero on both."""
    delta = InMemoryMetricReader(preferred_temporality=otlp_temporality("delta"))
    metrics, cumulative = plane("strategy_plane", extra_readers=[delta])
    for day in range(5):
        for n in range(50):
            metrics.set("pnl_unrealized_usd", float(n), strategy=f"s{day}_{n}")
        cumulative.get_metrics_data(), delta.get_metrics_data()
        assert metrics.retire("pnl_unrealized_usd") == 50
        assert sdk_aggregations(metrics, "pnl_unrealized_usd") == 0
    metrics.set("pnl_unrealized_usd", 7.0, strategy="s0_1")
    assert sdk_aggregations(metrics, "pnl_unrealized_usd") == 2  # one per reader
    for reader in (cumulative, delta):
        assert {k: p.value for k, p in pushed(reader, "strategy_pnl_unrealized_usd").items()} == {
            (("strategy", "s0_1"),): 7.0
        }


@pytest.mark.parametrize("exemplar_filter", ["trace_based", "always_on"])
def test_recording_retiring_and_collecting_at_once_end_and_agree(exemplar_filter: str) -> None:
    """Two threads recording (one through a timed function), one retiring symbols and one collecting, all at once,
    with every observation offered as an exemplar or none: every thread ends (no lock taken in two orders), nothing
    fails or is lost uncounted, and afterwards every live series has the same total on /metrics and in the SDK."""
    metrics, reader = plane(config=TelemetryConfig(metrics_exporters=("prometheus",), exemplar_filter=exemplar_filter))
    symbols = [f"S{i}" for i in range(12)]
    failures: list[BaseException] = []

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as error:  # noqa: BLE001 - reported by the assertion below
                failures.append(error)

        return run

    @timed("data_freshness", labels_from=("symbol",), labels={"source": "cme"})
    def timed_tick(symbol: str) -> None:
        metrics.inc("ticks_received", source="cme", symbol=symbol)

    def record(offset: int) -> None:
        for i in range(6_000):
            symbol = symbols[(i + offset) % len(symbols)]
            metrics.inc("ticks_received", source="cme", symbol=symbol)
            metrics.observe("data_freshness", 0.01, source="cme", symbol=symbol)

    def record_timed() -> None:
        for i in range(6_000):
            timed_tick(symbols[i % len(symbols)])

    def retire() -> None:
        for i in range(300):
            metrics.retire(symbol=symbols[i % len(symbols)])

    def collect() -> None:
        for _ in range(150):
            reader.get_metrics_data()

    work = [partial(record, 0), record_timed, retire, collect]
    threads = [threading.Thread(target=guarded(w), daemon=True) for w in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not [t for t in threads if t.is_alive()], "a thread did not end: a lock taken in two orders"
    assert failures == []
    # A recording that looked its handle up just before the handle's retirement is dropped, and counted as such.
    assert {reason for _, reason in drops(metrics)} <= {"retired"}
    for symbol in symbols:  # every symbol live again
        timed_tick(symbol)
        metrics.observe("data_freshness", 0.01, source="cme", symbol=symbol)
    ticks = {labels: point.value for labels, point in pushed(reader, "data_ticks_received").items()}
    assert len(ticks) == len(symbols)
    assert ticks == {labels: value for (_, labels), value in pulled(metrics, "data_ticks_received").items()}
    freshness = {labels: point.count for labels, point in pushed(reader, "data_freshness").items()}
    exposed = pulled(metrics, "data_freshness_seconds")
    assert freshness == {labels: value for (name, labels), value in exposed.items() if name.endswith("_count")}


def test_an_observation_that_races_its_retirement_leaves_the_next_series_whole() -> None:
    """An observation already inside a handle's recording when ``retire`` runs, and an exemplar offered to the SDK
    for a label set with no handle at that moment, leave no trace: the same labels recorded again are pushed as
    /metrics shows them, a count of 5 and a sum of 1.5, never the stray value or the SDK's own aggregation."""
    always_on = TelemetryConfig(metrics_exporters=("prometheus",), exemplar_filter="always_on")
    metrics, reader = plane(config=always_on)
    handle = metrics.bind("data_freshness", **ESZ6)
    handle.observe(0.1)
    in_flight = handle.record_unchecked  # dispatched before the retirement
    assert metrics.retire("data_freshness") == 1
    in_flight(0.2)
    handle._exemplars(0.4, handle.attributes)  # an offer that passed the retired check just before retire()
    assert pushed(reader, "data_freshness") == {}
    again = metrics.bind("data_freshness", **ESZ6)
    for _ in range(5):
        again.observe(0.3)
    ((labels, point),) = pushed(reader, "data_freshness").items()
    assert (labels, point.count, point.sum) == (ESZ6_KEY, 5, pytest.approx(1.5))
    assert pulled(metrics, "data_freshness_seconds")[("data_freshness_seconds_count", ESZ6_KEY)] == 5
    assert drops(metrics) == {}


def test_timed_keeps_no_handle_retired_while_it_was_being_bound() -> None:
    """A retirement that lands between a timed call's bind and its keeping of the handle: the call's own observation
    is dropped and counted, and the next calls record on a new series instead of the retired one."""
    from trading_telemetry import timing

    metrics, reader = plane()

    @timed("storage_write_latency", labels={"event_type": "bar"})
    def write() -> None:
        return None

    class RetiredWhileBound(timing._Bound):
        __slots__ = ()

        def __init__(self, histogram: Any, labels: dict[str, Any]) -> None:
            super().__init__(histogram, labels)
            metrics.retire("storage_write_latency")

    original = timing._Bound
    timing._Bound = RetiredWhileBound  # type: ignore[misc]
    try:
        write()
    finally:
        timing._Bound = original  # type: ignore[misc]
    for _ in range(10):
        write()
    assert [p.count for p in pushed(reader, "data_storage_write_latency").values()] == [10]
    assert drops(metrics) == {("storage_write_latency", "retired"): 1}


def test_retiring_while_timed_blocks_start_never_raises() -> None:
    """Timed blocks made anew on every call (each one kept informed of retirements by the plane, beside 500 timed
    functions already known) while another thread retires: retire never raises, and the blocks keep recording."""
    metrics, reader = plane()
    failures: list[BaseException] = []
    known = [timed("storage_write_latency", labels={"event_type": "bar"})(lambda: None) for _ in range(500)]
    for function in known:
        function()

    def blocks() -> None:
        try:
            for _ in range(3_000):
                with timed("storage_write_latency", labels={"event_type": "bar"}):
                    pass
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            failures.append(error)

    def retire() -> None:
        try:
            for i in range(3_000):  # each call removes a series: the plane tells every timed
                metrics.inc("ticks_received", source="cme", symbol=f"S{i % 5}")
                metrics.retire("ticks_received", symbol=f"S{i % 5}")
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            failures.append(error)

    threads = [threading.Thread(target=blocks, daemon=True) for _ in range(2)]
    threads.append(threading.Thread(target=retire, daemon=True))
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads switch often: the race, if any, shows
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        sys.setswitchinterval(interval)
    assert not [t for t in threads if t.is_alive()]
    assert failures == []
    with timed("storage_write_latency", labels={"event_type": "bar"}):
        pass
    assert [p.count for p in pushed(reader, "data_storage_write_latency").values()] >= [1]


def test_timed_records_on_new_series_after_retirement() -> None:
    """A timed function's kept handles of a retired series are bound again: the next call counts from zero in the
    histogram and in its outcome counter, for constant labels and labels from arguments, with no drop."""
    metrics, reader = plane("strategy_plane")

    @timed("qp_solve_time", outcome="qp_solve_status")
    def solve() -> None:
        return None

    solve()
    solve()
    assert metrics.retire("qp_solve_time") == 1
    assert metrics.retire("qp_solve_status") == 1
    solve()
    assert [p.count for p in pushed(reader, "strategy_qp_solve_time").values()] == [1]
    assert [p.value for p in pushed(reader, "strategy_qp_solve_status").values()] == [1]
    data, data_reader = plane("data_plane")

    @timed("storage_write_latency", labels_from=("event_type",))
    def write(event_type: str) -> None:
        return None

    for event_type in ("bar", "bar", "tick"):
        write(event_type)
    assert data.retire(event_type="bar") == 1
    write("bar")
    points = pushed(data_reader, "data_storage_write_latency")
    counts = {dict(labels)["event_type"]: p.count for labels, p in points.items()}
    assert counts == {"bar": 1, "tick": 1}
    assert drops(metrics) == drops(data) == {}


def test_multiprocess_mode_refuses_retire(tmp_path: Path) -> None:
    """In multiprocess mode retire removes nothing: strict mode raises, production counts retire_unsupported."""
    config = TelemetryConfig(multiprocess_dir=str(tmp_path), metrics_exporters=())
    metrics = init_metrics_exporter("data_plane", config=config)
    metrics.inc("ticks_received", **ESZ6)
    assert metrics.retire(symbol="ESZ6") == 0
    assert metrics.series_count("ticks_received") == 1
    assert drops(metrics) == {("<unknown>", "retire_unsupported"): 1}


SYMBOLS = ["ESZ6", "ESH7", "NQZ6"]
ops = st.lists(
    st.tuples(
        st.sampled_from(["inc", "bind_inc", "retire", "retire_key"]), st.sampled_from(SYMBOLS), st.integers(1, 5)
    ),
    max_size=30,
)


@SETTINGS
@given(steps=ops)
def test_record_and_retire_interleaved_match_a_model(steps: list[tuple[str, str, int]]) -> None:
    """Any interleaving of recordings and retirements leaves the model's totals on /metrics and in the SDK."""
    reset()
    metrics, reader = plane()
    model: dict[str, int] = {}
    handles: dict[str, Any] = {}
    expected_drops = 0
    for op, symbol, n in steps:
        labels = {"source": "cme", "symbol": symbol}
        if op == "inc":
            metrics.inc("ticks_received", n, **labels)
            model[symbol] = model.get(symbol, 0) + n
        elif op == "bind_inc":
            handle = handles.get(symbol)
            if handle is None:
                handle = handles[symbol] = metrics.bind("ticks_received", **labels)
                model.setdefault(symbol, 0)  # a bound series exists, at zero
            handle.inc(n)
            if handle.retired:
                expected_drops += 1
            else:
                model[symbol] = model.get(symbol, 0) + n
        else:
            key = "ticks_received" if op == "retire_key" else None
            removed = metrics.retire(key, symbol=symbol)
            assert removed == (1 if symbol in model else 0)
            model.pop(symbol, None)
            if n > 3:  # the other handles are kept, retired, and used again
                handles.pop(symbol, None)
        got = {labels: p.value for labels, p in pushed(reader, "data_ticks_received").items()}
        assert got == {(("source", "cme"), ("symbol", s)): v for s, v in model.items()}
    assert pulled(metrics, "data_ticks_received") == {
        ("data_ticks_received_total", (("source", "cme"), ("symbol", s))): v for s, v in model.items()
    }
    assert drops(metrics).get(("ticks_received", "retired"), 0) == expected_drops


def test_retire_idle_removes_series_unchanged_since_an_earlier_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """retire_idle retires the series unchanged between calls at least that long apart, and only those."""
    clock = [1000.0]
    monkeypatch.setattr("trading_telemetry._recorder.time.monotonic", lambda: clock[0])
    metrics, reader = plane()
    metrics.inc("ticks_received", **ESZ6)
    metrics.inc("ticks_received", **ESH7)
    metrics.observe("data_freshness", 0.1, **ESZ6)
    assert metrics.retire_idle(60) == 0  # first seen now
    clock[0] += 30
    metrics.inc("ticks_received", **ESH7)
    assert metrics.retire_idle(60) == 0
    clock[0] += 31
    assert metrics.retire_idle(60) == 2  # ESZ6's counter and histogram: unchanged for 61 s
    assert set(pushed(reader, "data_ticks_received")) == {ESH7_KEY}
    assert pulled(metrics, "data_freshness") == {}
    clock[0] += 30
    assert metrics.retire_idle(60) == 1  # ESH7: unchanged since its last change, 61 s ago
    assert metrics.retire_idle(-1) == 0
    assert drops(metrics) == {("<unknown>", "invalid_input"): 1}


@pytest.mark.parametrize("delta", [False, True])
def test_a_native_histogram_series_retires_and_starts_again_from_zero(delta: bool) -> None:
    """With native buckets the exponential points of a retired series stop, and a new one counts from zero."""
    config = TelemetryConfig(metrics_exporters=("prometheus",), native_histograms="all")
    metrics, reader = plane(config=config, delta=delta)
    for value in (0.1, 0.2, 0.4):
        metrics.observe("data_freshness", value, **ESZ6)
    assert pushed(reader, "data_freshness")[ESZ6_KEY].count == 3
    assert metrics.retire("data_freshness", symbol="ESZ6") == 1
    assert pushed(reader, "data_freshness") == {}
    metrics.observe("data_freshness", 0.3, **ESZ6)
    point = pushed(reader, "data_freshness")[ESZ6_KEY]
    assert (point.count, point.sum, point.zero_count) == (1, 0.3, 0)
    assert sum(point.positive.bucket_counts) == 1


def test_multiprocess_mode_refuses_retire_in_strict_mode_too(tmp_path: Path) -> None:
    """In strict multiprocess mode retire and retire_idle raise RetireUnsupportedError and remove nothing."""
    config = TelemetryConfig(strict=True, multiprocess_dir=str(tmp_path), metrics_exporters=())
    metrics = init_metrics_exporter("data_plane", config=config)
    metrics.inc("ticks_received", **ESZ6)
    with pytest.raises(RetireUnsupportedError, match="not supported in multiprocess mode"):
        metrics.retire(symbol="ESZ6")
    with pytest.raises(RetireUnsupportedError, match="not supported in multiprocess mode"):
        metrics.retire_idle(0)
    assert metrics.series_count("ticks_received") == 1
