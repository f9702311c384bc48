from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from trading_telemetry._dashboards import VARIABLES, dashboards, render
from trading_telemetry.catalog import CATALOG, Kind

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


def test_queries_use_the_right_function_for_each_kind() -> None:
    """Counters are shown as rates, histograms as quantiles over sum by (le, ...), never raw."""
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
                    assert expr.startswith("histogram_quantile("), expr
                    assert "sum by (le" in expr, expr


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
