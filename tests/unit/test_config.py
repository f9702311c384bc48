from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import fields

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    "otlp_temporality": ("LowMemory", "lowmemory", "sometimes"),
    "metric_export_interval_ms": ("1000", 1000, "0"),
    "metric_export_timeout_ms": ("0", 2**31 - 1, "5s"),
    "otlp_histogram_aggregation": (
        "BASE2_exponential_bucket_histogram",
        "base2_exponential_bucket_histogram",
        "exponential",
    ),
    "native_histograms": ("All", "all", "some"),
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
    "http_header_timeout_ms": ("500", 500, "later"),
    "shutdown_timeout_ms": ("1000", 1000, "-1"),
    "catalog_path": ("desk.yaml", "desk.yaml", " "),
    "asyncio_plane": ("data_plane", "data_plane", "risk_plane"),
    "multiprocess_dir": ("/dev/shm/desk", "/dev/shm/desk", " "),
    "multiprocess_gauge": ("LiveSum", "livesum", "average"),
    "multiprocess_push": ("Sum", "sum", "both"),
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


# A byte that is not UTF-8 in the environment reaches os.environ as a lone surrogate (the
# surrogateescape of os.fsdecode); percent-encoding can carry bytes that are not UTF-8 too.
NOT_TEXT = os.fsdecode(b"desk\xff")


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("OTEL_SERVICE_NAME", NOT_TEXT),
        ("OTEL_SERVICE_NAME", "desk\ud800"),
        ("OTEL_RESOURCE_ATTRIBUTES", f"service.namespace=ok,desk={NOT_TEXT}"),
        ("OTEL_RESOURCE_ATTRIBUTES", f"{NOT_TEXT}=1"),
        ("OTEL_RESOURCE_ATTRIBUTES", "service.namespace=ok,desk=caf%E9"),
    ],
    ids=["service-name-byte", "service-name-surrogate", "attribute-value", "attribute-key", "percent-latin1"],
)
def test_resource_values_that_are_not_text_are_warned_about_once_and_ignored(
    variable: str, raw: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A resource value that is not valid Unicode text (a non-UTF-8 byte, a lone surrogate, percent-encoding that
    is not UTF-8) makes the whole variable ignored, with one warning that names the variable and shows the value
    escaped, as the specification says for a value that fails to decode."""
    with caplog.at_level(logging.WARNING, logger="trading_telemetry"):
        first = TelemetryConfig.from_env({variable: raw})
        second = TelemetryConfig.from_env({variable: raw})
    assert first == second == TelemetryConfig()
    messages = [r.getMessage() for r in caplog.records if r.getMessage().startswith(variable)]
    assert len(messages) == 1, messages
    assert repr(raw) in messages[0]
    assert "not" in messages[0]
    messages[0].encode("utf-8")  # the warning itself is safe to write anywhere


def test_a_non_utf8_byte_in_the_real_environment_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through os.environ, as a deployment sets it: a byte that is not UTF-8 leaves the default in place."""
    monkeypatch.setenv("OTEL_SERVICE_NAME", NOT_TEXT)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"desk={NOT_TEXT}")
    cfg = TelemetryConfig.from_env()
    assert (cfg.service_name, dict(cfg.resource_attributes)) == ("", {})


def test_percent_encoded_utf8_and_non_ascii_values_are_kept() -> None:
    """Valid text is kept whatever its script: percent-encoded UTF-8 is decoded, plain non-ASCII passes."""
    cfg = TelemetryConfig.from_env(
        {"OTEL_RESOURCE_ATTRIBUTES": "desk=caf%C3%A9,region=東京", "OTEL_SERVICE_NAME": "désk"}
    )
    assert dict(cfg.resource_attributes) == {"desk": "café", "region": "東京"}
    assert cfg.service_name == "désk"


def test_a_header_that_is_not_text_is_ignored_without_showing_it(caplog: pytest.LogCaptureFixture) -> None:
    """An OTLP header value that is not valid text is ignored like any invalid header list: its text never shown."""
    with caplog.at_level(logging.WARNING, logger="trading_telemetry"):
        cfg = TelemetryConfig.from_env({"OTEL_EXPORTER_OTLP_HEADERS": f"authorization=s3cr3t{NOT_TEXT}"})
    assert dict(cfg.otlp_headers) == {}
    assert "s3cr3t" not in caplog.text
    assert "entry 1" in caplog.text


text_with_hazards = st.lists(
    st.one_of(st.characters(), st.sampled_from(["\udcff", "\ud800", "%FF", "%E2%82", "%", ",", "=", " "]))
).map("".join)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(name=text_with_hazards, attributes=text_with_hazards)
def test_whatever_the_environment_holds_the_resource_is_exportable_text(name: str, attributes: str) -> None:
    """For any OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, reading them never raises, and every value that
    comes out encodes as UTF-8 (what /metrics and OTLP need)."""
    cfg = TelemetryConfig.from_env({"OTEL_SERVICE_NAME": name, "OTEL_RESOURCE_ATTRIBUTES": attributes})
    cfg.service_name.encode("utf-8")
    for key, value in cfg.resource_attributes.items():
        key.encode("utf-8")
        value.encode("utf-8")


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
