"""What the two export paths do to a metric's name and labels, and the names already taken.

The catalog refuses a declaration unless its Prometheus name is the same on ``/metrics``
(rendered from :attr:`MetricSpec.prometheus_name <trading_telemetry.catalog.MetricSpec>`,
checked against the OTel Prometheus exporter), through the Collector's ``prometheus``
exporter (the otlptranslator's underscore-escaping-with-suffixes strategy) and in
Prometheus 3, unless no series it exposes can be mistaken for another one, and unless
``promtool check metrics`` accepts it (its linter's rules, ``lint_problem``). The
functions here model the two translators on the units the catalog allows (none, ``s``,
or a ``{...}`` annotation, which neither appends); the integration test
``tests/integration/test_catalog_names.py`` holds the Collector model to the real build.
"""

from __future__ import annotations

import re

__all__ = [
    "LABEL_NAME",
    "MAX_NAME_LENGTH",
    "METRIC_NAME",
    "RESERVED_LABELS",
    "RESERVED_NAMES",
    "RESERVED_SUFFIXES",
    "collector_name",
    "lint_problem",
    "python_exporter_name",
    "reserved_label",
    "reserved_name",
    "samples",
]

MAX_NAME_LENGTH = 255
"""Longest key, name or label name: the OTel SDK refuses instrument names past 255 characters."""

# Lowercase words of letters and digits joined by single underscores: what every
# translator keeps as it is (they collapse `__`, trim or prefix a leading `_`, and the
# catalog keeps `:` for recording rules and uppercase out of metric names).
METRIC_NAME = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
# Prometheus label names, less what the Collector rewrites (`__` collapsed, a leading `_`
# or digit prefixed with `key`) and what promtool's linter calls camelCase.
LABEL_NAME = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")

RESERVED_SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created", "_info", "_gcount", "_gsum")
"""Suffixes that Prometheus and OpenMetrics parsers read as a sample of another family."""

RESERVED_NAMES = {
    "target": "target_info (the Resource, on /metrics and through the Collector)",
    "target_info": "target_info (the Resource, on /metrics and through the Collector)",
    "otel_scope": "otel_scope_info (the Collector's instrumentation scope series)",
    "otel_scope_info": "otel_scope_info (the Collector's instrumentation scope series)",
    "up": "Prometheus's own per-target series",
}
"""Exposed names the SDK, the Collector or Prometheus already use, and who uses them."""

_RESERVED_PREFIXES = {
    "trading_telemetry": "the package's self-metrics",
    "scrape": "Prometheus's own per-scrape series",
}

RESERVED_LABELS = {
    "service": "set by the SDK to the plane's name",
    "le": "a histogram bucket's bound",
    "quantile": "a summary's quantile",
    "job": "set by Prometheus (and by the Collector from the Resource)",
    "instance": "set by Prometheus (and by the Collector from the Resource)",
}
_RESERVED_LABEL_PREFIX = "otel_scope_"  # the Collector's instrumentation scope labels

_INVALID_METRIC_CHARS = re.compile(r"[^a-zA-Z0-9:]+")


def reserved_name(name: str) -> str | None:
    """Who already uses the exposed ``name`` (or its prefix), or None."""
    found = RESERVED_NAMES.get(name)
    if found is not None:
        return found
    for prefix, owner in _RESERVED_PREFIXES.items():
        if name == prefix or name.startswith(prefix + "_"):
            return f"{owner} ({prefix}_*)"
    return None


def reserved_label(name: str) -> str | None:
    """Why the label ``name`` is not a desk's to use, or None."""
    if name.startswith(_RESERVED_LABEL_PREFIX):
        return "the Collector's instrumentation scope labels (otel_scope_*)"
    return RESERVED_LABELS.get(name)


