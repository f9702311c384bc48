"""The OpenTelemetry SDK's private API that ``_aggregation`` (the one module using it)
relies on: each symbol checked by name, so an SDK version that renames one fails here
with the symbol's name instead of silently exporting nothing."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    LastValueAggregation,
    SumAggregation,
)

SRC = Path(__file__).resolve().parents[2] / "src" / "trading_telemetry"
PRIVATE_MODULE_ATTRIBUTES = {
    "opentelemetry.sdk.metrics._internal.aggregation": (
        "_Aggregation", "_SumAggregation", "_LastValueAggregation", "_ExplicitBucketHistogramAggregation",
        "_ExponentialBucketHistogramAggregation",
    ),
    "opentelemetry.sdk.metrics._internal.measurement": ("Measurement",),
    # Test oracles only (tests/unit/test_native.py): the SDK's own index of a value at a scale.
    "opentelemetry.sdk.metrics._internal.exponential_histogram.mapping.exponent_mapping": ("ExponentMapping",),
    "opentelemetry.sdk.metrics._internal.exponential_histogram.mapping.logarithm_mapping": ("LogarithmMapping",),
}  # fmt: skip
TEST_ORACLE_MODULES = frozenset(m for m in PRIVATE_MODULE_ATTRIBUTES if ".exponential_histogram." in m)
"""Private SDK modules the tests may import (as oracles), each checked above by name; the package never."""


@pytest.mark.parametrize(("module", "name"), [(m, n) for m, names in PRIVATE_MODULE_ATTRIBUTES.items() for n in names])
def test_the_sdk_has_each_private_class_we_subclass(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name), f"opentelemetry-sdk lacks {module}.{name}"


def test_the_sdk_objects_have_each_private_attribute_we_use() -> None:
    from opentelemetry.sdk.metrics._internal.aggregation import (
        _ExplicitBucketHistogramAggregation,
        _ExponentialBucketHistogramAggregation,
        _SumAggregation,
    )
    from opentelemetry.sdk.metrics._internal.measurement import Measurement

    for view in (SumAggregation, LastValueAggregation, ExplicitBucketHistogramAggregation,
                 ExponentialBucketHistogramAggregation):  # fmt: skip
        assert hasattr(view, "_create_aggregation"), f"opentelemetry-sdk: {view.__name__}._create_aggregation is gone"
    assert hasattr(ExplicitBucketHistogramAggregation((1.0,)), "_boundaries"), "view ._boundaries is gone"
    counter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("t").create_counter("c")
    consumer = getattr(counter, "_measurement_consumer", None)
    assert consumer is not None, "opentelemetry-sdk: Counter._measurement_consumer is gone"
    assert hasattr(consumer, "consume_measurement"), "opentelemetry-sdk: consume_measurement is gone"
    # keep_across_delta reaches each reader's matches of an instrument, and clears their reset flag (SDK 1.45.2+).
    counter.add(1, {"a": "b"})
    (storage,) = getattr(consumer, "_reader_storages", {}).values()
    matches = getattr(storage, "_instrument_view_instrument_matches", {}).get(counter)
    assert matches, "opentelemetry-sdk: _reader_storages[...]._instrument_view_instrument_matches is gone"
    # forget_series drops entries of each match's table, under its lock.
    for attribute in ("_attributes_aggregation", "_lock"):
        assert all(hasattr(m, attribute) for m in matches), f"_ViewInstrumentMatch.{attribute} is gone"
    from opentelemetry.sdk.metrics._internal._view_instrument_match import _ViewInstrumentMatch

    if "reset_on_collect" in inspect.signature(_ViewInstrumentMatch).parameters:
        assert all(hasattr(m, "_reset_on_collect") for m in matches), "_ViewInstrumentMatch._reset_on_collect is gone"
    exporter = ConsoleMetricExporter()
    for attribute in ("_preferred_temporality", "_preferred_aggregation"):
        assert hasattr(exporter, attribute), f"opentelemetry-sdk: MetricExporter.{attribute} is gone"
    sums = _SumAggregation({}, True, 1, 0, lambda: None)  # type: ignore[arg-type]
    for attribute in ("_lock", "_attributes", "_start_time_unix_nano", "_previous_value",
                      "_previous_collection_start_nano", "_collect_exemplars", "_sample_exemplar"):  # fmt: skip
        assert hasattr(sums, attribute), f"opentelemetry-sdk: _SumAggregation.{attribute} is gone"
    assert "_collect_exemplars" in dir(_ExplicitBucketHistogramAggregation)
    # _CellExponentialAggregation builds its base with these arguments, and uses these members.
    parameters = list(inspect.signature(_ExponentialBucketHistogramAggregation).parameters)
    assert parameters[:4] == ["attributes", "reservoir_builder", "instrument_aggregation_temporality",
                              "start_time_unix_nano"], parameters  # fmt: skip
    assert {"max_size", "max_scale"} <= set(parameters), parameters
    exponential = _ExponentialBucketHistogramAggregation({}, lambda **_: None, 1, 0, max_size=160, max_scale=8)  # type: ignore[arg-type]
    for attribute in ("_lock", "_attributes", "_start_time_unix_nano", "_collect_exemplars", "_sample_exemplar"):
        assert hasattr(exponential, attribute), (
            f"opentelemetry-sdk: _ExponentialBucketHistogramAggregation.{attribute} is gone"
        )
    # register_series builds it positionally: value, time, instrument, context, attributes.
    fields = list(getattr(Measurement, "__dataclass_fields__", {}))
    assert fields[:5] == ["value", "time_unix_nano", "instrument", "context", "attributes"], fields


SDK_PRIVATE_ATTRIBUTES = frozenset({
    "_measurement_consumer", "_preferred_temporality", "_preferred_aggregation", "_collect", "_shutdown_event",
    "_at_fork_reinit", "_daemon_thread", "_all_metric_readers_lock",
})  # fmt: skip
"""The SDK objects' private attributes the package or its tests use, each checked by name in this file."""
ROOT = SRC.parents[1]


