"""The catalog file (TRADING_TELEMETRY_CATALOG) is read within bounds: size, YAML nodes,
nesting, no anchors or aliases, UTF-8; whatever is wrong with it is a CatalogError that
names the file, never another exception; both YAML parsers (libyaml's and PyYAML's own)
keep the bounds."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest

from trading_telemetry import CatalogError, TelemetryConfig, init_metrics_exporter, reset
from trading_telemetry import _catalog_file as cf
from trading_telemetry import catalog as cat

LOADERS = {"libyaml": cf.LOADER, "python": cf.loader(cf._PythonParser)}


@pytest.fixture(params=sorted(LOADERS))
def yaml_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test of this module runs with libyaml's parser and with PyYAML's own."""
    monkeypatch.setattr(cf, "LOADER", LOADERS[request.param])
    return str(request.param)


def refused(tmp_path: Path, content: str | bytes) -> CatalogError:
    path = tmp_path / "desk.yaml"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(CatalogError) as caught:
        cat.load_file(str(path))
    assert str(path) in str(caught.value)
    assert caught.value.source == str(path)
    assert len(str(caught.value)) < len(str(path)) + 700
    assert cat.effective_catalog() == cat.CATALOG, "nothing is added when the file is refused"
    return caught.value


def billion_laughs(levels: int = 9) -> str:
    """Nine levels of nine aliases: 9^9 strings once expanded; the key an alias of the last level."""
    names = "abcdefghi"[:levels]
    anchors = ["&a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    anchors += [f"&{n} [" + ", ".join([f"*{p}"] * 9) + "]" for p, n in itertools.pairwise(names)]
    return "metrics:\n  - description: [" + ", ".join(anchors) + f"]\n    key: *{names[-1]}\n"


def entries(count: int) -> str:
    return "metrics:\n" + "".join(
        f"  - {{plane: data_plane, key: k{i}, name: data_k{i}, kind: gauge, description: Depth {i}}}\n"
        for i in range(count)
    )


def test_aliases_are_refused_before_any_is_expanded(tmp_path: Path, yaml_parser: str) -> None:
    """The billion laughs, and one harmless anchor, are refused at the first anchor, naming its line."""
    error = refused(tmp_path, billion_laughs())
    assert "line 2: YAML anchors and aliases are not allowed" in str(error)
    assert "anchors and aliases" in str(refused(tmp_path, "label_values:\n  a: &x [1]\n"))
    assert "anchors and aliases" in str(refused(tmp_path, "label_values:\n  b: *x\n"))


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, yaml_parser: str
) -> None:
    """One byte over MAX_FILE_BYTES is refused on its size; the YAML parser never runs."""
    monkeypatch.setattr(cf, "parse", lambda *_: pytest.fail("parsed"))
    error = refused(tmp_path, "# " + "x" * (cf.MAX_FILE_BYTES - 3) + "\n" + "a")
    assert f"{cf.MAX_FILE_BYTES + 1} bytes; a catalog file has at most {cf.MAX_FILE_BYTES}" in str(error)


def test_more_nodes_than_the_limit_are_refused_as_they_are_composed(tmp_path: Path, yaml_parser: str) -> None:
    """Past MAX_NODES YAML nodes the file is refused, whether as entries or as one long list."""
    assert f"more than {cf.MAX_NODES} YAML nodes" in str(refused(tmp_path, "metrics:\n" + "- {}\n" * 100_000))
    assert "YAML nodes" in str(refused(tmp_path, "label_values: {x: [" + "1," * cf.MAX_NODES + "]}\n"))


def test_the_node_count_stops_the_composer(yaml_parser: str) -> None:
    """The composer builds no node past the limit: it is the bound on time and memory."""
    parser = cf.LOADER("[" + "1, " * 100_000 + "]")
    with pytest.raises(cf._Refused):
        parser.get_single_data()
    assert parser.nodes == cf.MAX_NODES + 1
    parser.dispose()


