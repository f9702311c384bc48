"""The third push path: the SDK's own OTLP exporter straight into Prometheus 3's OTLP receiver,
no Collector. Prometheus runs the stack's prometheus.yml (its `otlp:` section) with compose's
flags plus --web.enable-otlp-receiver behind basic auth, as docs/operations.md says to turn it on;
every catalog metric arrives with the names, label keys, types and values it has through the
Collector. The UTF-8 choice is checked on every path: Prometheus 3's default (utf8) and ours
(legacy) store the same names."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Callable, Iterator
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from test_collector import VIA_COLLECTOR, _types
from test_credentials import forged_uptime
from test_prometheus import normalised

from helpers import http_request, labels_for, record_everything, sample_value, wait_for
from servers import COMPOSE_FILE, PROMETHEUS_DIR, TEST_PASSWORD, Collector, Exposition, Prometheus
from trading_telemetry import TelemetryConfig, init_metrics_exporter, reset, serve_metrics
from trading_telemetry.catalog import CATALOG, Kind, MetricSpec, Plane

pytestmark = pytest.mark.integration

TIMES = 3
USER = "otlp"
INTERVAL_MS = 300
DIRECT = 'job="trading-planes"'
# The otel-collector job drops _sum and _count of a histogram with negative bounds (slippage:
# OpenMetrics forbids its _sum); the OTLP receiver has no relabelling and keeps them.
RECEIVER_ONLY = {
    s.prometheus_name + suffix for s in CATALOG if s.kind is Kind.HISTOGRAM and not s.has_sum_and_count
    for suffix in ("_sum", "_count")
}  # fmt: skip


def basic_header(user: str, password: str) -> str:
    """An Authorization header value for basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def receiver_env(receiver: Prometheus, interval_ms: int = INTERVAL_MS) -> dict[str, str]:
    """The settings of a plane that pushes OTLP over HTTP into ``receiver``'s OTLP receiver, with its password."""
    return {
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"{receiver.url}/api/v1/otlp",
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=" + urllib.parse.quote(basic_header(USER, TEST_PASSWORD)),
        "OTEL_METRIC_EXPORT_INTERVAL": str(interval_ms),
    }


def receiver_le(bound: float) -> str:
    """A bucket bound as the OTLP receiver stores it: Go's %f, shortest ("1", "0.005", "-50")."""
    if bound == float("inf"):
        return "+Inf"
    text = format(Decimal(repr(bound)), "f")
    return text.removesuffix(".0") if text.endswith(".0") else text


class Paths:
    """The Prometheus servers of one workload: ``scrape[scheme]`` scrapes the planes' endpoints and the
    Collector; ``receiver[scheme]`` takes the SDK's OTLP (``typed``: legacy, with __type__ labels)."""

    def __init__(self, scrape: dict[str, Prometheus], receiver: dict[str, Prometheus]) -> None:
        self.scrape = scrape
        self.receiver = receiver


def _receiver_readers(receivers: list[Prometheus], collector: Collector) -> list[MetricReader]:
    """Extra OTLP exports of a plane, besides its own configured exporter: to the Collector, and to
    each further receiver."""
    targets = [(f"{collector.otlp_http}/v1/metrics", f"Bearer {collector.token}")]
    targets += [(f"{r.url}/api/v1/otlp/v1/metrics", basic_header(USER, TEST_PASSWORD)) for r in receivers]
    return [
        PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=url, headers={"authorization": auth}), export_interval_millis=INTERVAL_MS
        )
        for url, auth in targets
    ]


def _names(prom: Prometheus) -> set[str]:
    return {s["__name__"] for s in prom.series(f"{{{VIA_COLLECTOR}}}")}


def _has_every_series(prom: Prometheus) -> bool:
    """Whether every catalog metric's series are in (all of a histogram's, bar those the Collector path drops)."""
    names = set()
    for spec in CATALOG:
        parts = ("_bucket", "_sum", "_count") if spec.kind is Kind.HISTOGRAM else ("",)
        names |= {spec.prometheus_name + p for p in parts}
    return _names(prom) >= names - RECEIVER_ONLY


@pytest.fixture(autouse=True)
def _fresh_state() -> None:
    """Overrides the unit tests' reset-per-test: the planes here live for the module."""