def _reaches_into_the_sdk(path: Path) -> list[str]:
    """``path``'s imports of the SDK's private modules, and its uses of the SDK objects' private attributes
    (on a name imported from opentelemetry, or one of SDK_PRIVATE_ATTRIBUTES on anything but self or cls)."""
    tree = ast.parse(path.read_text())
    from_otel = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("opentelemetry")
        for alias in node.names
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and "._internal" in (node.module or ""):
            found.append(f"{node.lineno}: {node.module}")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue  # a class's own members
            on_otel = isinstance(node.value, ast.Name) and node.value.id in from_otel
            if on_otel or node.attr in SDK_PRIVATE_ATTRIBUTES:
                found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_other_module_reaches_into_the_sdk() -> None:
    """Private SDK imports and attributes: in the package, in _aggregation.py only; in the tests and benchmarks,
    only this file's own checks, the attributes it checks by name and the oracle modules it checks by name."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name != "_aggregation.py":
            offenders += [f"{path.relative_to(ROOT)}:{where}" for where in _reaches_into_the_sdk(path)]
    for folder in ("tests", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.resolve() == Path(__file__).resolve():
                continue
            for where in _reaches_into_the_sdk(path):
                if (
                    where.rsplit(".", 1)[-1] not in SDK_PRIVATE_ATTRIBUTES
                    and where.split(" ")[-1] not in TEST_ORACLE_MODULES
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{where}")
    assert offenders == []


def test_an_inherited_periodic_reader_is_disowned_through_its_private_attributes() -> None:
    """disown_reader sets the reader's ``_collect`` and ``_shutdown_event``: a reader whose thread starts again
    (as the SDK's fork hook does) ends at once and exports nothing."""
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    from trading_telemetry._aggregation import disown_reader

    exported: list[object] = []

    class Exporter(ConsoleMetricExporter):
        def export(self, metrics_data: object, timeout_millis: float = 0, **kwargs: object) -> object:
            exported.append(metrics_data)
            return super().export(metrics_data, timeout_millis, **kwargs)  # type: ignore[arg-type]

    reader = PeriodicExportingMetricReader(Exporter(out=open(os.devnull, "w")), export_interval_millis=10)  # noqa: SIM115
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("t").create_counter("c").add(1)
    assert hasattr(MeterProvider, "_all_metric_readers_lock"), "opentelemetry-sdk: the providers' lock is gone"
    for attribute in ("_collect", "_shutdown_event", "_at_fork_reinit", "_daemon_thread"):
        assert hasattr(reader, attribute), f"opentelemetry-sdk: PeriodicExportingMetricReader.{attribute} is gone"
    reader._shutdown_event.set()  # the parent's thread, stopped: a child has none
    reader._daemon_thread.join(5)  # type: ignore[union-attr]
    exported.clear()
    disown_reader(reader)
    reader._at_fork_reinit()  # what the SDK's fork hook runs in the child
    reader._daemon_thread.join(5)  # type: ignore[union-attr]
    assert not reader._daemon_thread.is_alive()  # type: ignore[union-attr]
    assert exported == []
