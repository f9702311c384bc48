"""Beside other OpenTelemetry code: under `opentelemetry-instrument` (with and without
`opentelemetry-distro`) and with global providers an application set itself, the planes
keep their own providers, serve /metrics when configured to, never replace or break the
global ones, and say plainly which tool owns what."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from trading_telemetry import TelemetryConfig, init_metrics_exporter, reset, traced

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
DISTRO = "opentelemetry-distro==0.66b1"
PLANES_SCRIPT = """
import json, urllib.request
from opentelemetry import trace
from trading_telemetry import init_metrics_exporter, reset, serve_metrics
planes = [init_metrics_exporter(p) for p in ("data_plane", "order_plane", "strategy_plane")]
planes[0].inc("ticks_received", source="ibkr_rt", symbol="SPY")
planes[1].inc("orders_received", strategy="OFI", symbol="SPY", direction="BUY", order_type="LIMIT")
planes[2].set("regime_state", 1)
served = {}
for m in planes:
    with serve_metrics(m, port=0) as server:
        try:
            served[m.plane.value] = urllib.request.urlopen(server.url + "/metrics", timeout=10).read().decode()
        except urllib.error.HTTPError as error:
            served[m.plane.value] = error.code
ours = {id(m.tracer) for m in planes}
print(json.dumps({"served": served, "global_tracer_provider": type(trace.get_tracer_provider()).__name__}))
reset()
"""


def run_instrumented(tmp_path: Path, extra_path: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRADING_TELEMETRY_"))}
    env.update({"TRADING_TELEMETRY_ASYNCIO_PLANE": "order_plane", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
                "TRADING_TELEMETRY_SHUTDOWN_TIMEOUT": "2000"})  # fmt: skip
    if extra_path:
        env["PYTHONPATH"] = extra_path
    return subprocess.run([str(BIN / "opentelemetry-instrument"), sys.executable, "-c", PLANES_SCRIPT],
                          capture_output=True, text=True, timeout=120, check=False, env=env, cwd=tmp_path)  # fmt: skip


def test_under_opentelemetry_instrument_without_a_distro(tmp_path: Path) -> None:
    """Every plane serves its catalog on /metrics; the asyncio switch says the tool owns asyncio."""
    import json

    done = run_instrumented(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "data_ticks_received_total" in result["served"]["data_plane"]
    assert "orders_received_total" in result["served"]["order_plane"]
    assert "strategy_regime_state" in result["served"]["strategy_plane"]
    assert done.stderr.count("TRADING_TELEMETRY_ASYNCIO_PLANE=order_plane has no effect") == 1


def test_under_opentelemetry_instrument_with_the_distro(tmp_path: Path) -> None:
    """The distro sets OTEL_METRICS_EXPORTER=otlp: one clear warning says /metrics is off and how to keep it;
    the global tracer provider stays the tool's."""
    import json

    target = tmp_path / "distro"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--target", str(target), DISTRO], check=True, capture_output=True, timeout=300)  # fmt: skip
    done = run_instrumented(tmp_path, str(target))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result["served"].values()) == {404}
    assert done.stderr.count("running under opentelemetry-instrument with OTEL_METRICS_EXPORTER=otlp") == 1
    assert "set OTEL_METRICS_EXPORTER=prometheus,otlp to keep /metrics" in done.stderr
    assert result["global_tracer_provider"] == "TracerProvider"  # the distro's SDK provider, not replaced


def test_global_providers_of_the_application_stay_its_own_and_working() -> None:
    """An application's global providers are neither replaced by the planes nor broken by reset()."""
    spans = InMemorySpanExporter()
    app_tracer_provider = TracerProvider()
    app_tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    app_reader = InMemoryMetricReader()
    app_meter_provider = MeterProvider(metric_readers=[app_reader])
    trace.set_tracer_provider(app_tracer_provider)
    metrics.set_meter_provider(app_meter_provider)
    assert trace.get_tracer_provider() is app_tracer_provider
    reset()
    config = TelemetryConfig(metrics_exporters=("prometheus",), traces_exporters=("console",))
    m = init_metrics_exporter("strategy_plane", config=config, span_exporters=[InMemorySpanExporter()])

    @traced(plane="strategy_plane")
    def signal() -> None:
        pass

    signal()
    m.inc("signals_generated", strategy="OFI", symbol="SPY", direction="BUY")
    reset()
    assert trace.get_tracer_provider() is app_tracer_provider
    assert metrics.get_meter_provider() is app_meter_provider
    with trace.get_tracer("app").start_as_current_span("app-span"):
        pass
    metrics.get_meter("app").create_counter("app_counter").add(1)
    assert [s.name for s in spans.get_finished_spans()] == ["app-span"]
    data = app_reader.get_metrics_data()
    assert data is not None
    names = [met.name for rm in data.resource_metrics for sm in rm.scope_metrics for met in sm.metrics]
    assert names == ["app_counter"]
