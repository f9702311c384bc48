"""Native histograms on the push paths, each into Prometheus 3 and into Thanos: the SDK's exponential
points through our Collector in the gateway role (otel_collector/gateway.yaml) and its remote write
into Prometheus's remote-write receiver and into Thanos Receive; and straight into Prometheus's OTLP
receiver, whose series reach Thanos both ways docs/scale-out.md gives a Prometheus: a Thanos Sidecar
beside it, and its remote write into Thanos Receive (``send_native_histograms``). Read back through each
store's query API, every path gives the same native histogram as the handle recorded (count, sum, bucket
boundaries and counts, zero and negative buckets), and the classic series of the other histograms still
arrive."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

from helpers import labels_for, record_everything, wait_for
from servers import COLLECTOR_DIR, Collector, Prometheus, PromQLClient, ThanosQuery, ThanosReceive, ThanosSidecar
from trading_telemetry import TelemetryConfig, init_metrics_exporter, reset
from trading_telemetry._native import NativeSnapshot
from trading_telemetry.catalog import CATALOG, Kind, MetricSpec, Plane, extend

pytestmark = pytest.mark.integration

INTERVAL_MS = 300
TIMES = 3
GATEWAY_TENANT, RECEIVER_TENANT = "trading", "otlp"  # Receive's tenant_id of each path's series
RECEIVER_LABELS = {"cluster": "otlp"}  # the OTLP-receiving Prometheus's external labels (a Sidecar needs some)
_FILL, _SLIP = (next(s for s in CATALOG if s.key == key) for key in ("total_fill_latency", "slippage_bps"))
LATENCY = MetricSpec(Plane.ORDER, "venue_latency", "orders_venue_latency", Kind.HISTOGRAM, "s",
                     "Venue round trip", _FILL.labels, _FILL.buckets, min_value=0.0, native=True)  # fmt: skip
SLIPPAGE = MetricSpec(Plane.ORDER, "venue_slippage_bps", "orders_venue_slippage_bps", Kind.HISTOGRAM, "{bp}",
                      "Slippage against the venue's quote", _SLIP.labels, _SLIP.buckets, native=True)  # fmt: skip
NATIVE = (LATENCY, SLIPPAGE)
Buckets = dict[tuple[str, int], int]
"""A native histogram's counts by (side, OTel index): ("+", i) holds (base**i, base**(i+1)], ("-", i) its
mirror, ("0", 0) the zero bucket."""


@dataclass
class Stores:
    """Each path's two stores, and what the handles recorded: native metric -> (count, sum, scale, buckets)."""

    gateway: Prometheus  # the Collector's remote write, into --web.enable-remote-write-receiver
    receiver: Prometheus  # the SDK's OTLP, into --web.enable-otlp-receiver
    thanos: ThanosQuery  # over the Receive both paths write into (tenants trading and otlp) and the Sidecar
    recorded: dict[str, tuple[int, float, int, Buckets]]


def _workload(rng: random.Random) -> dict[MetricSpec, list[float]]:
    """Lognormal latencies over five decades (the series downscales) with a zero; slippage of both signs."""
    latencies = [rng.lognormvariate(math.log(0.004), 1.6) for _ in range(3000)] + [0.0]
    slippage = [rng.gauss(0.0, 8.0) for _ in range(800)] + [0.0, 0.0]
    return {LATENCY: latencies, SLIPPAGE: slippage}


def _other_readers(gateway: Collector, receiver: Prometheus) -> list[PeriodicExportingMetricReader]:
    """A plane's exports besides its configured one: to the gateway into Receive, and to Prometheus's OTLP receiver."""
    targets = [(f"{gateway.otlp_http}/v1/metrics", {"authorization": f"Bearer {gateway.token}"}),
               (f"{receiver.url}/api/v1/otlp/v1/metrics", {})]  # fmt: skip
    return [
        PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=url, headers=headers), export_interval_millis=INTERVAL_MS
        )
        for url, headers in targets
    ]


