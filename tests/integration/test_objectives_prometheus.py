"""The generated objective rules on a real Prometheus: a burst of rejected orders from a plane's /metrics
pages through ObjectiveBudgetBurnFast, while the healthy ack-latency objective stays silent, and each records
the budget it has left; and the rules generated for a desk's objectives pass `promtool check rules` and their
own `promtool test rules`."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import STRICT_PROMETHEUS, wait_for
from servers import PROMETHEUS_DIR, Prometheus, require_binary
from trading_telemetry import MetricsServer, cli, init_metrics_exporter, reset
from trading_telemetry.catalog import Plane

pytestmark = pytest.mark.integration

ORDER = {"strategy": "momentum", "symbol": "SPY"}


def _every_second(tmp_path: Path) -> Path:
    """prometheus/rules/objectives.yml with its groups evaluated every second instead of every 30 s."""
    rules = yaml.safe_load((PROMETHEUS_DIR / "rules" / "objectives.yml").read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
    path = tmp_path / "objectives.yml"
    path.write_text(yaml.safe_dump(rules))
    return path


@pytest.fixture
def order_plane() -> Iterator[MetricsServer]:
    reset()
    server = MetricsServer(init_metrics_exporter(Plane.ORDER, config=STRICT_PROMETHEUS), port=0)
    try:
        yield server
    finally:
        server.close()
        reset()


def test_a_burst_of_rejections_pages_and_a_healthy_latency_objective_stays_silent(
    order_plane: MetricsServer, prometheus_factory: Callable[..., Prometheus], tmp_path: Path
) -> None:
    """Every order rejected (a burn of 100x a 1 % budget) fires ObjectiveBudgetBurnFast for order_rejections,
    critical, naming the objective and the burn rate; acks all within 0.25 s keep order_ack_latency silent. The
    budget left is recorded for both."""
    prom = prometheus_factory({"planes": [f"127.0.0.1:{order_plane.port}"]}, rule_files=[_every_second(tmp_path)])
    metrics = order_plane.metrics

    def trade() -> None:
        for _ in range(10):
            metrics.inc("orders_received", **ORDER, direction="BUY", order_type="LIMIT")
            metrics.inc("orders_rejected", **ORDER, reason="venue_closed")
            metrics.observe("submit_to_ack_latency", 0.01, **ORDER, order_type="LIMIT")

    def firing() -> list[dict[str, Any]]:
        trade()
        alerts = prom.api("alerts")["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "ObjectiveBudgetBurnFast" and a["state"] == "firing"]

    (alert,) = wait_for("ObjectiveBudgetBurnFast firing for order_rejections", firing, timeout=30, interval=0.5)
    assert alert["labels"] == {
        "alertname": "ObjectiveBudgetBurnFast",
        "objective": "order_rejections",
        "service": "order_plane",
        "severity": "critical",
    }
    assert "burns at 100.0x" in alert["annotations"]["description"]
    assert alert["annotations"]["description"].startswith("Objective order_rejections (99% of orders_received")
    # Its own group, evaluated on its own schedule: polled rather than read once.

    def latency() -> list[float]:
        found = prom.query('objective:error_ratio:rate5m{objective="order_ack_latency"}')
        return [float(s["value"][1]) for s in found]

    assert wait_for("order_ack_latency's ratio recorded", latency, timeout=15, interval=0.5) == [0.0]
    assert not [a for a in prom.api("alerts")["alerts"] if a["labels"]["objective"] == "order_ack_latency"]

    def remaining(objective: str) -> list[float]:
        found = prom.query(f'objective:error_budget_remaining:ratio{{objective="{objective}"}}')
        return [float(s["value"][1]) for s in found]

    # The budget left: untouched for the acks, overspent 99 times over (a 100x burn) for the rejections.
    assert wait_for("order_ack_latency's budget left", partial(remaining, "order_ack_latency"), timeout=15) == [1.0]
    assert wait_for("order_rejections' budget left", partial(remaining, "order_rejections"), timeout=15) == [-99.0]


@pytest.mark.parametrize(("target", "threshold"), [(0.931, 1.0), (0.999, 0.1), (0.99999, 1.0)])
def test_generated_rules_for_a_desks_objectives_pass_promtool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: float, threshold: float
) -> None:
    """For a desk's latency and error-ratio objectives from the loosest target allowed to five nines (and a
    whole-number bound, stored as le="1.0"), `trading-telemetry rules` writes rules promtool accepts and tests
    that promtool runs green: the fast burn pages in time, the slow burn tickets, the healthy series is silent."""
    desk = {
        "metrics": [
            {"plane": "strategy_plane", "key": "callback_latency", "name": "strategy_callback_latency_seconds",
             "kind": "histogram", "unit": "s", "description": "Callback latency", "labels": ["strategy"],
             "buckets": [0.001, 0.01, 0.1, 1, 10], "min": 0,
             "objective": {"target": target, "threshold": threshold}},
            {"plane": "strategy_plane", "key": "callbacks", "name": "strategy_callbacks_total", "kind": "counter",
             "description": "Callbacks run"},
            {"plane": "strategy_plane", "key": "callback_failures", "name": "strategy_callback_failures_total",
             "kind": "counter", "description": "Callbacks that raised",
             "objective": {"target": target, "total": "callbacks", "window": "4w"}},
        ]
    }  # fmt: skip
    path = tmp_path / "desk.yml"
    path.write_text(yaml.safe_dump(desk))
    monkeypatch.setenv("TRADING_TELEMETRY_CATALOG", str(path))
    reset()
    out = tmp_path / "out"
    assert cli.main(["rules", "--out", str(out)]) == 0
    promtool = require_binary("promtool")
    checked = subprocess.run([promtool, "check", "rules", str(out / "rules" / "objectives.yml")],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 40 rules found" in checked.stdout
    tested = subprocess.run([promtool, "test", "rules", str(out / "tests" / "objectives_test.yml")],
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
    reset()