@pytest.fixture(scope="module")
def paths(collector_factory: Callable[[], Collector], prometheus_factory: Callable[..., Prometheus]) -> Iterator[Paths]:
    """One workload, pulled from the planes, pushed through the Collector, and pushed by the SDK's
    own exporter into Prometheus's OTLP receiver; each path under both name validation schemes."""
    reset()
    collector = collector_factory()
    receive = ["--web.enable-otlp-receiver"]
    utf8 = {"global": {"metric_name_validation_scheme": "utf8"}}
    receiver = {
        "legacy": prometheus_factory({}, flags=receive, web_user=USER),  # docs/operations.md's way, as it is
        "utf8": prometheus_factory({}, flags=receive, web_user=USER, config_changes=utf8),
        "typed": prometheus_factory({}, flags=[*receive, "--enable-feature=type-and-unit-labels"], web_user=USER),
    }
    pushing = {**receiver_env(receiver["legacy"]), "OTEL_METRICS_EXPORTER": "prometheus,otlp"}
    config = TelemetryConfig.from_env({**pushing, "TRADING_TELEMETRY_STRICT": "true"})
    others = [receiver["utf8"], receiver["typed"]]
    planes = {p: init_metrics_exporter(p, config=config, metric_readers=_receiver_readers(others, collector))
              for p in Plane}  # fmt: skip
    record_everything(planes, times=TIMES)
    servers = [serve_metrics(planes[p], port=0) for p in Plane]
    targets = {"planes": [f"127.0.0.1:{s.port}" for s in servers], "collector": [collector.prometheus_target]}
    scrape = {"legacy": prometheus_factory(targets), "utf8": prometheus_factory(targets, config_changes=utf8)}
    try:
        for prom in scrape.values():
            prom.wait_for_scrapes(targets=4)
        for prom in [*scrape.values(), *receiver.values()]:
            wait_for("every catalog series", partial(_has_every_series, prom), timeout=60)
        assert planes[Plane.DATA].health()["exporters"]["otlp"]["consecutive_failures"] == 0
        yield Paths(scrape, receiver)
    finally:
        for server in servers:
            server.close()
        reset()


def _family(prom: Prometheus, spec: MetricSpec, where: str = VIA_COLLECTOR) -> list[dict[str, str]]:
    return prom.series(f'{{__name__=~"{spec.prometheus_name}(_bucket|_sum|_count)?", {where}}}')


def _comparable(series: list[dict[str, str]], le: Callable[[float], str] = normalised) -> set[frozenset[Any]]:
    """Series as label sets, `le` rewritten by ``le`` from its number, the type and unit labels left out."""
    out = set()
    for s in series:
        labels = {k: v for k, v in s.items() if k not in ("__type__", "__unit__")}
        if "le" in labels:
            labels["le"] = le(float(labels["le"]))
        out.add(frozenset(labels.items()))
    return out


def test_the_stack_keeps_the_receiver_off_and_sets_its_translation() -> None:
    """Compose starts Prometheus without the OTLP receiver; prometheus.yml keeps legacy names and sets the
    OTLP translation these tests prove."""
    flags = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["prometheus"]["command"]
    assert "--web.enable-otlp-receiver" not in flags
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert config["global"]["metric_name_validation_scheme"] == "legacy"
    assert config["otlp"] == {
        "translation_strategy": "UnderscoreEscapingWithSuffixes",
        "promote_scope_metadata": True,
        "keep_identifying_resource_attributes": False,
    }


@pytest.mark.parametrize("spec", CATALOG, ids=lambda s: s.prometheus_name)
def test_the_receiver_stores_the_series_the_collector_path_does(paths: Paths, spec: MetricSpec) -> None:
    """Through the OTLP receiver the metric has exactly the Collector path's series: names (with _total,
    unit suffixes, _bucket), every label key and value (job, instance, service, the scope's), and its
    bounds, which the receiver writes as Go's %f (le="1") where a scrape stores le="1.0"; a histogram
    with negative bounds also keeps its _sum and _count."""
    collected = _family(paths.scrape["legacy"], spec)
    received = _family(paths.receiver["legacy"], spec)
    assert collected, f"{spec.prometheus_name} missing through the Collector"
    extra = {s["__name__"] for s in received} - {s["__name__"] for s in collected}
    assert extra == {n for n in RECEIVER_ONLY if n.startswith(spec.prometheus_name + "_")}
    kept = [s for s in received if s["__name__"] not in extra]
    assert _comparable(kept) == _comparable(collected)
    if spec.kind is Kind.HISTOGRAM:
        les = sorted((s["le"] for s in received if s["__name__"].endswith("_bucket")), key=float)
        assert les == [receiver_le(b) for b in (*(spec.buckets or ()), float("inf"))]


@pytest.mark.parametrize("spec", CATALOG, ids=lambda s: s.prometheus_name)
def test_the_receiver_values_equal_the_workload(paths: Paths, spec: MetricSpec) -> None:
    """Counter totals, histogram counts and gauge values through the OTLP receiver equal what was recorded."""
    selector = ", ".join([VIA_COLLECTOR, *(f'{k}="{v}"' for k, v in labels_for(spec).items())])
    prom = paths.receiver["legacy"]
    if spec.kind is Kind.HISTOGRAM:
        assert prom.value(f'{spec.prometheus_name}_bucket{{{selector}, le="+Inf"}}') == TIMES
    elif spec.kind is Kind.COUNTER:
        assert prom.value(f"{spec.prometheus_name}{{{selector}}}") == pytest.approx(TIMES * sample_value(spec))
    else:
        assert prom.value(f"{spec.prometheus_name}{{{selector}}}") == pytest.approx(sample_value(spec))


