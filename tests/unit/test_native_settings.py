"""Which histograms keep native buckets: the catalog's ``native: true``, or every one by setting; and
multiprocess mode, whose files keep classic buckets only, refuses them at start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trading_telemetry import ConfigError, PlaneMetrics, TelemetryConfig, init_metrics_exporter
from trading_telemetry import catalog as cat

ENTRY = {
    "plane": "order_plane", "key": "venue_ack_latency", "name": "order_venue_ack_latency_seconds",
    "kind": "histogram", "unit": "s", "description": "Venue ack latency", "labels": ["venue"],
    "buckets": [0.001, 0.01, 0.1], "min": 0,
}  # fmt: skip
NONE = TelemetryConfig(metrics_exporters=())


def _native(metrics: PlaneMetrics) -> dict[str, bool]:
    specs = metrics.store.specs
    return {k: s.native for k, s in specs.items() if s.kind is cat.Kind.HISTOGRAM}


def test_by_default_only_the_catalogs_native_entries_have_native_buckets(tmp_path: Path) -> None:
    """A desk entry with native: true gets native buckets; the built-in histograms keep classic ones only."""
    path = tmp_path / "desk.yaml"
    path.write_text(json.dumps({"metrics": [{**ENTRY, "native": True}]}))
    cat.load_file(str(path))
    metrics = init_metrics_exporter("order_plane", config=NONE)
    native = _native(metrics)
    assert native.pop("venue_ack_latency") is True
    assert native
    assert not any(native.values())
    metrics.observe("venue_ack_latency", 0.004, venue="XNAS")
    handle = metrics.bind("venue_ack_latency", venue="XNAS")
    counts, total, _, _, snapshot = handle.snapshot_native()  # type: ignore[attr-defined]
    assert (sum(counts), total) == (1, 0.004)
    assert snapshot is not None
    assert (snapshot.zero_count, sum(snapshot.positive)) == (0, 1)


@pytest.mark.parametrize(
    "environ",
    [
        {"TRADING_TELEMETRY_NATIVE_HISTOGRAMS": "all"},
        {"OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": "base2_exponential_bucket_histogram"},
    ],
)
def test_either_setting_gives_every_histogram_native_buckets(environ: dict[str, str]) -> None:
    """NATIVE_HISTOGRAMS=all, or the OTel exponential default aggregation, makes every histogram native."""
    config = TelemetryConfig.from_env({**environ, "OTEL_METRICS_EXPORTER": "none"})
    assert config.all_native
    native = _native(init_metrics_exporter("order_plane", config=config))
    assert native
    assert all(native.values())


def test_multiprocess_mode_refuses_native_buckets_naming_the_metric(tmp_path: Path) -> None:
    """A plane with native buckets in multiprocess mode is refused at start, naming the directory and a metric."""
    config = TelemetryConfig(metrics_exporters=(), multiprocess_dir=str(tmp_path), native_histograms="all")
    with pytest.raises(ConfigError) as caught:
        init_metrics_exporter("order_plane", config=config)
    assert "TRADING_TELEMETRY_MULTIPROCESS_DIR" in str(caught.value)
    assert "native buckets" in str(caught.value)
