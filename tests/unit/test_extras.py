"""The optional features and their extras: OTLP over grpc (`[grpc]`) and the asyncio
instrumentation (`[asyncio]`). Configured without their package, a plane's set-up raises a
ConfigError naming the setting and the install command, before anything is built; the
default OTLP protocol, HTTP/protobuf, needs neither."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_telemetry import ConfigError, TelemetryConfig, init_metrics_exporter, reset
from trading_telemetry._state import planes

GRPC = "opentelemetry.exporter.otlp.proto.grpc"
# No Collector listens: the last export at reset() gives up at once.
QUICK = {"metric_export_interval_ms": 600_000, "otlp_timeout_ms": 1, "otlp_traces_timeout_ms": 1}
ASYNCIO = "opentelemetry.instrumentation.asyncio"


def _uninstall(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    """Make ``package`` (and its submodules) fail to import, as if its extra were not installed."""
    for name in [n for n in sys.modules if n.startswith(package + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, package, None)


@pytest.fixture
def no_grpc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    _uninstall(monkeypatch, GRPC)
    yield
    reset()


@pytest.fixture
def no_asyncio(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    _uninstall(monkeypatch, ASYNCIO)
    yield
    reset()


@pytest.mark.usefixtures("no_grpc")
def test_grpc_chosen_by_the_environment_without_the_extra_names_the_extra() -> None:
    """OTEL_EXPORTER_OTLP_PROTOCOL=grpc without the grpc extra: the plane's set-up raises, naming the variable and
    `pip install 'trading-telemetry[grpc]'`, and leaves no plane and no exporter thread behind."""
    threads = threading.active_count()
    env = {"OTEL_METRICS_EXPORTER": "prometheus,otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    config = TelemetryConfig.from_env(env)
    with pytest.raises(ConfigError, match=r"pip install 'trading-telemetry\[grpc\]'") as raised:
        init_metrics_exporter("data_plane", config=config)
    assert "OTEL_EXPORTER_OTLP_PROTOCOL" in str(raised.value)
    assert raised.value.variable == "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL"
    assert not planes
    assert threading.active_count() == threads


@pytest.mark.usefixtures("no_grpc")
def test_grpc_spans_without_the_extra_fail_before_the_metrics_exporter_starts() -> None:
    """Spans over grpc without the extra raise at set-up, naming the traces variable, before the metrics
    exporter (HTTP) starts its export thread."""
    threads = threading.active_count()
    config = TelemetryConfig(metrics_exporters=("otlp",), traces_exporters=("otlp",), otlp_traces_protocol="grpc")
    with pytest.raises(ConfigError, match=r"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL.*trading-telemetry\[grpc\]"):
        init_metrics_exporter("order_plane", config=config)
    assert threading.active_count() == threads


@pytest.mark.usefixtures("no_grpc")
def test_http_protobuf_needs_no_extra() -> None:
    """The default protocol, HTTP/protobuf, works for metrics and spans without the grpc extra."""
    config = TelemetryConfig(metrics_exporters=("otlp",), traces_exporters=("otlp",), **QUICK)
    metrics = init_metrics_exporter("data_plane", config=config)
    assert metrics.health()["exporters"]["otlp"]["target"] == "http://localhost:4318/v1/metrics"
    assert metrics.tracer is not None
    assert sys.modules[GRPC] is None


@pytest.mark.usefixtures("no_asyncio")
def test_the_asyncio_plane_without_the_extra_names_the_extra() -> None:
    """TRADING_TELEMETRY_ASYNCIO_PLANE without the asyncio extra: that plane's set-up raises, naming the variable and
    the install command; the other planes are set up as usual."""
    config = TelemetryConfig.from_env({"TRADING_TELEMETRY_ASYNCIO_PLANE": "strategy_plane"})
    init_metrics_exporter("data_plane", config=config)
    with pytest.raises(ConfigError, match=r"TRADING_TELEMETRY_ASYNCIO_PLANE='strategy_plane'.*\[asyncio\]'"):
        init_metrics_exporter("strategy_plane", config=config)


@pytest.mark.usefixtures("no_grpc")
def test_a_disabled_sdk_needs_no_extra() -> None:
    """With OTEL_SDK_DISABLED nothing is exported, so a configured grpc protocol needs no extra."""
    config = TelemetryConfig(sdk_disabled=True, metrics_exporters=("otlp",), otlp_protocol="grpc")
    assert init_metrics_exporter("data_plane", config=config).health()["status"] == "disabled"


@settings(max_examples=30, deadline=None)
@given(
    metrics=st.sets(st.sampled_from(["prometheus", "otlp", "console"])),
    traces=st.sets(st.sampled_from(["otlp", "console"])),
    protocols=st.tuples(st.sampled_from(["grpc", "http/protobuf"]), st.sampled_from(["grpc", "http/protobuf"])),
)
def test_set_up_fails_exactly_when_a_grpc_exporter_is_configured(
    metrics: set[str], traces: set[str], protocols: tuple[str, str]
) -> None:
    """Without the grpc extra, a plane's set-up raises exactly when an `otlp` exporter of either signal uses grpc."""
    config = TelemetryConfig(
        metrics_exporters=tuple(sorted(metrics)),
        traces_exporters=tuple(sorted(traces)),
        otlp_protocol=protocols[0],
        otlp_traces_protocol=protocols[1],
        **QUICK,
    )
    needs_grpc = ("otlp" in metrics and protocols[0] == "grpc") or ("otlp" in traces and protocols[1] == "grpc")
    with pytest.MonkeyPatch.context() as monkeypatch:
        _uninstall(monkeypatch, GRPC)
        try:
            if needs_grpc:
                with pytest.raises(ConfigError, match=r"trading-telemetry\[grpc\]"):
                    init_metrics_exporter("data_plane", config=config)
            else:
                init_metrics_exporter("data_plane", config=config)
        finally:
            reset()


def test_importing_the_package_loads_no_sdk_exporter_or_server() -> None:
    """`import trading_telemetry` and the quick start's import line load neither the OTel SDK nor an exporter,
    prometheus_client, waitress or YAML; a plane loads the metrics SDK and prometheus_client, not the tracing SDK
    (no span exporter) nor grpc; the first server loads waitress."""
    script = """
import sys
HEAVY = ("opentelemetry.sdk.metrics", "opentelemetry.sdk.trace", "opentelemetry.exporter", "prometheus_client",
         "waitress", "yaml", "grpc", "opentelemetry.instrumentation", "importlib.metadata")
loaded = lambda: sorted(m for m in HEAVY if m in sys.modules)
from trading_telemetry import init_metrics_exporter, start_metrics_server
print(loaded())
import trading_telemetry
metrics = init_metrics_exporter("data_plane")
print(loaded())
server = trading_telemetry.serve_metrics(metrics, port=0)
print(loaded())
server.close()
"""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path), "OTEL_METRICS_EXPORTER": "prometheus"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    at_import, with_a_plane, with_a_server = done.stdout.splitlines()
    assert at_import == "[]"
    assert with_a_plane == "['importlib.metadata', 'opentelemetry.sdk.metrics', 'prometheus_client']"
    assert with_a_server == "['importlib.metadata', 'opentelemetry.sdk.metrics', 'prometheus_client', 'waitress']"