def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path: Path, yaml_parser: str) -> None:
    """100,000 nested lists or mappings: refused at level MAX_DEPTH + 1."""
    assert f"nested deeper than {cf.MAX_DEPTH} levels" in str(refused(tmp_path, "[" * 100_000 + "]" * 100_000))
    assert "nested deeper" in str(refused(tmp_path, "{a: " * 50_000 + "1" + "}" * 50_000))


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("metrics: [1".encode("utf-16"), "not UTF-8 text (byte 0"),
        (b"metrics: []\n# caf\xe9\n", "not UTF-8 text (byte 17 is b'\\xe9')"),
        (b"label_values: {x: [\x00]}", "not a valid YAML file"),
        ("metrics: [}", "not a valid YAML file"),
        ("metrics: []\n---\nmetrics: []\n", "not a valid YAML file"),
        ("metrics: !!python/object:os.system [x]", "not a valid YAML file"),
        ("metrics:\n  - {min: " + "9" * 5000 + "}\n", "not a valid YAML file"),
        ("metrics: [{key: !!timestamp 2024-99-99}]", "not a valid YAML file"),
        ("{[1, 2]: x}", "not a valid YAML file"),
    ],
    ids=["utf-16", "latin-1", "nul", "syntax", "two-documents", "python-tag", "5000-digits", "bad-date", "list-key"],
)
def test_text_that_is_not_a_yaml_document_in_utf8_is_refused(
    tmp_path: Path, content: str | bytes, words: str, yaml_parser: str
) -> None:
    """Undecodable bytes, YAML errors, unsafe tags, numbers Python will not convert: CatalogError, never
    UnicodeDecodeError, ValueError or a YAML exception."""
    assert words in str(refused(tmp_path, content))


def test_a_path_that_is_not_a_readable_file_is_refused(tmp_path: Path) -> None:
    """A missing file or a directory is a CatalogError naming the path."""
    for path in (tmp_path / "missing.yaml", tmp_path):
        with pytest.raises(CatalogError, match=str(path)):
            cat.load_file(str(path))


@pytest.mark.parametrize(
    ("document", "field", "words"),
    [
        ({"metrics": {"a": 1}}, "metrics", "expected a list"),
        ({"metrics": [5]}, "metrics entry 1", "expected a mapping"),
        ({"metrics": [{"key": ["a"] * 10_000}]}, "metrics entry 1", "characters)"),
        ({"label_values": {"x": None}}, "label_values: x", "expected a list"),
        ({"label_values": {"x": [True]}}, "label_values: x", "True"),
        ({"label_values": ["x"]}, "label_values", "mapping"),
        ({"colours": []}, "", "expected a mapping with 'metrics'"),
    ],
)
def test_structures_of_the_wrong_shape_are_refused(
    tmp_path: Path, document: dict[str, Any], field: str, words: str
) -> None:
    """Each part of the file of the wrong type is a CatalogError naming it; long values are cut short."""
    error = refused(tmp_path, json.dumps(document))
    assert field in str(error)
    assert words in str(error)


ENTRY = {"plane": "data_plane", "key": "queue_depth", "name": "data_queue_depth", "kind": "gauge",
         "description": "Queue depth"}  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"labels": [True]}, "labels", "True"),
        ({"labels": ["le"]}, "labels", "reserved"),
        ({"labels": "desk"}, "labels", "expected a list"),
        ({"description": ["a"]}, "description", "printable"),
        ({"description": 5}, "description", "printable"),
        ({"key": 1}, "key", "lowercase"),
        ({"name": "data__queue_depth"}, "name", "single underscores"),
        ({"name": "data_queue_depth_count"}, "name", "_count"),
        ({"name": "target_info"}, "name", "_info"),
        ({"name": "trading_telemetry_uptime_seconds"}, "name", "self-metrics"),
        ({"min": ".nan"}, "min", "finite"),
        ({"max": [1]}, "max", "finite"),
        ({"kind": "counter", "name": "data_queue_depth_total", "max": 1}, "max", "no range"),
        ({"kind": "histogram", "buckets": [1, "2"]}, "buckets", "finite"),
        ({"kind": "histogram"}, "buckets", "missing: a histogram needs its bucket boundaries; give buckets"),
        ({"buckets": [1]}, "buckets", "a gauge has no buckets (only a histogram has): remove them"),
        ({"unit": "{a}/s"}, "unit", "change the exposed name"),
        ({"integral": "yes"}, "integral", "true or false"),
        ({"native": "yes"}, "native", "true or false"),
        ({"native": True}, "native", "only a histogram has native buckets"),
        ({"plane": None}, "plane", "data_plane"),
    ],
)
def test_fields_are_checked_as_extend_checks_them(
    tmp_path: Path, fields: dict[str, Any], field: str, words: str
) -> None:
    """A file's entry is refused for what extend() refuses, naming the file, the entry, the field (the file's
    name for it: min, max) and the value."""
    error = refused(tmp_path, json.dumps({"metrics": [{**ENTRY, **fields}]}))
    assert error.entry is not None
    assert error.entry.startswith("metrics entry 1")
    assert error.field == field, str(error)
    assert words in str(error), str(error)


