from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import fields

import pytest

from trading_telemetry import config
from trading_telemetry.config import SETTINGS, Setting, TelemetryConfig
from trading_telemetry.errors import ConfigError


def test_nothing_set_means_prometheus_pull() -> None:
    """With no variable set, the only exporter is the Prometheus pull endpoint."""
    cfg = TelemetryConfig.from_env({})
    assert cfg == TelemetryConfig()
    assert cfg.metrics_exporters == ("prometheus",)
    assert cfg.traces_exporters == ()
    assert (cfg.strict, cfg.bind_address) == (False, "127.0.0.1")


def test_settings_table_matches_the_config_fields_and_defaults() -> None:
    """Each field has one row, and each row's documented default parses to the field's default."""
    assert [s.field for s in SETTINGS] == [f.name for f in fields(TelemetryConfig)]
    for s in SETTINGS:
        if s.default:
            assert s.parse(s.variables[0], s.default) == getattr(TelemetryConfig(), s.field), s.field


def test_exporter_lists() -> None:
    """OTEL_METRICS_EXPORTER takes a comma list; `none` means no exporter."""
    assert TelemetryConfig.from_env({"OTEL_METRICS_EXPORTER": "prometheus, OTLP"}).metrics_exporters == (
        "prometheus",
        "otlp",
    )
    assert TelemetryConfig.from_env({"OTEL_METRICS_EXPORTER": "none"}).metrics_exporters == ()


# Each settings row: a valid value and what it gives, and an invalid one. An invalid OTEL_*
# value is warned about (variable and value named) and treated as unset, as the
# specification says; an invalid TRADING_TELEMETRY_* value raises, naming the variable.
ROWS: dict[str, tuple[str, object, str]] = {
    "sdk_disabled": ("TRUE", True, "yes"),
    "metrics_exporters": ("prometheus,logging", ("prometheus",), "zipkin"),
    "otlp_protocol": ("grpc", "grpc", "http/json"),
    "otlp_endpoint": ("http://collector:4318", "http://collector:4318", "collector:4317"),
    "otlp_metrics_endpoint": ("https://c:9/m", "https://c:9/m", "c:9"),
    "otlp_headers": ("a=b", {"a": "b"}, "no-equals-s3cr3t"),
    "otlp_timeout_ms": ("0", 2**31 - 1, "-5"),
    "metric_export_interval_ms": ("1000", 1000, "0"),
    "metric_export_timeout_ms": ("0", 2**31 - 1, "5s"),
    "exemplar_filter": ("always_on", "always_on", "sometimes"),
    "traces_exporters": ("otlp,zipkin", ("otlp",), "jaeger"),
    "otlp_traces_protocol": ("grpc", "grpc", "thrift"),
    "otlp_traces_endpoint": ("http://t:4318/v1/traces", "http://t:4318/v1/traces", "t:4318"),
    "otlp_traces_headers": ("x=y", {"x": "y"}, "oops-s3cr3t"),
    "otlp_traces_timeout_ms": ("2500", 2500, "x"),
    "propagators": ("baggage,b3", ("baggage",), "nope"),
    "log_level": ("error", "error", "loud"),
    "service_name": ("desk", "desk", " "),
    "resource_attributes": ("a=1", {"a": "1"}, "novalue"),
    "strict": ("true", True, "maybe"),
    "bind_address": ("0.0.0.0", "0.0.0.0", " "),
    "cardinality_limit": ("10", 10, "-5"),
    "http_max_connections": ("20", 20, "0"),
    "http_idle_timeout_ms": ("2000", 2000, "soon"),
    "shutdown_timeout_ms": ("1000", 1000, "-1"),
    "catalog_path": ("desk.yaml", "desk.yaml", " "),
    "asyncio_plane": ("data_plane", "data_plane", "risk_plane"),
}


def test_every_setting_has_a_behaviour_row() -> None:
    assert set(ROWS) == {s.field for s in SETTINGS}


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.variables[0])
def test_each_setting_behaves_as_documented(setting: Setting, caplog: pytest.LogCaptureFixture) -> None:
    """The valid value gives its value; an invalid OTEL_* one warns once, naming variable and value (never a
    header's), and falls back to the default; an invalid TRADING_TELEMETRY_* one raises naming the variable."""
    good, expected, bad = ROWS[setting.field]
    variable = setting.variables[0]
    value = getattr(TelemetryConfig.from_env({variable: good}), setting.field)
    assert (dict(value) if isinstance(value, Mapping) else value) == expected
    default = getattr(TelemetryConfig(), setting.field)
    if bad.strip() == "":  # blank: unset, as the specification says
        assert getattr(TelemetryConfig.from_env({variable: bad}), setting.field) == default
        return
    if variable.startswith("OTEL_"):
        config._warned.clear()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="trading_telemetry"):
            got = TelemetryConfig.from_env({variable: bad})
            TelemetryConfig.from_env({variable: bad})
        assert getattr(got, setting.field) == default
        messages = [r.getMessage() for r in caplog.records if r.getMessage().startswith(variable)]
        assert len(messages) == 1, messages
        assert "s3cr3t" not in messages[0]
        if "HEADERS" not in variable:
            assert repr(bad) in messages[0]
    else:
        with pytest.raises(ConfigError) as caught:
            TelemetryConfig.from_env({variable: bad})
        assert caught.value.variable == variable
        assert repr(bad) in str(caught.value)