def _recorded_buckets(snapshot: NativeSnapshot) -> Buckets:
    out = {("0", 0): snapshot.zero_count}
    for side, offset, counts in (("+", snapshot.positive_offset, snapshot.positive),
                                 ("-", snapshot.negative_offset, snapshot.negative)):  # fmt: skip
        out |= {(side, offset + i): n for i, n in enumerate(counts)}
    return {k: n for k, n in out.items() if n}


@pytest.fixture(autouse=True)
def _fresh_state() -> None:
    """Overrides the unit tests' reset-per-test: the planes here live for the module."""


@pytest.fixture(scope="module")
def stores(
    collector_factory: Callable[..., Collector],
    prometheus_factory: Callable[..., Prometheus],
    thanos_factory: Callable[..., Any],
) -> Iterator[Stores]:
    """Every catalog metric recorded TIMES times and the two native ones a workload each, pushed on both paths:
    the plane's configured OTLP exporter to a gateway writing into Prometheus, another reader to a gateway
    writing into Thanos Receive, a third to Prometheus's OTLP receiver, itself remote-writing into Receive and
    read by a Sidecar."""
    reset()
    extend(NATIVE)
    receive = thanos_factory(ThanosReceive)
    into_receive = {
        "url": receive.push_url,
        "send_native_histograms": True,
        "headers": {"X-Scope-OrgID": RECEIVER_TENANT},
    }
    receiver = prometheus_factory(
        {},
        flags=["--web.enable-otlp-receiver"],
        config_changes={"remote_write": [into_receive], "global": {"external_labels": RECEIVER_LABELS}},
    )
    beside = SimpleNamespace(url=receiver.url, data=receiver.workdir / "data")  # what a Sidecar reads of it
    sidecar = thanos_factory(ThanosSidecar, prometheus=beside)
    gateway = prometheus_factory({}, flags=["--web.enable-remote-write-receiver"])
    gateways = [
        collector_factory(config=COLLECTOR_DIR / "gateway.yaml", env={"OTELCOL_REMOTE_WRITE_URL": url})
        for url in (f"{gateway.url}/api/v1/write", receive.push_url)
    ]
    thanos = thanos_factory(ThanosQuery, endpoints=[receive.grpc, sidecar.grpc])
    config = TelemetryConfig.from_env({
        "OTEL_METRICS_EXPORTER": "otlp",
        **gateways[0].sdk_env(),
        "OTEL_METRIC_EXPORT_INTERVAL": str(INTERVAL_MS),
        "TRADING_TELEMETRY_STRICT": "true",
    })  # fmt: skip
    planes = {p: init_metrics_exporter(p, config=config, metric_readers=_other_readers(gateways[1], receiver))
              for p in Plane}  # fmt: skip
    record_everything(planes, times=TIMES)
    recorded = {}
    for spec, values in _workload(random.Random(23)).items():
        handle = planes[Plane.ORDER].bind(spec.key, **labels_for(_FILL if spec is LATENCY else _SLIP))
        for value in values:
            handle.observe(value)
        counts, total, _, _, native = handle.snapshot_native()  # type: ignore[attr-defined]
        assert native is not None
        recorded[spec.prometheus_name] = (sum(counts), total, native.scale, _recorded_buckets(native))
    try:
        yield Stores(gateway, receiver, thanos, recorded)
    finally:
        reset()


