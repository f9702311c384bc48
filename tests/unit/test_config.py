from __future__ import annotations

from dataclasses import fields

import pytest

from trading_telemetry.config import SETTINGS, TelemetryConfig
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


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_METRICS_EXPORTER", "prometheus,zipkin"),
        ("OTEL_METRICS_EXPORTER", "none,otlp"),
        ("OTEL_TRACES_EXPORTER", "prometheus"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "5s"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "0"),
        ("OTEL_SDK_DISABLED", "yes please"),
        ("OTEL_RESOURCE_ATTRIBUTES", "service.namespace"),
        ("TRADING_TELEMETRY_CARDINALITY_LIMIT", "-5"),
        ("TRADING_TELEMETRY_STRICT", "maybe"),
    ],
)
def test_invalid_values_name_variable_and_value(variable: str, value: str) -> None:
    """An invalid value raises ConfigError whose message names the variable and the value."""
    with pytest.raises(ConfigError) as caught:
        TelemetryConfig.from_env({variable: value})
    assert caught.value.variable == variable
    assert f"{variable}={value!r}" in str(caught.value)


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