def test_a_histogram_without_buckets_says_what_is_missing_and_how_to_give_it(tmp_path: Path) -> None:
    """The whole message: file, entry, field, what is missing, and an example of the fix."""
    fields = {"kind": "histogram", "name": "data_queue_depth", "min": 0}
    error = refused(tmp_path, json.dumps({"metrics": [{**ENTRY, **fields}]}))
    assert str(error) == (
        f"{tmp_path / 'desk.yaml'}: metrics entry 1 ('queue_depth'): buckets: missing: a histogram needs its bucket "
        "boundaries; give buckets, one or more numbers in increasing order, e.g. [0.001, 0.01, 0.1, 1] for seconds"
    )


def test_a_catalog_file_loaded_after_the_first_plane_says_when_to_load_it(tmp_path: Path) -> None:
    """Too late to load: the message says to load it before the first plane, by TRADING_TELEMETRY_CATALOG."""
    path = tmp_path / "desk.yaml"
    path.write_text(json.dumps({"metrics": [ENTRY]}))
    init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=()))
    with pytest.raises(CatalogError) as caught:
        cat.load_file(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: too late: a plane is already initialised")
    assert "before the first init_metrics_exporter()" in message
    assert "TRADING_TELEMETRY_CATALOG" in message
    reset()
    cat.load_file(str(path))
    assert cat.lookup("queue_depth") is not None


def test_more_entries_than_the_limit_are_refused(tmp_path: Path) -> None:
    """Past MAX_EXTENSION_METRICS entries the file is refused before any entry is checked."""
    error = refused(tmp_path, entries(cat.MAX_EXTENSION_METRICS + 1))
    assert f"{cat.MAX_EXTENSION_METRICS + 1} entries; at most {cat.MAX_EXTENSION_METRICS}" in str(error)


def test_a_file_at_the_limits_is_accepted(tmp_path: Path, yaml_parser: str) -> None:
    """MAX_EXTENSION_METRICS entries in a file under the size limit are loaded, and the planes start."""
    path = tmp_path / "desk.yaml"
    path.write_text(entries(cat.MAX_EXTENSION_METRICS))
    assert os.path.getsize(path) < cf.MAX_FILE_BYTES
    cat.load_file(str(path))
    assert len(cat.effective_catalog()) == len(cat.CATALOG) + cat.MAX_EXTENSION_METRICS
    m = init_metrics_exporter("data_plane", config=TelemetryConfig(strict=True, metrics_exporters=("prometheus",)))
    m.set("k999", 3)
    assert m.exposition is not None
    assert 'data_k999{service="data_plane"} 3.0' in m.exposition.render().decode()
    reset()
    assert cat.effective_catalog() == cat.CATALOG, "reset() forgets the file"
    cat.load_file(str(path))
    with pytest.raises(CatalogError, match=f"more than {cat.MAX_EXTENSION_METRICS} metrics"):
        cat.extend([cat.MetricSpec(cat.Plane.DATA, "one_more", "data_one_more", cat.Kind.GAUGE, "", "One more")])
