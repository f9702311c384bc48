"""Configuration: read once from the environment into one immutable object.

The OpenTelemetry variables keep the meanings the OTel specification gives them; the
package's own variables, only where OTel has none, start with ``TRADING_TELEMETRY_``.
This is the only module that reads the environment, and it reads it only when
:meth:`TelemetryConfig.from_env` is called, never at import time.

Example::

    >>> cfg = TelemetryConfig.from_env({"OTEL_METRICS_EXPORTER": "prometheus,otlp"})
    >>> cfg.metrics_exporters
    ('prometheus', 'otlp')
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from trading_telemetry._globals import STATE
from trading_telemetry.errors import ConfigError

__all__ = ["SETTINGS", "Setting", "TelemetryConfig"]

METRICS_EXPORTERS = ("prometheus", "otlp", "console", "none")
TRACES_EXPORTERS = ("otlp", "console", "none")
OTLP_PROTOCOLS = ("grpc", "http/protobuf")
TEMPORALITY_PREFERENCES = ("cumulative", "delta", "lowmemory")
EXEMPLAR_FILTERS = ("trace_based", "always_on", "always_off")
PLANES = ("data_plane", "order_plane", "strategy_plane")
GAUGE_MODES = ("mostrecent", "livesum", "livemax", "livemin", "liveall")
PUSH_MODES = ("own", "sum")
NATIVE_MODES = ("catalog", "all")
HISTOGRAM_AGGREGATIONS = ("explicit_bucket_histogram", "base2_exponential_bucket_histogram")


def _bool(variable: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0", ""):
        return False
    raise ConfigError(variable, raw, "expected 'true' or 'false'")


def _positive_int(variable: str, raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(variable, raw, "expected a whole number") from None
    if value <= 0:
        raise ConfigError(variable, raw, "expected a number greater than zero")
    return value


def _otel_bool(variable: str, raw: str) -> bool:
    """The specification's Boolean: only ``true`` (any case) is true; a value other than
    ``true``/``false`` is false, with a warning."""
    value = raw.strip().lower()
    if value not in ("true", "false"):
        warn_once(variable, raw, "is neither 'true' nor 'false'; taken as false")
    return value == "true"


def _timeout(variable: str, raw: str) -> int:
    """The specification's Timeout, in ms: 0 is indefinite (the longest 32-bit value);
    negative or not a number is invalid."""
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(variable, raw, "expected a whole number of milliseconds") from None
    if value < 0:
        raise ConfigError(variable, raw, "expected 0 (no limit) or more milliseconds")
    return value or INDEFINITE_MS


def _choices(allowed: tuple[str, ...]) -> Callable[[str, str], tuple[str, ...]]:
    """A comma list of names. For OTEL_* variables an unsupported name is warned about
    and ignored (the specification's Enum); ours raise."""

    def parse(variable: str, raw: str) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(n.strip().lower() for n in raw.split(",") if n.strip()))
        bad = [n for n in names if n not in allowed]
        if bad and not variable.startswith("OTEL_"):
            raise ConfigError(variable, raw, f"expected a comma list of {', '.join(allowed)}")
        if bad:
            warn_once(variable, raw, f"{', '.join(bad)} not supported (supported: {', '.join(allowed)}); ignored")
            names = tuple(n for n in names if n not in bad)
            if not names:
                raise ConfigError(variable, raw, "no supported value")
        if "none" in names and len(names) > 1:
            warn_once(variable, raw, "'none' combined with other values; 'none' ignored")
            names = tuple(n for n in names if n != "none")
        return () if names == ("none",) else names

    return parse


INDEFINITE_MS = 2**31 - 1
"""What a timeout of 0 ("indefinite" in the specification) becomes: the longest 32-bit
millisecond value, as the specification allows. Shutdown stays bounded by
TRADING_TELEMETRY_SHUTDOWN_TIMEOUT whatever the export timeout."""

