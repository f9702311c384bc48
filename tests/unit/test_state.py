"""The package's module state lives in ``_globals.STATE``, and ``reset()`` returns all of it to its value at
import: after any use of the API, ``STATE`` equals a newly constructed ``State``."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import free_port
from trading_telemetry import (
    TelemetryConfig,
    TradingTelemetryError,
    UnknownMetricError,
    _state,
    extract_trace_context,
    init_metrics_exporter,
    inject_trace_context,
    reset,
    serve_metrics,
    sessions,
    timed,
    traced,
)
from trading_telemetry import catalog as cat
from trading_telemetry._exporter_logs import EXPORTER_LOGGERS, ThrottleFilter
from trading_telemetry._globals import STATE, State
from trading_telemetry.catalog import CATALOG, Kind, MetricSpec, Plane

DESK = Path(__file__).resolve().parents[1] / "data" / "desk-catalog.yaml"
SPY = {"source": "ibkr_rt", "symbol": "SPY"}
KEPT = {f.name for f in dataclasses.fields(State) if f.metadata}  # the locks and the running servers
COMPARED = [f for f in dataclasses.fields(State) if f.compare]


def _changed() -> set[str]:
    """The compared fields of STATE (all but the locks) that differ from a fresh State's."""
    fresh = State()
    return {f.name for f in COMPARED if getattr(STATE, f.name) != getattr(fresh, f.name)}


def _throttle_filters() -> list[logging.Filter]:
    return [f for name in EXPORTER_LOGGERS for f in logging.getLogger(name).filters if isinstance(f, ThrottleFilter)]


def test_a_fresh_process_state_equals_a_new_state_object() -> None:
    """At the start of a test (after reset()) the state is a new State's, and _state.planes is its planes dict."""
    assert State() == STATE
    assert _state.planes is STATE.planes
    assert {"lock", "suggestions_lock", "exporter_log_lock", "servers"} == KEPT


