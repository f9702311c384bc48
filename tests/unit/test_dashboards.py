from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_telemetry import catalog as cat
from trading_telemetry import reset
from trading_telemetry._dashboards import VARIABLES, dashboards, render
from trading_telemetry.catalog import CATALOG, Kind, MetricSpec, Plane

GRAFANA = Path(__file__).resolve().parents[2] / "grafana"


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return list(board["panels"])


def exprs(panel: dict[str, Any]) -> list[str]:
    return [t["expr"] for t in panel["targets"]]


def test_committed_json_is_what_the_code_generates() -> None:
    """grafana/dashboards/*.json equal the generated dashboards (fix: `make dashboards`)."""
    generated = dashboards()
    committed = {p.name: p.read_text() for p in (GRAFANA / "dashboards").glob("*.json")}
    assert set(committed) == set(generated)
    for name, document in generated.items():
        assert committed[name] == render(document), f"{name} drifted from the code: run `make dashboards`"


def test_every_catalog_metric_has_a_panel_on_its_plane_dashboard() -> None:
    """Each metric of the specification is queried by a panel of its plane's dashboard."""
    boards = dashboards()
    for spec in CATALOG:
        board = boards[f"{spec.plane.value.replace('_', '-')}.json"]
        queries = " ".join(e for p in panels(board) for e in exprs(p))
        assert re.search(rf"\b{spec.prometheus_name}(_bucket)?\{{", queries), spec.prometheus_name


@pytest.mark.parametrize("name", ["overview.json", "data-plane.json", "order-plane.json", "strategy-plane.json"])
def test_dashboards_have_variables_units_and_a_datasource(name: str) -> None:
    """Every dashboard has the four variables; every panel a unit and the Prometheus datasource."""
    board = dashboards()[name]
    assert [v["name"] for v in board["templating"]["list"]] == list(VARIABLES)
    assert board["uid"].startswith("trading-")
    for panel in panels(board):
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert panel["targets"], panel["title"]


# histogram_quantile(q, sum[ by (L)] (rate(NAME{...}[$__rate_interval]))) or the same over NAME_bucket by (le[, L])
BOTH_SHAPES = re.compile(
    r"histogram_quantile\((?P<q>[0-9.]+), sum(?: by \((?P<by>[^)]*)\))? \(rate\((?P<name>\w+)(?P<sel>\{[^}]*\})"
    r"\[\$__rate_interval\]\)\)\) or histogram_quantile\((?P<q2>[0-9.]+), sum by \((?P<by2>[^)]*)\) "
    r"\(rate\((?P<name2>\w+)_bucket(?P<sel2>\{[^}]*\})\[\$__rate_interval\]\)\)\)"
)


def both_shapes(expr: str) -> re.Match[str] | None:
    """The match of a quantile read from the native histogram, else from the classic buckets of the same
    metric, selector and quantile, aggregated by the same labels (and le)."""
    m = BOTH_SHAPES.fullmatch(expr)
    if m is None or (m["q"], m["name"], m["sel"]) != (m["q2"], m["name2"], m["sel2"]):
        return None
    return m if m["by2"] == ", ".join(["le", *([m["by"]] if m["by"] else [])]) else None


def test_both_shapes_tells_matching_sides_from_others() -> None:
    """The check above accepts the form the dashboards use and refuses sides that differ."""
    native = 'histogram_quantile(0.95, sum by (a) (rate(x{s=~"$s"}[$__rate_interval])))'
    classic = 'histogram_quantile(0.95, sum by (le, a) (rate(x_bucket{s=~"$s"}[$__rate_interval])))'
    assert both_shapes(f"{native} or {classic}")
    assert not both_shapes(f"{native} or {classic.replace('le, a', 'le')}")
    assert not both_shapes(f"{native} or {classic.replace('0.95', '0.99')}")
    assert not both_shapes(f"{native} or {classic.replace('x_bucket', 'y_bucket')}")
    assert not both_shapes(classic)


def test_queries_use_the_right_function_for_each_kind() -> None:
    """Counters are shown as rates; histograms as quantiles of the native histogram or else of the classic
    buckets, over the same labels and selector, never raw."""
    boards = dashboards()
    for spec in CATALOG:
        board = boards[f"{spec.plane.value.replace('_', '-')}.json"]
        for panel in panels(board):
            for expr in exprs(panel):
                if spec.prometheus_name + "{" not in expr and spec.prometheus_name + "_bucket{" not in expr:
                    continue
                if spec.kind is Kind.COUNTER:
                    assert f"rate({spec.prometheus_name}{{" in expr, expr
                elif spec.kind is Kind.HISTOGRAM:
                    match = both_shapes(expr)
                    assert match, expr
                    assert match["name"] == spec.prometheus_name, expr


def test_overview_latency_reads_both_shapes() -> None:
    """The overview's fill latency stat and time series read the native histogram, else the classic buckets."""
    fill = [e for p in panels(dashboards()["overview.json"]) for e in exprs(p) if "fill_latency" in e]
    assert len(fill) == 2
    assert all(both_shapes(e) for e in fill), fill


def _native_catalog(tmp_path: Path, native: bool) -> None:
    (tmp_path / "desk.yaml").write_text(NATIVE_DESK.format(native=str(native).lower()))
    cat.load_file(str(tmp_path / "desk.yaml"))