def test_the_receiver_gives_every_metric_its_catalog_type(paths: Paths) -> None:
    """Prometheus keeps no metadata for OTLP series in its metadata API; with type-and-unit-labels each
    series carries its OTLP type as __type__: the catalog's, as the Collector path's metadata says, and
    the feature changes no other label."""
    typed = paths.receiver["typed"]
    collected = _types(paths.scrape["legacy"], 'job="otel-collector"')
    for spec in CATALOG:
        types = {s.get("__type__") for s in _family(typed, spec)}
        family = spec.prometheus_name.removesuffix("_total")
        assert types == {spec.prometheus_type} == {collected.get(family)}, spec.prometheus_name
        plain = _family(paths.receiver["legacy"], spec)
        assert _comparable(_family(typed, spec), receiver_le) == _comparable(plain, receiver_le)


@pytest.mark.parametrize("path", ["pull", "collector", "otlp receiver"])
def test_names_are_the_same_with_utf8_names_allowed(paths: Paths, path: str) -> None:
    """Every series of the path (catalog metrics, target_info, scrape series) is the same under Prometheus
    3's default utf8 validation as under the stack's legacy one."""
    servers, where = {
        "pull": (paths.scrape, DIRECT),
        "collector": (paths.scrape, VIA_COLLECTOR),
        "otlp receiver": ({k: paths.receiver[k] for k in ("legacy", "utf8")}, VIA_COLLECTOR),
    }[path]
    found = {scheme: _comparable(prom.series(f"{{{where}}}"), receiver_le) for scheme, prom in servers.items()}
    assert len(found["legacy"]) >= len(CATALOG)
    assert found["utf8"] == found["legacy"]


def test_the_receiver_asks_for_the_password(paths: Paths) -> None:
    """Without credentials, or with a wrong password, an OTLP write gets 401 and stores nothing; the SDK,
    sending the password in OTEL_EXPORTER_OTLP_HEADERS, got every series in (the tests above)."""
    prom = paths.receiver["legacy"]
    url = f"{prom.url}/api/v1/otlp/v1/metrics"
    body = forged_uptime("neighbour/order_plane").SerializeToString()
    proto = {"Content-Type": "application/x-protobuf"}
    assert http_request("POST", url, body, proto)[0] == 401
    assert http_request("POST", url, body, {**proto, "Authorization": basic_header(USER, "not-it")})[0] == 401
    assert prom.query('{instance="neighbour/order_plane"}') == []
    assert prom.query(f'trading_telemetry_uptime_seconds{{{VIA_COLLECTOR}, service="order_plane"}}')


def test_legacy_names_keep_a_utf8_target_out(prometheus_factory: Callable[..., Prometheus]) -> None:
    """What the choice changes: a target exposing a dotted name fails whole under the stack's legacy
    validation (down, so ScrapeTargetDown fires) and is stored as it is under utf8."""
    target = Exposition('# TYPE "desk.pnl.usd" gauge\n{"desk.pnl.usd", "desk.name"="a"} 1\nplain_gauge 2\n')
    try:
        proms = {
            "legacy": prometheus_factory({"planes": [target.target]}),
            "utf8": prometheus_factory({"planes": [target.target]},
                                       config_changes={"global": {"metric_name_validation_scheme": "utf8"}}),
        }  # fmt: skip

        def scraped(prom: Prometheus) -> dict[str, Any] | None:
            active = [t for t in prom.api("targets")["activeTargets"] if t["labels"]["job"] == "trading-planes"]
            return active[0] if active and active[0]["health"] != "unknown" else None

        legacy = wait_for("the legacy scrape", lambda: scraped(proms["legacy"]))
        assert legacy["health"] == "down"
        assert "invalid metric name" in legacy["lastError"]
        assert proms["legacy"].query("plain_gauge") == []
        assert wait_for("the utf8 scrape", lambda: scraped(proms["utf8"]))["health"] == "up"
        assert proms["utf8"].value('{"desk.pnl.usd", "desk.name"="a"}') == 1
    finally:
        target.close()


def test_readme_names_the_receiver_path_and_the_choice() -> None:
    """docs/operations.md says how to turn the receiver on safely and which name validation the stack keeps."""
    readme = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    for text in ("--web.enable-otlp-receiver", "/api/v1/otlp", "metric_name_validation_scheme: legacy",
                 "basic_auth_users"):  # fmt: skip
        assert text in readme, text