def test_reset_returns_every_field_touched_by_the_api_to_its_import_value(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A desk catalog file and extension, planes with an OTLP exporter, good and bad recordings, config warnings,
    trace helpers and timed: every field but the locks and servers changes, and reset() makes STATE a fresh one."""
    monkeypatch.setenv("OTEL_PROPAGATORS", "tracecontext,no_such_propagator")
    cat.extend(
        [MetricSpec(Plane.DATA, "desk_depth", "data_desk_depth", Kind.GAUGE, "", "Desk depth", ("venue",))],
        {"venue": ["ARCA"]},
    )
    pushing = TelemetryConfig(
        catalog_path=str(DESK),
        metrics_exporters=("otlp",),
        otlp_endpoint=f"http://127.0.0.1:{free_port()}",  # nobody listens: the last export fails at once
        otlp_timeout_ms=300,
        metric_export_interval_ms=3_600_000,
    )
    data = init_metrics_exporter("data_plane", config=pushing)
    data.inc("ticks_received", **SPY)
    data.observe("ticks_received", 1.0, **SPY)  # the wrong kind: dropped in production mode
    data.set("desk_depth", 3, venue="ARCA")
    order = init_metrics_exporter("order_plane", config=TelemetryConfig(strict=True, metrics_exporters=()))
    with pytest.raises(UnknownMetricError, match="did you mean"):
        order.inc("orders_submited", strategy="OFI", symbol="SPY")
    with caplog.at_level(logging.WARNING, logger="trading_telemetry"):
        inject_trace_context({})  # reads the configuration: warns about the unknown propagator
        extract_trace_context(None)  # type: ignore[arg-type]  # not a carrier: logged once
        timed("submit_to_ack_latency", labels={"strategy": "OFI", "symbol": "SPY", "order_type": "LIMIT"})
    gauges = sessions.start(data, sessions.Sessions({}, {}))
    server = serve_metrics(data, port=0)
    assert set(STATE.servers) == {server}
    server.close()
    assert cat.lookup("callback_latency") is not None
    assert set(_throttle_filters()) == {STATE.exporter_log_filter}

    assert _changed() == {f.name for f in COMPARED} - KEPT

    assert reset(timeout=10)
    assert State() == STATE
    assert not gauges.running
    assert cat.effective_catalog() == CATALOG
    assert cat.lookup("callback_latency") is None
    assert cat.lookup("desk_depth") is None
    assert cat.allowed_values(cat.spec("order_plane", "orders_submitted"), "order_type") == {"MARKET", "LIMIT", "STOP"}
    assert _throttle_filters() == []
    cat.load_file(str(DESK))  # read again: the file is forgotten, and the catalog is not frozen
    assert cat.lookup("callback_latency") is not None


def test_a_running_server_stays_registered_through_reset_until_closed() -> None:
    """reset() leaves a /metrics server its owner has not closed in STATE.servers (a fork must still let go of its
    socket); close() takes it out, and the state is then a fresh one."""
    server = serve_metrics(init_metrics_exporter("data_plane", config=TelemetryConfig()), port=0)
    try:
        reset()
        assert set(STATE.servers) == {server}
        assert _changed() == {"servers"}
    finally:
        server.close()
    assert State() == STATE


# == Random sequences of API calls ===================================================

KEYS = (
    "ticks_received",
    "ticks_received",
    "data_completeness_score",
    "tick_latency",
    "no_such_metric",
    "desk_depth",
    "callback_latency",
)
VALUES = st.one_of(st.floats(allow_nan=True), st.integers(-5, 5), st.none(), st.text(max_size=3))
LABELS = st.sampled_from([SPY, {}, {"venue": "ARCA"}, {"source": "ibkr_rt", "symbol": 5}])
CONFIG_VALUES = st.sampled_from(
    [
        {"OTEL_PROPAGATORS": "nope"},
        {"OTEL_METRICS_EXPORTER": "carrier_pigeon"},
        {"OTEL_EXPORTER_OTLP_HEADERS": "oops"},
        {"OTEL_SERVICE_NAME": "desk"},
        {"OTEL_METRIC_EXPORT_INTERVAL": "soon"},
    ]
)
CARRIERS = st.one_of(
    st.dictionaries(st.text(max_size=12), st.text(max_size=60), max_size=3),
    st.just(MappingProxyType({})),
    st.just(None),
    st.integers(),
)


def _planes(draw: Any) -> Callable[[], None]:
    plane = draw(st.sampled_from(list(Plane)))
    strict = draw(st.booleans())
    return lambda: init_metrics_exporter(plane, config=TelemetryConfig(strict=strict, metrics_exporters=()))


def _record(draw: Any) -> Callable[[], None]:
    plane, key = draw(st.sampled_from([Plane.DATA, Plane.DATA, Plane.STRATEGY])), draw(st.sampled_from(KEYS))
    method, value, labels = draw(st.sampled_from(["inc", "observe", "set"])), draw(VALUES), draw(LABELS)
    strict = draw(st.booleans())

    def record() -> None:
        metrics = _state.planes.get(plane)
        if metrics is None:
            metrics = init_metrics_exporter(plane, config=TelemetryConfig(strict=strict, metrics_exporters=()))
        try:
            getattr(metrics, method)(key, value, **labels)
        except TradingTelemetryError as error:
            str(error)  # strict mode: the message, with its suggestion

    return record


def _bound(draw: Any) -> Callable[[], None]:
    method, value, strict = draw(st.sampled_from(["inc", "observe", "set"])), draw(VALUES), draw(st.booleans())

    def record() -> None:
        metrics = _state.planes.get(Plane.DATA)
        if metrics is None:
            metrics = init_metrics_exporter(Plane.DATA, config=TelemetryConfig(strict=strict, metrics_exporters=()))
        try:
            getattr(metrics.bind("ticks_received", **SPY), method)(value)
        except TradingTelemetryError as error:
            str(error)

    return record


def _extend(draw: Any) -> Callable[[], None]:
    name = draw(st.sampled_from(["desk_depth", "desk_queue", "ticks_received"]))
    values = draw(st.sampled_from([None, {"venue": ["ARCA", "BATS"]}, {"order_type": ["PEGGED"]}]))
    desk = MetricSpec(Plane.DATA, name, f"data_{name}", Kind.GAUGE, "", "Desk", ("venue",))
    return lambda: cat.extend([desk], values)


def _load_file(draw: Any) -> Callable[[], None]:
    return lambda: cat.load_file(str(DESK))


def _timed(draw: Any) -> Callable[[], None]:
    key = draw(st.sampled_from(["submit_to_ack_latency", "tick_latency", "tick_latncy", "callback_latency"]))
    call = draw(st.booleans())

    def use() -> None:
        labels = {"strategy": "OFI", "symbol": "SPY", "order_type": "LIMIT"} if "ack" in key else {"source": "x"}
        function = timed(key, labels=labels)(lambda: None)
        if call:
            function()

    return use


def _trace(draw: Any) -> Callable[[], None]:
    carrier, plane = draw(CARRIERS), draw(st.sampled_from([None, *Plane]))

    def use() -> None:
        traced(plane=plane)(lambda: None)()
        inject_trace_context(carrier)  # type: ignore[arg-type]
        extract_trace_context(carrier)  # type: ignore[arg-type]

    return use


def _config(draw: Any) -> Callable[[], None]:
    environ = draw(CONFIG_VALUES)
    return lambda: TelemetryConfig.from_env(environ) and None


def _session_gauges(draw: Any) -> Callable[[], None]:
    interval = draw(st.sampled_from([None, 0.01, 5.0]))

    def start() -> None:
        metrics = _state.planes.get(Plane.DATA)
        if metrics is None:
            metrics = init_metrics_exporter(Plane.DATA, config=TelemetryConfig(metrics_exporters=()))
        sessions.start(metrics, sessions.Sessions({}, {}), interval=interval)

    return start


def _reset(draw: Any) -> Callable[[], None]:
    return lambda: reset() and None


OPERATIONS = [_planes, _record, _bound, _extend, _load_file, _timed, _trace, _config, _session_gauges, _reset]


@st.composite
def operations(draw: Any) -> Callable[[], None]:
    return draw(st.sampled_from(OPERATIONS))(draw)  # type: ignore[no-any-return]


def test_any_sequence_of_api_calls_then_reset_leaves_a_fresh_state() -> None:
    """Planes, recordings good and bad, catalog extensions and files, timed, traced and the trace helpers, config
    warnings, session gauges and resets, in any order: after reset(), STATE equals a new State; the sequences reach
    every field they can (all but the servers and the exporter-log filter, which need a server and an OTLP exporter)."""
    touched: set[str] = set()

    @settings(
        max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(steps=st.lists(operations(), max_size=12))
    def run(steps: list[Callable[[], None]]) -> None:
        try:
            for step in steps:
                with contextlib.suppress(TradingTelemetryError):  # refused as documented (a frozen catalog, ...)
                    step()
                touched.update(_changed())
        finally:
            assert reset()
        assert State() == STATE, _changed()

    run()
    assert touched == {f.name for f in COMPARED} - {"servers", "exporter_log_filter"}