def _stored(result: dict[str, Any], scale: int) -> tuple[int, float, Buckets]:
    """A native histogram of a query result (``"histogram": [ts, {count, sum, buckets}]``): its count, sum and
    buckets by OTel index at ``scale``, each boundary checked to be that bucket's at that scale."""
    assert "value" not in result, f"a float sample where a native histogram was expected: {result}"
    body = result["histogram"][1]
    buckets: Buckets = {}
    for rule, low, high, count in body.get("buckets", []):
        low, high = float(low), float(high)
        if rule == 3:  # [-threshold, threshold]: the zero bucket (remote write's threshold, 1e-128)
            assert low == -high, (low, high)
            assert high <= 1e-100, (low, high)
            key = ("0", 0)
        else:
            side, size = ("+", high) if rule == 0 else ("-", -low)  # (low, high] positive, [low, high) negative
            assert rule == (0 if side == "+" else 1), (rule, low, high)
            index = round(math.log2(size) * 2**scale) - 1  # size = base**(index + 1)
            base = 2.0 ** (2.0**-scale)
            assert math.isclose(abs(low if side == "+" else high), base**index, rel_tol=1e-9), (scale, index, low, high)
            assert math.isclose(size, base ** (index + 1), rel_tol=1e-9), (scale, index, low, high)
            key = (side, index)
        buckets[key] = buckets.get(key, 0) + int(float(count))
    return int(float(body["count"])), float(body["sum"]), buckets


def _native(store: PromQLClient, name: str, scale: int, where: str) -> tuple[int, float, Buckets] | None:
    result = store.query(f"{name}{{{where}}}")
    assert len(result) <= 1, result
    return _stored(result[0], scale) if result else None


PATHS = {  # each path: its Prometheus, and the matchers of its series in Thanos
    "collector-remote-write": (lambda s: s.gateway, f'tenant_id="{GATEWAY_TENANT}"'),
    "sdk-otlp-receiver+remote-write": (lambda s: s.receiver, f'tenant_id="{RECEIVER_TENANT}"'),
    "sdk-otlp-receiver+sidecar": (lambda s: s.receiver, 'tenant_id="", cluster="otlp"'),
}


@pytest.mark.parametrize("spec", NATIVE, ids=lambda s: s.prometheus_name)
@pytest.mark.parametrize("path", sorted(PATHS))
def test_prometheus_and_thanos_store_the_recorded_native_histogram(stores: Stores, path: str, spec: MetricSpec) -> None:
    """Through the path, Prometheus and Thanos answer the same native histogram, equal to the handle's: its count,
    sum, and every bucket's boundaries and count, zero and negative buckets included."""
    prometheus_of, tenant = PATHS[path]
    count, total, scale, buckets = stores.recorded[spec.prometheus_name]
    expected = (count, total, buckets)
    name = spec.prometheus_name
    stored = wait_for(
        f"{name} as recorded in Prometheus ({path})",
        lambda: (found := _native(prometheus_of(stores), name, scale, "")) == expected and found,
        timeout=30,
    )
    in_thanos = wait_for(
        f"{name} as recorded in Thanos ({path})",
        lambda: (found := _native(stores.thanos, name, scale, tenant)) == expected and found,
        timeout=30,
    )
    assert stored == in_thanos == expected
    if spec is LATENCY:
        assert scale < 8, "the latency workload spans enough to downscale"
    else:
        assert {side for side, _ in buckets} == {"+", "-", "0"}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_classic_histograms_and_counters_still_arrive(stores: Stores, path: str) -> None:
    """Beside the native ones, every catalog histogram without native buckets arrives as classic _bucket series
    (each le, TIMES in +Inf) and no native series, and every counter with its total, in Prometheus and in Thanos."""
    prometheus_of, tenant = PATHS[path]
    for store, where in ((prometheus_of(stores), ""), (stores.thanos, tenant)):
        for spec in CATALOG:
            name = spec.prometheus_name
            if spec.kind is Kind.HISTOGRAM and not spec.native:
                query = f'{name}_bucket{{le="+Inf", {where}}}'
                wait_for(f"{query} = {TIMES}", lambda s=store, q=query: s.value(q) == TIMES, timeout=30)
                assert store.value(f"count({name}_bucket{{{where}}})") == len(spec.buckets or ()) + 1
                assert store.query(f"{name}{{{where}}}") == [], "no native series for a classic histogram"
            elif spec.kind is Kind.COUNTER:
                query = f"{name}{{{where}}}"
                wait_for(f"{query} > 0", lambda s=store, q=query: (s.value(q) or 0) > 0, timeout=30)
