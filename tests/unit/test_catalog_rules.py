"""extend() refuses, with a CatalogError naming the entry, the field and the value, every
declaration that would change or break what /metrics and the Collector expose, and every
value the SDK would refuse later; what it accepts renders and parses."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from hostile import FakesItsClass, HostileFloat, HostileStr, RaisesOnHash, RaisesOnRepr
from servers import require_binary
from trading_telemetry import CatalogError, InvalidValueError, TelemetryConfig, init_metrics_exporter
from trading_telemetry import catalog as cat
from trading_telemetry._drops import DROPPED_METRIC
from trading_telemetry._globals import STATE, State
from trading_telemetry._naming import collector_name, python_exporter_name, reserved_name
from trading_telemetry._self_metrics import UPTIME_METRIC
from trading_telemetry.catalog import CATALOG, Kind, MetricSpec, Plane

STRICT = TelemetryConfig(strict=True, metrics_exporters=("prometheus",))


def gauge(name: str = "data_queue_depth", *labels: Any, key: str = "queue_depth", **fields: Any) -> MetricSpec:
    return MetricSpec(Plane.DATA, key, name, Kind.GAUGE, fields.pop("unit", "{message}"),
                      fields.pop("description", "Queue depth"), labels, **fields)  # fmt: skip


def counter(name: str, *labels: str, key: str = "desk_events") -> MetricSpec:
    return MetricSpec(Plane.DATA, key, name, Kind.COUNTER, "{event}", "Desk events", labels, min_value=0.0)


def histogram(name: str, *labels: str, **fields: Any) -> MetricSpec:
    return MetricSpec(Plane.DATA, "desk_latency", name, Kind.HISTOGRAM, fields.pop("unit", "s"), "Desk latency",
                      labels, fields.pop("buckets", (0.001, 0.1)), min_value=0.0, **fields)  # fmt: skip


REFUSED: list[tuple[str, Callable[[], MetricSpec], str, str]] = [
    # Names /metrics or the Collector already carry (item 6 of the audit).
    ("the uptime gauge", lambda: gauge("trading_telemetry_uptime_seconds"), "name", "self-metrics"),
    ("the drop counter", lambda: counter("trading_telemetry_dropped_measurements"), "name", "self-metrics"),
    ("the drop counter's sample, as a gauge", lambda: gauge("trading_telemetry_dropped_measurements_total"), "name",
     "_total"),
    ("target_info", lambda: gauge("target_info"), "name", "_info"),
    ("target, whose info sample is target_info", lambda: gauge("target"), "name", "target_info"),
    ("Prometheus's up", lambda: gauge("up"), "name", "Prometheus"),
    ("a scrape_ series", lambda: gauge("scrape_duration_seconds"), "name", "Prometheus"),
    ("a histogram's _count", lambda: gauge("data_freshness_seconds_count"), "name", "_count"),
    ("a histogram's _bucket", lambda: gauge("data_freshness_seconds_bucket"), "name", "_bucket"),
    ("a histogram's family, as a gauge", lambda: gauge("data_freshness_seconds"), "name", "data_freshness"),
    ("a histogram over a gauge's name", lambda: histogram("data_completeness_score", unit="{x}"), "name",
     "completeness_score"),
    ("a gauge named like a counter's family", lambda: gauge("orders_received"), "name", "orders_received"),
    ("a counter over a gauge's name", lambda: counter("strategy_pnl_total_usd"), "name", "total"),
    ("a counter's _created", lambda: gauge("orders_received_created"), "name", "_created"),
    ("a gauge named like a recording rule", lambda: gauge("orders_commission_total_usd"), "name", "commission"),
    ("a histogram label le", lambda: histogram("data_desk_latency", "le"), "labels", "bucket"),
    ("a label quantile", lambda: gauge("data_queue_depth", "quantile"), "labels", "quantile"),
    ("a label job", lambda: gauge("data_queue_depth", "job"), "labels", "Prometheus"),
    ("a label instance", lambda: gauge("data_queue_depth", "instance"), "labels", "Prometheus"),
    ("a label service", lambda: gauge("data_queue_depth", "service"), "labels", "plane"),
    ("a scope label", lambda: gauge("data_queue_depth", "otel_scope_name"), "labels", "scope"),
    # Names a translator rewrites (item 7).
    ("a double underscore", lambda: counter("data_ticks__received"), "name", "single underscores"),
    ("a trailing underscore", lambda: gauge("data_queue_depth_"), "name", "single underscores"),
    ("a leading underscore", lambda: gauge("_data_queue_depth"), "name", "starting with a letter"),
    ("a leading digit", lambda: gauge("1data_queue_depth"), "name", "starting with a letter"),
    ("a dot", lambda: gauge("data.queue_depth"), "name", "single underscores"),
    ("a colon", lambda: gauge("data:queue_depth"), "name", "single underscores"),
    ("uppercase", lambda: gauge("data_Queue_depth"), "name", "lowercase"),
    ("a counter with a total word", lambda: counter("orders_total_amended"), "name", "through the Collector"),
    ("seconds in the middle of a name in seconds", lambda: histogram("data_seconds_lag"), "name",
     "through the Collector"),
    ("a name of 256 characters", lambda: gauge("d" * 256), "name", "255 characters"),
    # Names promtool's linter refuses.
    ("an abbreviated unit", lambda: gauge("data_queue_wait_ms"), "name", "abbreviated unit ('ms')"),
    ("a unit not in its base", lambda: gauge("data_queue_age_minutes"), "name", "base unit 'seconds'"),
    ("a prefixed unit", lambda: gauge("data_queue_kilobytes"), "name", "base unit 'bytes'"),
    ("a type name", lambda: gauge("data_queue_gauge"), "name", "type name"),
    ("a timestamp histogram", lambda: histogram("data_last_timestamp_seconds"), "name", "_timestamp_seconds"),
    ("a camelCase label", lambda: gauge("data_queue_depth", "deskId"), "labels", "lowercase"),
    # Label names (item 9).
    ("a label name that injects a series", lambda: gauge("data_queue_depth", 'a="1"} 1\ndata_ticks_received_total{b'),
     "labels", "label name"),
    ("a label name with a dash", lambda: gauge("data_queue_depth", "a-b"), "labels", "label name"),
    ("a __ label", lambda: gauge("data_queue_depth", "__name__"), "labels", "label name"),
    ("a label with a double underscore", lambda: gauge("data_queue_depth", "desk__id"), "labels", "label name"),
    ("a label starting with _", lambda: gauge("data_queue_depth", "_desk"), "labels", "label name"),
    ("a label that is not a str", lambda: gauge("data_queue_depth", 5), "labels", "label name"),
    ("a repeated label", lambda: gauge("data_queue_depth", "desk", "desk"), "labels", "twice"),
    ("17 labels", lambda: gauge("data_queue_depth", *(f"l{i}" for i in range(17))), "labels", "at most 16"),
    ("labels not a list", lambda: MetricSpec(Plane.DATA, "queue_depth", "data_queue_depth", Kind.GAUGE, "", "d",
                                             "desk"), "labels", "expected a list"),  # type: ignore[arg-type]
    # Types and values the SDK or the exposition would refuse later (item 10).
    ("a description not a str", lambda: gauge(description=5), "description", "printable"),
    ("a surrogate in the description", lambda: gauge(description="Depth \udc80"), "description", "printable"),
    ("a newline in the description", lambda: gauge(description="Depth\nx 1"), "description", "printable"),
    ("an empty description", lambda: gauge(description=""), "description", "non-empty"),
    ("a description of 1,001 characters", lambda: gauge(description="d" * 1001), "description", "1000"),
    ("unit 1", lambda: gauge(unit="1"), "unit", "change the exposed name"),
    ("unit ms", lambda: gauge(unit="ms"), "unit", "change the exposed name"),
    ("a unit with a slash", lambda: gauge(unit="{x}/s"), "unit", "change the exposed name"),
    ("a unit not ASCII", lambda: gauge(unit="{€}"), "unit", "change the exposed name"),
    ("a unit of 64 characters", lambda: gauge(unit="{" + "u" * 62 + "}"), "unit", "change the exposed name"),
    ("a unit not a str", lambda: gauge(unit=None), "unit", "change the exposed name"),
    ("a plane not a Plane", lambda: MetricSpec("risk_plane", "queue_depth", "data_queue_depth", Kind.GAUGE, "", "d"),  # type: ignore[arg-type]
     "plane", "data_plane"),
    ("a kind not a Kind", lambda: MetricSpec(Plane.DATA, "queue_depth", "data_queue_depth", "summary", "", "d"),  # type: ignore[arg-type]
     "kind", "histogram"),
    ("a key not a str", lambda: gauge(key=7), "key", "lowercase"),  # type: ignore[arg-type]
    ("a key of 256 characters", lambda: gauge(key="k" * 256), "key", "255"),
    ("a duplicate key", lambda: gauge(key="ticks_received"), "key", "duplicate"),
    ("buckets on a gauge", lambda: gauge(buckets=(1.0,)), "buckets", "a gauge has no buckets"),
    ("a histogram without buckets", lambda: histogram("data_desk_latency", buckets=None), "buckets", "missing"),
    ("no buckets", lambda: histogram("data_desk_latency", buckets=()), "buckets", "one or more"),
    ("buckets not increasing", lambda: histogram("data_desk_latency", buckets=(1.0, 1.0)), "buckets", "increasing"),
    ("a NaN bucket", lambda: histogram("data_desk_latency", buckets=(float("nan"),)), "buckets", "finite"),
    ("a bool bucket", lambda: histogram("data_desk_latency", buckets=(True,)), "buckets", "finite"),
    ("a huge int bucket", lambda: histogram("data_desk_latency", buckets=(10**400,)), "buckets", "finite"),
    ("101 buckets", lambda: histogram("data_desk_latency", buckets=tuple(range(101))), "buckets", "at most 100"),
    ("buckets a string", lambda: histogram("data_desk_latency", buckets="0.1"), "buckets", "a list"),
    ("min above max", lambda: gauge(min_value=2.0, max_value=1.0), "min_value", "above"),
    ("an infinite max", lambda: gauge(max_value=float("inf")), "max_value", "finite"),
    ("a min not a number", lambda: gauge(min_value="0"), "min_value", "finite"),
    ("integral not a bool", lambda: gauge(integral=1), "integral", "true or false"),
    ("a documented name on an extension", lambda: gauge(documented="data_depth"), "documented", "built-in"),
    ("a negative value in a histogram with no _sum guard", lambda: MetricSpec(Plane.DATA, "desk_latency",
     "data_desk_latency", Kind.HISTOGRAM, "s", "Desk latency", (), (0.1, 1.0)), "min_value", "OpenMetrics"),
    # Hostile objects: refused, never raised through.
    ("a str subclass whose dunders raise", lambda: gauge(HostileStr("data_queue_depth__")), "name", "underscores"),
    ("a key whose hash raises", lambda: gauge(key=RaisesOnHash()), "key", "lowercase"),  # type: ignore[arg-type]
    ("a label whose repr raises", lambda: gauge("data_queue_depth", RaisesOnRepr()), "labels", "label name"),
    ("a label that fakes its class", lambda: gauge("data_queue_depth", FakesItsClass()), "labels", "label name"),
    ("a max whose comparisons raise", lambda: gauge(min_value=HostileFloat(2.0), max_value=1.0), "min_value",
     "above"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "make", "field", "words"), REFUSED, ids=[case[0] for case in REFUSED])
def test_extend_refuses_naming_the_entry_the_field_and_the_value(
    case: str, make: Callable[[], MetricSpec], field: str, words: str
) -> None:
    """The declaration is refused at extend(), with a short message naming entry, field and value; nothing is
    added, and the first plane still starts."""
    fine = MetricSpec(Plane.ORDER, "fine", "orders_fine", Kind.GAUGE, "", "Fine")
    with pytest.raises(CatalogError) as caught:
        cat.extend([fine, make()], {"fine_label": ["x"]})
    error = caught.value
    assert (error.source, error.entry is not None and error.entry.startswith("metrics entry 2"), error.field) == (
        "extend()", True, field)  # fmt: skip
    text = str(error)
    assert text.startswith("extend(): metrics entry 2 ("), text
    assert f": {field}: " in text, text
    assert words in text, text
    assert len(text) < 600, text
    assert cat.lookup("fine") is None
    assert State() == STATE, "nothing added"
    init_metrics_exporter("data_plane", config=STRICT)


@pytest.mark.parametrize(
    ("label_values", "words"),
    [
        ({"x": None}, "expected a list"),
        ({"x": "abc"}, "expected a list"),
        ({"x": []}, "label values"),
        ({"x": ["ok", ""]}, "''"),
        ({"x": ["ok", 5]}, "5"),
        ({"x": ["a\ud800"]}, "valid Unicode"),
        ({"x": ["v" * 257]}, "256 characters"),
        ({"le": ["1"]}, "bucket"),
        ({"a-b": ["1"]}, "label name"),
        ({5: ["1"]}, "label name"),
        ({"x": [RaisesOnRepr()]}, "unprintable"),
        (["x"], "mapping"),
    ],
)
def test_label_values_are_label_names_and_values_recording_accepts(label_values: Any, words: str) -> None:
    """A closed set is a list of label values recording would accept, under a label name a desk may declare."""
    with pytest.raises(CatalogError, match="label_values") as caught:
        cat.extend([], label_values)
    assert words in str(caught.value)
    assert State() == STATE, "nothing added"


def test_metrics_that_are_not_a_list_of_metric_specs_are_refused() -> None:
    """A bare MetricSpec, a string, an iterable that raises, something else: CatalogError, never TypeError."""

    def broken() -> Iterator[MetricSpec]:
        yield gauge()
        raise ValueError("generator fails")

    for metrics in (gauge(), "data_queue_depth", 5, broken(), [5], [{"key": "x"}]):
        with pytest.raises(CatalogError):
            cat.extend(metrics)  # type: ignore[arg-type]
    assert cat.lookup("queue_depth") is None


def test_every_name_a_built_in_or_self_metric_exposes_is_taken() -> None:
    """A desk gauge named like any family or sample the built-ins expose, or like a self-metric, is refused."""
    exposed = {DROPPED_METRIC, DROPPED_METRIC + "_total", UPTIME_METRIC + "_seconds", "target_info"}
    for s in CATALOG:
        family = s.prometheus_name.removesuffix("_total")
        exposed |= {family, s.prometheus_name, s.documented_name}
        if s.kind is Kind.HISTOGRAM:
            exposed |= {family + "_bucket", family + "_count", family + "_sum"}
    for name in sorted(exposed):
        with pytest.raises(CatalogError, match="name"):
            cat.extend([gauge(name)])


def test_an_extension_clashes_with_an_earlier_one_on_any_exposed_name() -> None:
    """A second extension (same call or a later one) exposing a name the first exposes is refused."""
    cat.extend([histogram("data_desk_latency_seconds")])
    for clash in (gauge("data_desk_latency_seconds_count"), counter("data_desk_latency_seconds"),
                  gauge("data_desk_latency_seconds", key="other")):  # fmt: skip
        with pytest.raises(CatalogError, match="desk_latency"):
            cat.extend([clash])
    with pytest.raises(CatalogError, match="metrics entry 2"):
        cat.extend([counter("data_desk_events"), gauge("data_desk_events", key="desk_events_now")])


def test_the_self_metrics_are_in_the_reserved_namespace() -> None:
    """The drop counter and the uptime gauge are named in trading_telemetry_*, which the catalog reserves."""
    for name in (DROPPED_METRIC, DROPPED_METRIC + "_total", UPTIME_METRIC + "_seconds"):
        assert reserved_name(name) is not None, name


@pytest.mark.parametrize(
    ("name", "unit_suffix", "counter", "collector", "python"),
    [
        ("data_ticks__received", "", True, "data_ticks_received_total", "data_ticks_received_total"),
        ("data_queue_depth_", "", False, "data_queue_depth", "data_queue_depth_"),
        ("_data_queue_depth", "", False, "data_queue_depth", "_data_queue_depth"),
        ("orders_total_amended", "", True, "orders_amended_total", "orders_total_amended_total"),
        ("data_seconds_lag", "seconds", False, "data_seconds_lag", "data_seconds_lag_seconds"),
        ("data.queue.depth", "", False, "data_queue_depth", "data_queue_depth"),
        ("1st_queue", "", False, "_1st_queue", "_st_queue"),
        ("data_lag_seconds", "seconds", True, "data_lag_seconds_total", "data_lag_seconds_total"),
    ],
)
def test_the_translator_models(name: str, unit_suffix: str, counter: bool, collector: str, python: str) -> None:
    """The models of the Collector's and the OTel exporter's naming give the names those translators give
    (tests/integration/test_catalog_names.py holds the Collector model to our build)."""
    assert collector_name(name, unit_suffix, counter) == collector
    assert python_exporter_name(name, unit_suffix, counter) == python


def test_what_extend_accepts_renders_and_parses() -> None:
    """Edge cases the rules allow (digits in labels, annotations, a 255-character name, a label named value)
    record, render, parse with both parsers and pass promtool; the values stay within the range."""
    long_name = "data_" + "q" * 250
    specs = [
        gauge(long_name, "desk2", "value", "a1_b2", unit="{msg~|!}", min_value=0, max_value=10**6, integral=True),
        counter("data_desk_events_2024", "desk"),
        histogram("data_desk_latency_seconds", "desk", buckets=(-1, 0, 2.5)),
    ]
    cat.extend(specs, {"desk": ["A", 'q"uo\\te\n']})
    m = init_metrics_exporter("data_plane", config=STRICT)
    m.set("queue_depth", 7, desk2="x", value="y", a1_b2="z")
    m.inc("desk_events", desk='q"uo\\te\n')
    m.observe("desk_latency", 0.5, desk="A")
    with pytest.raises(InvalidValueError, match=r"whole number within \[0.0, 1000000.0\]"):
        m.set("queue_depth", 2.5, desk2="x", value="y", a1_b2="z")
    assert m.exposition is not None
    families = {f.name: f for f in text_string_to_metric_families(m.exposition.render().decode())}
    assert {long_name, "data_desk_events_2024", "data_desk_latency_seconds"} <= set(families)
    openmetrics = {f.name for f in openmetrics_families(m.exposition.render("openmetrics").decode())}
    assert openmetrics == set(families) - {"target_info"} | {"target"}
    done = subprocess.run([require_binary("promtool"), "check", "metrics"], input=m.exposition.render(),
                          capture_output=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_hostile_str_fields_are_copied_to_plain_strings() -> None:
    """A str subclass is accepted as its characters: the catalog keeps plain strings."""
    cat.extend([gauge(HostileStr("data_queue_depth"), HostileStr("desk"), key=HostileStr("queue_depth"))])
    s = cat.spec("data_plane", "queue_depth")
    assert (type(s.key), type(s.name), type(s.labels[0])) == (str, str, str)


@pytest.mark.parametrize(
    ("name", "unit", "kind"),
    [
        ("desk_ticks__received", "{tick}", Kind.COUNTER),
        ("desk_trailing_", "", Kind.GAUGE),
        ("desk_total_amended", "{order}", Kind.COUNTER),
        ("desk_seconds_lag", "s", Kind.GAUGE),
        ("desk.dotted-name", "", Kind.GAUGE),
        ("desk_seconds", "s", Kind.GAUGE),
        ("desk_callback_latency", "s", Kind.HISTOGRAM),
        ("desk_fills", "{order}", Kind.COUNTER),
    ],
)
def test_the_otel_exporter_names_a_metric_as_the_catalog_models_it(name: str, unit: str, kind: Kind) -> None:
    """The OTel Prometheus exporter (the /metrics oracle) exposes the name the model predicts; a name the catalog
    accepts is the name /metrics shows."""
    registry = CollectorRegistry()
    provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)], shutdown_on_exit=False)
    meter = provider.get_meter("probe")
    if kind is Kind.COUNTER:
        meter.create_counter(name, unit=unit).add(1)
    elif kind is Kind.GAUGE:
        meter.create_gauge(name, unit=unit).set(1)
    else:
        meter.create_histogram(name, unit=unit).record(0.5)
    exposed = {s.name for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples}
    provider.shutdown()
    suffix = "seconds" if unit == "s" else ""
    modelled = python_exporter_name(name, suffix, kind is Kind.COUNTER)
    assert (modelled + "_count" if kind is Kind.HISTOGRAM else modelled) in exposed, exposed
    spec = MetricSpec(Plane.DATA, "probe", name, kind, unit, "Probe", (), (0.1,) if kind is Kind.HISTOGRAM else None,
                      min_value=0.0)  # fmt: skip
    paths = {modelled, collector_name(name, suffix, kind is Kind.COUNTER)}
    try:
        cat.extend([spec])
    except CatalogError:
        assert paths != {spec.prometheus_name}, "refused although both paths expose what /metrics does"
    else:
        assert paths == {spec.prometheus_name}