NATIVE_DESK = """metrics:
  - plane: order_plane
    key: venue_ack_latency
    name: orders_venue_ack_latency_seconds
    kind: histogram
    unit: s
    description: Venue acknowledgement latency
    labels: [strategy, venue]
    buckets: [0.001, 0.01, 0.1, 1]
    min: 0
    native: {native}
"""


@pytest.mark.parametrize("native", [True, False])
def test_a_metric_with_native_buckets_also_shows_p999(tmp_path: Path, native: bool) -> None:
    """A desk metric with `native: true` is shown at p50, p95, p99 and p99.9 and p95 by its labels, each read
    from its native histogram first; without it, p99.9 is left out (classic buckets cannot place it)."""
    _native_catalog(tmp_path, native)
    (panel,) = [p for p in panels(dashboards()["order-plane.json"]) if p["title"] == "orders_venue_ack_latency_seconds"]
    legends = [t["legendFormat"] for t in panel["targets"]]
    assert legends == ["p50", "p95", "p99", *(["p99.9"] if native else []), "p95 {{strategy}} {{venue}}"]
    for target in panel["targets"]:
        match = both_shapes(target["expr"])
        assert match, target["expr"]
        assert match["name"] == "orders_venue_ack_latency_seconds", target["expr"]
        assert target["expr"].index("rate(orders_venue_ack_latency_seconds{") < target["expr"].index(" or ")
        assert target["exemplar"] is True
    assert [both_shapes(t["expr"])["q"] for t in panel["targets"]] == [  # type: ignore[index]
        "0.5", "0.95", "0.99", *(["0.999"] if native else []), "0.95"
    ]  # fmt: skip


def test_the_dashboards_command_writes_native_queries_for_a_desk_catalog(tmp_path: Path) -> None:
    """`trading-telemetry dashboards` with a catalog file that opts a metric in writes its p99.9 native query."""
    (tmp_path / "desk.yaml").write_text(NATIVE_DESK.format(native="true"))
    env = {**os.environ, "TRADING_TELEMETRY_CATALOG": str(tmp_path / "desk.yaml")}
    out = tmp_path / "boards"
    subprocess.run([sys.executable, "-m", "trading_telemetry.cli", "dashboards", "--out", str(out)], env=env,
                   check=True, timeout=120, capture_output=True)  # fmt: skip
    board = json.loads((out / "order-plane.json").read_text())
    queries = [e for p in panels(board) for e in exprs(p)]
    assert any(e.startswith("histogram_quantile(0.999, sum (rate(orders_venue_ack_latency_seconds{") for e in queries)


def test_latency_panels_ask_for_exemplars() -> None:
    """Latency histograms' queries request exemplars, which the datasource links to Jaeger."""
    board = dashboards()["order-plane.json"]
    latency = [p for p in panels(board) if "latency" in p["title"]]
    assert latency
    assert all(t.get("exemplar") is True for p in latency for t in p["targets"])
    datasources = (GRAFANA / "provisioning" / "datasources" / "datasources.yml").read_text()
    assert "datasourceUid: jaeger" in datasources


def test_bounded_gauges_show_their_states_by_name() -> None:
    """Regime shows Calm/Normal/Storm and the kill switch off/ACTIVE, not numbers."""
    board = dashboards()["strategy-plane.json"]
    by_title = {p["title"]: p for p in panels(board)}
    regime = json.dumps(by_title["strategy_regime_state"]["fieldConfig"]["defaults"]["mappings"])
    assert all(word in regime for word in ("Calm", "Normal", "Storm"))
    kill = json.dumps(by_title["strategy_kill_switch_active"]["fieldConfig"]["defaults"]["mappings"])
    assert "ACTIVE" in kill


@settings(max_examples=40, deadline=None)
@given(
    labels=st.lists(st.sampled_from(["strategy", "venue", "book", "symbol", "desk"]), unique=True, max_size=4),
    native=st.booleans(),
    plane=st.sampled_from(list(Plane)),
)
def test_every_desk_histogram_panel_reads_both_shapes(labels: list[str], native: bool, plane: Plane) -> None:
    """For any desk histogram, native or not, on any plane: every query of its panel is a quantile of the
    native histogram, else the classic buckets, by no labels or by exactly its labels; p99.9 iff native."""
    reset()
    name = f"{plane.value.split('_')[0]}_desk_wait_seconds"
    spec = MetricSpec(plane, "desk_wait", name, Kind.HISTOGRAM, "s", "Desk wait", tuple(labels), (0.01, 0.1, 1.0),
                      min_value=0.0, native=native)  # fmt: skip
    cat.extend([spec])
    board = dashboards()[f"{plane.value.replace('_', '-')}.json"]
    (panel,) = [p for p in panels(board) if p["title"] == name]
    found = [both_shapes(e) for e in exprs(panel)]
    assert all(m is not None and m["name"] == name for m in found), exprs(panel)
    assert [m["q"] for m in found if m and not m["by"]] == ["0.5", "0.95", "0.99", *(["0.999"] if native else [])]
    assert [m["by"] for m in found if m and m["by"]] == ([", ".join(labels)] if labels else [])
    reset()