def test_signal_specific_headers_and_timeouts_apply_to_their_own_signal() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_HEADERS": "g=1",
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "m=1",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "3000",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "700",
    }
    cfg = TelemetryConfig.from_env(env)
    assert dict(cfg.otlp_headers) == {"m": "1"}
    assert dict(cfg.otlp_traces_headers) == {"g": "1"}
    assert (cfg.otlp_timeout_ms, cfg.otlp_traces_timeout_ms) == (3000, 700)


def test_otlp_endpoint_rules() -> None:
    """http/protobuf appends /v1/metrics to the base URL; grpc and the signal-specific URL are used as given."""
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}
    assert TelemetryConfig.from_env(base).otlp_metrics_url == "http://collector:4318/v1/metrics"
    assert TelemetryConfig.from_env({}).otlp_metrics_url == "http://localhost:4318/v1/metrics"
    grpc = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    assert TelemetryConfig.from_env(grpc).otlp_metrics_url == "http://localhost:4317"
    specific = {**base, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "https://c:9999/custom"}
    assert TelemetryConfig.from_env(specific).otlp_metrics_url == "https://c:9999/custom"


def test_signal_specific_variables_win() -> None:
    """OTEL_EXPORTER_OTLP_METRICS_PROTOCOL overrides OTEL_EXPORTER_OTLP_PROTOCOL."""
    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc"}
    assert TelemetryConfig.from_env(env).otlp_protocol == "grpc"


def test_key_value_lists_are_percent_decoded() -> None:
    """Resource attributes and headers are key=value lists with percent-encoded values."""
    cfg = TelemetryConfig.from_env(
        {"OTEL_RESOURCE_ATTRIBUTES": "service.namespace=desk%201,deployment.environment=prod",
         "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20x"}
    )  # fmt: skip
    assert dict(cfg.resource_attributes) == {"service.namespace": "desk 1", "deployment.environment": "prod"}
    assert dict(cfg.otlp_headers) == {"authorization": "Bearer x"}


def test_config_is_immutable() -> None:
    """The config object cannot be changed after it is read."""
    cfg = TelemetryConfig()
    with pytest.raises(AttributeError):
        cfg.strict = True  # type: ignore[misc]


def test_describe_shows_each_variable_its_value_and_source_with_secrets_redacted() -> None:
    """What `trading-telemetry config` prints: every setting, set ones named, headers never shown."""
    rows = TelemetryConfig.describe({"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer s3cr3t,x-tenant=desk1",
                                     "OTEL_METRICS_EXPORTER": "otlp"})  # fmt: skip
    by_variable = {variable: (value, source) for variable, value, source in rows}
    assert len(rows) == len(SETTINGS)
    assert by_variable["OTEL_METRICS_EXPORTER"] == ("otlp", "OTEL_METRICS_EXPORTER")
    headers = by_variable["OTEL_EXPORTER_OTLP_METRICS_HEADERS / OTEL_EXPORTER_OTLP_HEADERS"]
    assert headers == ("authorization=<redacted>,x-tenant=<redacted>", "OTEL_EXPORTER_OTLP_HEADERS")
    assert "s3cr3t" not in repr(rows)
    assert by_variable["TRADING_TELEMETRY_STRICT"] == ("false", "default")


def test_otel_log_level_sets_the_loggers_level() -> None:
    try:
        TelemetryConfig.from_env({"OTEL_LOG_LEVEL": "error"})
        assert logging.getLogger("trading_telemetry").level == logging.ERROR
        assert logging.getLogger("opentelemetry").level == logging.ERROR
    finally:
        for name in ("trading_telemetry", "opentelemetry"):
            logging.getLogger(name).setLevel(logging.NOTSET)


def test_otel_propagators_choose_what_the_trace_helpers_carry(monkeypatch: pytest.MonkeyPatch) -> None:
    """tracecontext and baggage by default; OTEL_PROPAGATORS=baggage carries baggage alone."""
    from opentelemetry import baggage
    from opentelemetry import context as otel_context

    from trading_telemetry import inject_trace_context, reset

    token = otel_context.attach(baggage.set_baggage("desk", "eq1"))
    try:
        reset()
        assert inject_trace_context({}).get("baggage") == "desk=eq1"
        monkeypatch.setenv("OTEL_PROPAGATORS", "tracecontext")
        reset()
        assert "baggage" not in inject_trace_context({})
        monkeypatch.setenv("OTEL_PROPAGATORS", "baggage")
        reset()
        assert inject_trace_context({}) == {"baggage": "desk=eq1"}
    finally:
        otel_context.detach(token)
        reset()
