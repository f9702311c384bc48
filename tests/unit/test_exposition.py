"""/metrics rendered from the handles against its oracle, the OTel Prometheus exporter
(`opentelemetry-exporter-prometheus`) reading the same plane: on randomized workloads
(counters, gauges, histograms with negative buckets, escaping-heavy label values, dropped
measurements) both formats parse to the same families, types, samples, label sets and values."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from helpers import LABEL_VALUES, record_ops
from trading_telemetry import TelemetryConfig, _self_metrics, init_metrics_exporter, reset
from trading_telemetry._exposition import PlaneExposition
from trading_telemetry.catalog import Plane, plane_specs

ORACLE = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow])  # fmt: skip

PULL = TelemetryConfig(metrics_exporters=("prometheus",))
AWKWARD = ['a"b', "back\\slash", "new\nline", "é€😀", '{x="1"}', "le", " ", "\\n", 'end\\"']
label_values = st.one_of(st.sampled_from(sorted(set(LABEL_VALUES.values()))), st.sampled_from(AWKWARD))
values = st.one_of(
    st.integers(0, 10**7),
    st.floats(min_value=-1e6, max_value=1e12, allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, 0.5, -1.5, 1e-9, 123456789.0, 999999, 1000000, 2**53, -60.0, 1e21]),
)


UPTIME = "trading_telemetry_uptime_seconds"


def parsed(text: str, openmetrics: bool) -> dict[str, tuple[str, str, set[tuple[Any, ...]]]]:
    """family -> (type, documentation, {(sample name, sorted labels, value)}); the liveness
    gauge's value is read at a different moment by each side, so it is compared as present
    and non-negative."""
    families = parse_openmetrics(text) if openmetrics else parse_text(text)
    return {
        f.name: (
            f.type,
            f.documentation,
            {
                (s.name, tuple(sorted(s.labels.items())), s.value >= 0 if f.name == UPTIME else s.value)
                for s in f.samples
            },
        )
        for f in families
    }


@st.composite
def workloads(draw: st.DrawFn) -> tuple[Plane, list[tuple[str, dict[str, str], Any]]]:
    plane = draw(st.sampled_from(list(Plane)))
    specs = plane_specs(plane)
    ops = []
    for _ in range(draw(st.integers(1, 25))):
        key = draw(st.sampled_from(sorted(specs)))
        labels = {name: draw(label_values) for name in specs[key].labels}
        ops.append((key, labels, draw(values)))
    return plane, ops


@ORACLE
@given(workload=workloads())
def test_the_render_equals_the_otel_prometheus_exporter(workload: tuple[Plane, list[Any]]) -> None:
    """Same families, types, help, samples, label sets and values in text format and OpenMetrics."""
    plane, ops = workload
    reset()
    registry = CollectorRegistry()
    metrics = init_metrics_exporter(
        plane,
        config=TelemetryConfig(metrics_exporters=("prometheus",)),
        metric_readers=[PrometheusMetricReader(scope_info_enabled=False, registry=registry)],
    )
    record_ops(metrics, ops)
    metrics.bind(
        sorted(plane_specs(plane))[0], **dict.fromkeys(plane_specs(plane)[sorted(plane_specs(plane))[0]].labels, "SPY")
    )
    assert metrics.exposition is not None
    ours_text = metrics.exposition.render().decode()
    ours_om = metrics.exposition.render("openmetrics").decode()
    oracle_text = generate_latest(registry).decode()
    oracle_om = openmetrics_latest(registry).decode()
    assert parsed(ours_text, False) == parsed(oracle_text, False)
    assert parsed(ours_om, True) == parsed(oracle_om, True)
    assert ours_om.endswith("# EOF\n")
    reset()


def test_an_empty_plane_renders_only_its_liveness() -> None:
    """Nothing recorded: the same as the exporter, target_info and the uptime gauge only."""
    registry = CollectorRegistry()
    metrics = init_metrics_exporter(
        "strategy_plane",
        config=TelemetryConfig(metrics_exporters=("prometheus",)),
        metric_readers=[PrometheusMetricReader(scope_info_enabled=False, registry=registry)],
    )
    assert metrics.exposition is not None
    ours = parsed(metrics.exposition.render().decode(), False)
    assert ours == parsed(generate_latest(registry).decode(), False)
    assert set(ours) == {"target_info", UPTIME}
    assert ours[UPTIME][2] == {(UPTIME, (("service", "strategy_plane"),), True)}


class _NoSeries:
    def series(self, key: str) -> dict[tuple[str, ...], Any]:
        return {}


def _exposition(plane: Plane, resource: dict[str, Any]) -> PlaneExposition:
    self_metrics = [_self_metrics.dropped(plane, dict), _self_metrics.uptime(plane, lambda: 1.0)]
    return PlaneExposition(plane_specs(plane), _NoSeries(), resource, self_metrics, service=plane.value)


def test_when_the_multiprocess_files_cannot_be_read_the_liveness_gauge_is_still_served() -> None:
    """A failing read of every process's files leaves the series and the drop counter out (no part-sum of a
    counter), counts the failure, and still serves the uptime gauge, which PlaneStopped watches."""

    def unreadable() -> Any:
        raise OSError("the directory went away")

    self_metrics = [_self_metrics.dropped(Plane.DATA, lambda: {("ticks_received", "overflow"): 3}),
                    _self_metrics.uptime(Plane.DATA, lambda: 1.0)]  # fmt: skip
    exposition = PlaneExposition(
        plane_specs(Plane.DATA), _NoSeries(), {"service.name": "data_plane"}, self_metrics, service="data_plane",
        source=unreadable,
    )  # fmt: skip
    families = parsed(exposition.render().decode(), False)
    assert set(families) == {"target_info", UPTIME}
    assert exposition.failures == 1
    assert exposition.last_failure is not None
    assert "multiprocess files" in exposition.last_failure


def test_a_target_info_that_cannot_be_encoded_is_left_out_and_counted() -> None:
    """A Resource value that slipped past the checks and cannot be encoded costs target_info alone: the rest of
    the body is served, and the failure is counted and named."""
    exposition = _exposition(Plane.DATA, {"service.name": "data_plane", "desk": "caf\udcff"})
    for openmetrics in (False, True):
        body = exposition.render("openmetrics" if openmetrics else "text").decode()
        families = parsed(body, openmetrics)
        assert set(families) == {UPTIME}
    assert exposition.failures == 2
    assert exposition.last_failure is not None
    assert "target_info" in exposition.last_failure


def test_resource_values_given_in_code_that_are_not_text_are_dropped_before_the_render(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A TelemetryConfig built in code with a service name or resource attribute that is not valid text: each is
    warned about and left out of the Resource, so target_info renders (service.name is the plane's)."""
    cfg = TelemetryConfig(
        metrics_exporters=("prometheus",), service_name="desk\ud800", resource_attributes={"bad": "\udcff", "ok": "1"}
    )
    with caplog.at_level(logging.WARNING, logger="trading_telemetry"):
        metrics = init_metrics_exporter("data_plane", config=cfg)
    assert metrics.exposition is not None
    families = parsed(metrics.exposition.render().decode(), False)
    ((_, labels, _),) = families["target_info"][2]
    assert ("ok", "1") in labels
    assert ("service_name", "data_plane") in labels
    assert "bad" not in dict(labels)
    assert metrics.exposition.failures == 0
    assert "TelemetryConfig.service_name" in caplog.text
    assert "TelemetryConfig.resource_attributes['bad']" in caplog.text
