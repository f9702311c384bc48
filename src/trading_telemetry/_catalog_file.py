"""A desk's catalog file (``TRADING_TELEMETRY_CATALOG``), read within bounds.

The file is checked before it is parsed (a regular file of at most MAX_FILE_BYTES, UTF-8)
and while it is: PyYAML's composer is given a hook that refuses anchors and aliases (a
few hundred bytes of nested aliases expand to gigabytes), more than MAX_NODES nodes and
nesting deeper than MAX_DEPTH, before any node past the limit is built. Scanning and
parsing are libyaml's when PyYAML has it, so refusing a hostile file takes a fraction of
a second (``benchmarks/bench_catalog_file.py`` measures it).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import Any

from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, Event, NodeEvent
from yaml.nodes import Node
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from trading_telemetry._naming import METRIC_NAME
from trading_telemetry._safe import safe_repr, safe_str
from trading_telemetry._sessions import SESSION_OPEN, SYMBOL_CALENDAR, Sessions, parse_sessions
from trading_telemetry.catalog import MAX_EXTENSION_METRICS, MetricSpec, entry_label, refusal
from trading_telemetry.errors import CatalogError

__all__ = [
    "LOADER",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "loader",
    "parse",
    "read_catalog_file",
    "read_sessions",
    "read_text",
]

MAX_FILE_BYTES = 1 << 20
"""Largest catalog file, in bytes (1 MiB: some thousands of metrics)."""
MAX_NODES = 20_000
"""Most YAML nodes (each scalar, list and mapping) in a catalog file."""
MAX_DEPTH = 10
"""Deepest nesting of lists and mappings (the schema needs four levels)."""

_FIELDS = (
    "plane", "key", "name", "kind", "unit", "description", "labels", "buckets", "min", "max", "integral", "native",
    "objective",
)  # fmt: skip
_SECTIONS = ("metrics", "label_values", "calendars", "symbols")
_REQUIRED = ("plane", "key", "name", "kind", "description")


class _Refused(Exception):
    """A bound the file goes past."""


class _PythonParser(Reader, Scanner, Parser):
    """PyYAML's own scanner and parser, where PyYAML was built without libyaml."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)


try:
    from yaml._yaml import CParser as _FastParser
except ImportError:  # pragma: no cover - PyYAML without libyaml
    _FastParser = _PythonParser  # type: ignore[misc,assignment]