def collector_name(name: str, unit_suffix: str, counter: bool) -> str:
    """The name the Collector's ``prometheus`` exporter gives an OTLP metric: the name split
    into tokens at every run of characters outside ``[a-zA-Z0-9:]`` (so ``__`` and edge
    ``_`` vanish), the unit's token appended unless the name has it anywhere, a counter's
    every ``total`` token removed and one appended, a leading digit prefixed with ``_``."""
    tokens = [token for token in _INVALID_METRIC_CHARS.split(name) if token]
    if unit_suffix and unit_suffix not in tokens:
        tokens.append(unit_suffix)
    if counter:
        tokens = [token for token in tokens if token != "total"] + ["total"]
    joined = "_".join(tokens)
    return "_" + joined if joined[:1].isdigit() else joined


def python_exporter_name(name: str, unit_suffix: str, counter: bool) -> str:
    """The name the OTel Prometheus exporter (with prometheus_client) gives the metric:
    runs of characters outside ``[a-zA-Z0-9:]`` become one ``_``, a leading digit becomes
    ``_``, the unit is appended unless the name ends with it, a counter gets ``_total``."""
    if name[:1].isdigit():
        name = "_" + name[1:]
    name = _INVALID_METRIC_CHARS.sub("_", name)
    if counter:
        name = name.removesuffix("_total")
    if unit_suffix and not name.endswith("_" + unit_suffix):
        name += "_" + unit_suffix
    return name + "_total" if counter else name


# promtool's linter (client_golang's promlint): units it wants in base units, their
# prefixes, the abbreviations it refuses, the type names it refuses in a name.
_LINT_UNITS = {
    **{u: u for u in ("amperes", "bytes", "celsius", "grams", "joules", "kelvin", "meters", "metres", "seconds",
                      "volts")},
    "minutes": "seconds", "hours": "seconds", "days": "seconds", "weeks": "seconds", "kelvins": "kelvin",
    "fahrenheit": "celsius", "rankine": "celsius", "inches": "meters", "yards": "meters", "miles": "meters",
    "bits": "bytes", "calories": "joules", "pounds": "grams", "ounces": "grams",
}  # fmt: skip
_LINT_PREFIXES = ("pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo", "kibi", "mega", "mibi",
                  "giga", "gibi", "tera", "tebi", "peta", "pebi")  # fmt: skip
_LINT_ABBREVIATIONS = ("s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d")
_LINT_TYPES = ("counter", "gauge", "histogram", "summary", "gauge_histogram")


def _lint_unit(token: str) -> tuple[str, str] | None:
    """(the unit, its base unit) if promtool's linter reads ``token`` as a unit."""
    if token in _LINT_UNITS:
        return token, _LINT_UNITS[token]
    for prefix in _LINT_PREFIXES:
        if token.startswith(prefix) and token[len(prefix) :] in _LINT_UNITS:
            return token, _LINT_UNITS[token[len(prefix) :]]
    return None


def lint_problem(name: str, kind: str) -> str | None:
    """What ``promtool check metrics`` says of the family ``name`` (as the text format
    writes it: a counter's with ``_total``) beyond the rules above, or None: a unit not in
    its base unit, a unit abbreviation, a type name, a timestamp suffix on a non-gauge."""
    found = next((u for u in map(_lint_unit, name.split("_")) if u is not None), None)
    if found is not None and found[0] != found[1]:
        return f"promtool wants the base unit {found[1]!r}, not {found[0]!r}"
    for words, problem in ((_LINT_ABBREVIATIONS, "an abbreviated unit"), (_LINT_TYPES, "a type name")):
        for word in words:
            if f"_{word}_" in name or name.endswith(f"_{word}"):
                return f"promtool refuses {problem} ({word!r}) in a name"
    if kind != "gauge" and name.endswith("_timestamp_seconds"):
        return "promtool keeps the _timestamp_seconds suffix to gauges"
    return None


def samples(family: str, kind: str) -> tuple[str, ...]:
    """The family's name and every sample name it may expose, in the text format or
    OpenMetrics (``_created`` included, though the planes do not write it)."""
    if kind == "counter":
        return family, family + "_total", family + "_created"
    if kind == "histogram":
        return family, family + "_bucket", family + "_count", family + "_sum", family + "_created"
    return (family,)