LOG_LEVELS = {"trace": 5, "debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40, "fatal": 50}

logger = logging.getLogger("trading_telemetry")


def warn_once(variable: str, raw: str, problem: str, *, secret: bool = False) -> None:
    """Log a problem with an OTEL_* value once per (variable, value), secrets redacted."""
    warned = STATE.config_warned
    if (variable, raw) in warned or len(warned) >= 256:
        return
    warned.add((variable, raw))
    shown = "<redacted>" if secret else repr(raw[:200])
    logger.warning("%s=%s %s", variable, shown, problem)


def _log_level(variable: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in LOG_LEVELS:
        raise ConfigError(variable, raw, f"expected one of {', '.join(LOG_LEVELS)}")
    return value


def _propagators(variable: str, raw: str) -> tuple[str, ...]:
    """OTEL_PROPAGATORS: names of installed ``opentelemetry_propagator`` entry points;
    unknown ones are warned about and ignored, ``none`` means none."""
    from importlib.metadata import entry_points

    names = tuple(dict.fromkeys(n.strip().lower() for n in raw.split(",") if n.strip()))
    if "none" in names:
        return ()
    known = {e.name for e in entry_points(group="opentelemetry_propagator")}
    unknown = [n for n in names if n not in known]
    if unknown:
        warn_once(variable, raw, f"propagator(s) {', '.join(unknown)} not installed; ignored")
    chosen = tuple(n for n in names if n in known)
    if not chosen:
        raise ConfigError(variable, raw, "no installed propagator")
    return chosen


def _one_of(allowed: tuple[str, ...]) -> Callable[[str, str], str]:
    def parse(variable: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ConfigError(variable, raw, f"expected one of {', '.join(allowed)}")
        return value

    return parse


def unicode_problem(text: str) -> str | None:
    """Why ``text`` cannot be exported (every export path encodes UTF-8), or None: a lone
    surrogate, e.g. a byte that was not UTF-8 in the environment (``os.environ`` keeps it
    as a surrogate escape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"not valid Unicode text: a byte that is not UTF-8, or a lone surrogate, at character {error.start + 1}"
    return None


def _key_values(variable: str, raw: str, *, secret: bool = False) -> Mapping[str, str]:
    """The W3C-baggage-like ``key=value,key2=value2`` list of OTEL_RESOURCE_ATTRIBUTES
    and OTEL_EXPORTER_OTLP_HEADERS; values are percent-decoded as UTF-8. An entry that is
    not key=value, or that is not valid Unicode text once decoded, makes the whole value
    invalid (the specification: discard the entire value). With ``secret`` (headers carry
    bearer tokens) an error names the entry's position, never its text."""
    out: dict[str, str] = {}
    for position, item in enumerate(raw.split(","), 1):
        if not item.strip():
            continue
        entry = f"entry {position}" if secret else f"entry {item.strip()!r}"
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(variable, raw, f"{entry} is not key=value", secret=secret)
        try:
            decoded = urllib.parse.unquote(value.strip(), errors="strict")
        except UnicodeDecodeError:
            raise ConfigError(variable, raw, f"{entry}: percent-encoding that is not UTF-8", secret=secret) from None
        problem = unicode_problem(key) or unicode_problem(decoded)
        if problem:
            raise ConfigError(variable, raw, f"{entry} is {problem}", secret=secret)
        out[key.strip()] = decoded
    return MappingProxyType(out)


def _headers(variable: str, raw: str) -> Mapping[str, str]:
    return _key_values(variable, raw, secret=True)


def _url(variable: str, raw: str) -> str:
    value = raw.strip()
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(variable, raw, "expected an http:// or https:// URL")
    return value


def _text(variable: str, raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ConfigError(variable, raw, "must not be empty")
    return value


def _exported_text(variable: str, raw: str) -> str:
    """A value that is exported (``service.name``): not empty, and valid Unicode text."""
    value = _text(variable, raw)
    problem = unicode_problem(value)
    if problem:
        raise ConfigError(variable, raw, problem)
    return value


@dataclass(frozen=True)
class Setting:
    """One row of the settings table: the field, its variables (first set wins), the
    parser, and what the value means. docs/configuration.md's table is this table."""

    field: str
    variables: tuple[str, ...]
    parse: Callable[[str, str], Any]
    default: str
    meaning: str


SETTINGS: tuple[Setting, ...] = (
    Setting("sdk_disabled", ("OTEL_SDK_DISABLED",), _otel_bool, "false",
            "`true` (any case) turns every instrument into a no-op; calls are still checked. Any other value is "
            "false (a warning unless `false`)"),
    Setting("metrics_exporters", ("OTEL_METRICS_EXPORTER",), _choices(METRICS_EXPORTERS), "prometheus",
            "comma list of `prometheus` (pull: /metrics), `otlp` (push), `console`, or `none`; unsupported names "
            "(`logging`, ...) are warned about and ignored"),
    Setting("otlp_protocol", ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
            _one_of(OTLP_PROTOCOLS), "http/protobuf", "`grpc` or `http/protobuf`"),
    Setting("otlp_endpoint", ("OTEL_EXPORTER_OTLP_ENDPOINT",), _url, "",
            "base URL of the Collector; `/v1/metrics` is appended for http/protobuf. "
            "Default `http://localhost:4317` (grpc) or `http://localhost:4318` (http/protobuf)"),
    Setting("otlp_metrics_endpoint", ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",), _url, "",
            "full URL for metrics, used as given; overrides the base URL"),
    Setting("otlp_headers", ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"), _headers, "",
            "`key=value,...` headers sent with every metrics export (values never printed)"),
    Setting("otlp_timeout_ms", ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"),
            _timeout, "10000", "metrics export request timeout, ms; `0`: no limit"),
    Setting("otlp_temporality", ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",),
            _one_of(TEMPORALITY_PREFERENCES), "cumulative",
            "temporality of the `otlp` metrics exporter, as the OpenTelemetry specification defines it: `cumulative`; "
            "`delta` (counters, histograms and asynchronous counters send what changed since the last export, up-down "
            "counters stay cumulative) or `lowmemory` (as `delta`, but asynchronous counters, such as the "
            "dropped-measurements self-metric, stay cumulative). Gauges have none. Any case"),
    Setting("metric_export_interval_ms", ("OTEL_METRIC_EXPORT_INTERVAL",), _positive_int, "60000",
            "push interval of the `otlp` and `console` exporters, ms"),
    Setting("metric_export_timeout_ms", ("OTEL_METRIC_EXPORT_TIMEOUT",), _timeout, "30000",
            "time limit of one push, ms; `0`: no limit"),
    Setting("otlp_histogram_aggregation", ("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",),
            _one_of(HISTOGRAM_AGGREGATIONS), "explicit_bucket_histogram",
            "what the `otlp` exporter sends for histograms, as the OpenTelemetry specification defines it: "
            "`explicit_bucket_histogram` (the catalog's buckets; exponential for metrics with native buckets) or "
            "`base2_exponential_bucket_histogram` (every histogram exponential: as "
            "TRADING_TELEMETRY_NATIVE_HISTOGRAMS=all). Any case"),
    Setting("native_histograms", ("TRADING_TELEMETRY_NATIVE_HISTOGRAMS",), _one_of(NATIVE_MODES), "catalog",
            "which histograms keep native (base-2 exponential) buckets beside the classic ones: `catalog` (those "
            "the catalog marks `native: true`) or `all`; see [Native histograms](native-histograms.md)"),
    Setting("exemplar_filter", ("OTEL_METRICS_EXEMPLAR_FILTER",), _one_of(EXEMPLAR_FILTERS), "trace_based",
            "`trace_based` (latencies recorded inside a sampled span carry it), `always_on`, `always_off`"),
    Setting("traces_exporters", ("OTEL_TRACES_EXPORTER",), _choices(TRACES_EXPORTERS), "none",
            "comma list of `otlp`, `console`, or `none`; `none` makes `traced` a plain call; unsupported names "
            "(`zipkin`, ...) are warned about and ignored"),
    Setting("otlp_traces_protocol", ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
            _one_of(OTLP_PROTOCOLS), "http/protobuf", "protocol for spans"),
    Setting("otlp_traces_endpoint", ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",), _url, "",
            "full URL for spans, used as given; default: the base URL (+ `/v1/traces` for http/protobuf)"),
    Setting("otlp_traces_headers", ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"), _headers,
            "", "`key=value,...` headers sent with every span export (values never printed)"),
    Setting("otlp_traces_timeout_ms", ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"),
            _timeout, "10000", "span export request timeout, ms; `0`: no limit"),
    Setting("propagators", ("OTEL_PROPAGATORS",), _propagators, "tracecontext,baggage",
            "what `inject_trace_context`/`extract_trace_context` carry: `tracecontext`, `baggage`, `none`, and "
            "any other installed propagator (`b3`, ... by its package); unknown names are warned about and ignored"),
    Setting("log_level", ("OTEL_LOG_LEVEL",), _log_level, "info",
            "level of the `trading_telemetry` and `opentelemetry` loggers: `debug`, `info`, `warn`, `error`"),
    Setting("service_name", ("OTEL_SERVICE_NAME",), _exported_text, "",
            "resource `service.name`; default: the plane's name. The `service` label is always the plane. A value "
            "that is not valid UTF-8 text is warned about and ignored"),
    Setting("resource_attributes", ("OTEL_RESOURCE_ATTRIBUTES",), _key_values, "",
            "`key=value,...` resource attributes, e.g. `service.namespace=desk1,deployment.environment=prod`; "
            "values percent-decoded as UTF-8. An entry that is not `key=value` or not valid UTF-8 text makes the "
            "whole value warned about and ignored"),
    Setting("strict", ("TRADING_TELEMETRY_STRICT",), _bool, "false",
            "`true` raises on a bad measurement (tests, development); `false` drops and counts it"),
    Setting("bind_address", ("TRADING_TELEMETRY_BIND_ADDRESS",), _text, "127.0.0.1",
            "address the /metrics and /health servers listen on (`0.0.0.0` in containers)"),
    Setting("cardinality_limit", ("TRADING_TELEMETRY_CARDINALITY_LIMIT",), _positive_int, "2000",
            "most label sets one metric may have; measurements with further label sets are dropped and counted. "
            "It governs every path: the OpenTelemetry SDK's own limit (2,000 from SDK 1.45.2, past which series "
            "merge into one `otel.metric.overflow` point) is lifted on the plane's metrics"),
    Setting("http_max_connections", ("TRADING_TELEMETRY_HTTP_MAX_CONNECTIONS",), _positive_int, "500",
            "most connections the /metrics and /health server holds open at once, capped at half the process's "
            "open-file limit; at the cap a new connection closes the oldest that has not completed a request (else "
            "the answer waiting longest for its client)"),
    Setting("http_idle_timeout_ms", ("TRADING_TELEMETRY_HTTP_IDLE_TIMEOUT",), _positive_int, "10000",
            "a connection with no request or progress for this long is closed, ms; so is one whose client has "
            "not taken its answer within this time"),
    Setting("http_header_timeout_ms", ("TRADING_TELEMETRY_HTTP_HEADER_TIMEOUT",), _positive_int, "5000",
            "a request's headers (and body) must arrive within this long of its first byte, however slowly its "
            "bytes trickle in, or the connection is closed, ms"),
    Setting("shutdown_timeout_ms", ("TRADING_TELEMETRY_SHUTDOWN_TIMEOUT",), _positive_int, "5000",
            "longest `reset()`, SIGTERM on `serve`/`demo`, or interpreter exit waits for the last export "
            "(attempted once) and the servers to stop, ms; an unanswering Collector cannot hold the process longer"),
    Setting("catalog_path", ("TRADING_TELEMETRY_CATALOG",), _text, "",
            "a YAML file of the desk's own metrics and allowed label values, added to the built-in catalog when "
            "the first plane is initialised (see [Extending the catalog](metrics.md#extending-the-catalog))"),
    Setting("asyncio_plane", ("TRADING_TELEMETRY_ASYNCIO_PLANE",), _one_of(PLANES), "",
            "plane whose providers get the asyncio instrumentation (spans and metrics of the coroutines named in "
            "`OTEL_PYTHON_ASYNCIO_COROUTINE_NAMES_TO_TRACE`); unset: off"),
    Setting("multiprocess_dir", ("TRADING_TELEMETRY_MULTIPROCESS_DIR",), _text, "",
            "a directory (created if missing, emptied before the processes start) where every process writes "
            "what it records, so that /metrics, served by any of them, sums counters and histograms across all "
            "the processes, live and ended: forked workers, multiprocessing pools, gunicorn (see [Several "
            "processes](processes.md)); unset: each process counts on its own"),
    Setting("multiprocess_gauge", ("TRADING_TELEMETRY_MULTIPROCESS_GAUGE",), _one_of(GAUGE_MODES), "mostrecent",
            "with a multiprocess directory, a gauge's value on /metrics: `mostrecent` (the last value any process "
            "set, as one process would show), `livesum`, `livemax`, `livemin` (over running processes), `liveall` "
            "(one series per running process, with a `pid` label)"),
    Setting("multiprocess_push", ("TRADING_TELEMETRY_MULTIPROCESS_PUSH",), _one_of(PUSH_MODES), "own",
            "with a multiprocess directory, what this process pushes by OTLP: `own` (what it records, as an "
            "instance of its own: the Collector sums the processes) or `sum` (every process's sum, as the "
            "plane's one instance: run it in a process of its own, such as `trading-telemetry serve`, and the "
            "trading process neither renders nor pushes; see [Several processes](processes.md))"),
)  # fmt: skip


@dataclass(frozen=True)
class TelemetryConfig:
    """Everything the SDK is configured by. Build it with :meth:`from_env`, or directly
    in tests (``TelemetryConfig(strict=True, metrics_exporters=())``)."""

    sdk_disabled: bool = False
    metrics_exporters: tuple[str, ...] = ("prometheus",)
    otlp_protocol: str = "http/protobuf"
    otlp_endpoint: str = ""
    otlp_metrics_endpoint: str = ""
    otlp_headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    otlp_timeout_ms: int = 10000
    otlp_temporality: str = "cumulative"
    metric_export_interval_ms: int = 60000
    metric_export_timeout_ms: int = 30000
    otlp_histogram_aggregation: str = "explicit_bucket_histogram"
    native_histograms: str = "catalog"
    exemplar_filter: str = "trace_based"
    traces_exporters: tuple[str, ...] = ()
    otlp_traces_protocol: str = "http/protobuf"
    otlp_traces_endpoint: str = ""
    otlp_traces_headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    otlp_traces_timeout_ms: int = 10000
    propagators: tuple[str, ...] = ("tracecontext", "baggage")
    log_level: str = "info"
    service_name: str = ""
    resource_attributes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    strict: bool = False
    bind_address: str = "127.0.0.1"
    cardinality_limit: int = 2000
    http_max_connections: int = 500
    http_idle_timeout_ms: int = 10000
    http_header_timeout_ms: int = 5000
    shutdown_timeout_ms: int = 5000
    catalog_path: str = ""
    asyncio_plane: str = ""
    multiprocess_dir: str = ""
    multiprocess_gauge: str = "mostrecent"
    multiprocess_push: str = "own"

    @property
    def all_native(self) -> bool:
        """Whether every histogram keeps native buckets (and pushes exponential ones)."""
        return self.native_histograms == "all" or self.otlp_histogram_aggregation.startswith("base2")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TelemetryConfig:
        """Read every setting from ``environ`` (default: ``os.environ``).

        Raises :class:`~trading_telemetry.errors.ConfigError` naming the first invalid
        variable and its value.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for s in SETTINGS:
            for variable in s.variables:
                raw = env.get(variable)
                if raw is None or not raw.strip():
                    continue
                try:
                    values[s.field] = s.parse(variable, raw)
                except ConfigError as error:
                    if not variable.startswith("OTEL_"):
                        raise
                    # The specification: an invalid value is warned about and treated as unset.
                    warn_once(variable, raw, f"is invalid ({error.problem}); ignored", secret=s.parse is _headers)
                    continue
                break
        config = cls(**values)
        if "log_level" in values:  # OTEL_LOG_LEVEL was set (and valid)
            level = LOG_LEVELS[config.log_level]
            for name in ("trading_telemetry", "opentelemetry"):
                logging.getLogger(name).setLevel(level)
        return config

    @classmethod
    def describe(cls, environ: Mapping[str, str] | None = None) -> list[tuple[str, str, str]]:
        """(variable, effective value, where it came from) for every setting, values of
        headers redacted: what ``trading-telemetry config`` prints. Raises like
        :meth:`from_env` on an invalid value."""
        env = os.environ if environ is None else environ
        config = cls.from_env(env)
        rows = []
        for s in SETTINGS:
            given = next((v for v in s.variables if (env.get(v) or "").strip()), None)
            value = getattr(config, s.field)
            if s.parse is _headers:
                shown = ",".join(f"{k}=<redacted>" for k in value) or "(none)"
            elif isinstance(value, tuple):
                shown = ",".join(value) or "none"
            elif isinstance(value, Mapping):
                shown = ",".join(f"{k}={v}" for k, v in value.items()) or "(none)"
            else:
                shown = str(value).lower() if isinstance(value, bool) else (str(value) or "(unset)")
            rows.append((" / ".join(s.variables), shown, given or "default"))
        return rows

    @property
    def otlp_metrics_url(self) -> str:
        """Where OTLP metrics go, by the OTel specification's endpoint rules."""
        return self._otlp_url(self.otlp_metrics_endpoint, self.otlp_protocol, "metrics")

    @property
    def otlp_traces_url(self) -> str:
        """Where OTLP spans go, by the same rules."""
        return self._otlp_url(self.otlp_traces_endpoint, self.otlp_traces_protocol, "traces")

    def _otlp_url(self, specific: str, protocol: str, signal: str) -> str:
        if specific:
            return specific
        if protocol == "grpc":
            return self.otlp_endpoint or "http://localhost:4317"
        return (self.otlp_endpoint or "http://localhost:4318").rstrip("/") + f"/v1/{signal}"