class _BoundedComposer(Composer):
    """PyYAML's composer, counting nodes and depth, refusing anchors and aliases."""

    nodes = 0
    depth = 0
    peek_event: Callable[[], Event]  # the parser's

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        if isinstance(event, AliasEvent) or (isinstance(event, NodeEvent) and event.anchor is not None):
            raise _Refused(f"line {line}: YAML anchors and aliases are not allowed in a catalog file")
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Refused(f"line {line}: more than {MAX_NODES} YAML nodes")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _Refused(f"line {line}: nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def loader(parser: type[Any]) -> type[Any]:
    """A safe loader made of ``parser`` (libyaml's or PyYAML's) and the bounded composer."""

    class Loader(_BoundedComposer, parser, SafeConstructor, Resolver):  # type: ignore[misc]
        def __init__(self, text: str) -> None:
            parser.__init__(self, text)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    return Loader


LOADER = loader(_FastParser)


def parse(path: str, text: str, loader_type: type[Any] | None = None) -> object:
    """The YAML document in ``text`` (read with ``loader_type``, by default LOADER), or
    CatalogError naming ``path``."""
    parser = None
    try:
        parser = (loader_type or LOADER)(text)  # PyYAML's reader checks the characters here
        return parser.get_single_data()
    except _Refused as error:
        raise CatalogError(f"{path}: {error}", source=path) from None
    except Exception as error:  # noqa: BLE001 - anything the YAML library raises on this text refuses the file
        message = safe_str(error, 500)
        if "exceeded maximum nesting depth" in message:  # newer libyaml's own limit (1,000), met first
            line = getattr(getattr(error, "problem_mark", None), "line", 0) + 1
            raise CatalogError(f"{path}: line {line}: nested deeper than {MAX_DEPTH} levels", source=path) from None
        raise CatalogError(f"{path}: not a valid YAML file: {message}", source=path) from None
    finally:
        if parser is not None:
            parser.dispose()


def read_text(path: str) -> str:
    """The file's text: a regular file of at most MAX_FILE_BYTES, in UTF-8; else CatalogError."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise CatalogError(f"{path}: not a regular file", source=path)
        if info.st_size > MAX_FILE_BYTES:
            raise CatalogError(
                f"{path}: {info.st_size} bytes; a catalog file has at most {MAX_FILE_BYTES}", source=path
            )
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)  # the file may have grown since
    except OSError as error:
        raise CatalogError(f"{path}: cannot read the catalog file: {safe_str(error)}", source=path) from None
    if len(data) > MAX_FILE_BYTES:
        raise CatalogError(f"{path}: more than {MAX_FILE_BYTES} bytes", source=path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CatalogError(
            f"{path}: not UTF-8 text (byte {error.start} is {data[error.start : error.start + 1]!r}); "
            "save the file as UTF-8",
            source=path,
        ) from None


def read_catalog_file(path: str) -> tuple[list[MetricSpec], object]:
    """The file's metrics (as MetricSpecs, for ``extend`` to check) and label values."""
    document = _document(path)
    entries = document.get("metrics") or []
    if type(entries) is not list:
        raise refusal(path, None, "metrics", "expected a list", entries)
    if len(entries) > MAX_EXTENSION_METRICS:
        raise refusal(path, None, "metrics", f"{len(entries)} entries; at most {MAX_EXTENSION_METRICS}")
    specs = [_entry(path, number, entry) for number, entry in enumerate(entries, 1)]
    if _sessions_of(path, document) is not None:  # the data plane exports the sessions' state
        specs += [SESSION_OPEN, SYMBOL_CALENDAR]
    return specs, document.get("label_values") or {}


def read_sessions(path: str) -> Sessions | None:
    """The file's trading calendars and symbols' calendars, None if it declares none."""
    return _sessions_of(path, _document(path))


def _document(path: str) -> dict[str, Any]:
    """The file's top-level mapping, its sections checked to be known."""
    document = parse(path, read_text(path))
    if document is None:
        document = {}
    if type(document) is not dict or any(k not in _SECTIONS for k in document):
        raise refusal(
            path,
            None,
            None,
            "expected a mapping with 'metrics', 'label_values', 'calendars' and/or 'symbols'",
            document,
        )
    return document


def _sessions_of(path: str, document: dict[str, Any]) -> Sessions | None:
    if "calendars" not in document and "symbols" not in document:
        return None
    return parse_sessions(path, document.get("calendars"), document.get("symbols"))


def _entry(path: str, number: int, entry: object) -> MetricSpec:
    """One ``metrics`` entry as a MetricSpec for ``extend`` to check; the fields whose
    meaning differs from MetricSpec's (``name`` is the exposed name) checked here."""
    if type(entry) is not dict:
        raise refusal(path, entry_label(number), None, "expected a mapping", entry)
    where = entry_label(number, entry.get("key"))

    def bad(field_name: str, problem: str, *value: object) -> CatalogError:
        return refusal(path, where, field_name, problem, *value)

    unknown = [f for f in entry if f not in _FIELDS]
    if unknown:
        raise bad(safe_repr(unknown[0], 40), f"unknown field; expected some of {', '.join(_FIELDS)}")
    missing = [f for f in _REQUIRED if f not in entry]
    if missing:
        raise bad(missing[0], "required")
    name, kind, unit = entry["name"], entry["kind"], entry.get("unit") or ""
    if type(name) is not str or not METRIC_NAME.fullmatch(name):
        raise bad(
            "name", "a name is lowercase letters and digits in words joined by single underscores, starting with "
            "a letter", name,
        )  # fmt: skip
    if kind == "counter":
        if not name.endswith("_total"):
            raise bad("name", "a counter's exposed name ends in _total", name)
        if "min" in entry or "max" in entry:
            raise bad("min" if "min" in entry else "max", "a counter has no range: it only goes up")
        name = name.removesuffix("_total")
    if unit == "s" and not name.endswith("_seconds"):
        raise bad("name", "a metric in seconds ends in _seconds on both export paths", entry["name"])
    return MetricSpec(
        entry["plane"], entry["key"], name, kind, unit, entry["description"], entry.get("labels") or (),
        entry.get("buckets"), min_value=0.0 if kind == "counter" else entry.get("min"), max_value=entry.get("max"),
        integral=entry.get("integral", False), native=entry.get("native", False),
        objective=entry.get("objective"),
    )  # fmt: skip
