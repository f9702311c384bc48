"""The demo trading session, run for real and scraped over HTTP."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import STRICT_PROMETHEUS, http_get, wait_for
from trading_telemetry import MetricsServer, init_metrics_exporter
from trading_telemetry.catalog import CATALOG, Plane
from trading_telemetry.demo import Session, run_demo

pytestmark = pytest.mark.integration


def _moved(servers: list[MetricsServer]) -> dict[str, float]:
    """For every catalog metric exposed, a number that is > 0 once it has moved."""
    seen: dict[str, float] = {}
    for server in servers:
        _, _, body = http_get(f"{server.url}/metrics")
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name.endswith("_total") or sample.labels.get("le") == "+Inf":
                    seen[family.name] = seen.get(family.name, 0.0) + sample.value
                elif family.type == "gauge":
                    seen[family.name] = seen.get(family.name, 0.0) + 1.0
    return seen


def test_every_metric_moves_on_all_three_endpoints() -> None:
    """Within a short session every metric of the specification appears on its plane's endpoint and moves."""
    for plane in Plane:
        init_metrics_exporter(plane, config=STRICT_PROMETHEUS)  # strict: the demo must record nothing bad
    stop = threading.Event()
    ready: list[MetricsServer] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_demo(duration=120, seed=3, rate=1000, base_port=0, stop=stop, quiet=True, servers_ready=ready.extend)
        except BaseException as error:  # noqa: BLE001 - reported by the test thread
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_for("the demo's servers", lambda: len(ready) == 3 or errors, timeout=20)
        expected = {s.prometheus_name.removesuffix("_total") for s in CATALOG}

        def all_moved() -> bool:
            assert not errors, errors
            moved = _moved(ready)
            return all(moved.get(name, 0) > 0 for name in expected)

        wait_for("every catalog metric to move", all_moved, timeout=90, interval=0.5)
        health = [http_get(f"{s.url}/health")[0] for s in ready]
        assert health == [200, 200, 200]
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors, errors
    assert not thread.is_alive()


def _run_steps(seed: int, steps: int) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        session = Session(seed)
        for _ in range(steps):
            session.step()
        for task in list(session.tasks):
            task.cancel()
        await asyncio.gather(*session.tasks, return_exceptions=True)
        d = session.desk
        return {"prices": d.prices, "realized": d.realized, "positions": d.positions, "regime": d.regime,
                "triggers": d.triggers, "orders": session.orders.qsize()}  # fmt: skip

    return asyncio.run(run())


def test_same_seed_same_session() -> None:
    """The same seed gives the same market, orders and PnL step by step; another seed does not."""
    from trading_telemetry import reset

    for plane in Plane:
        init_metrics_exporter(plane, config=STRICT_PROMETHEUS)
    first = _run_steps(11, 3000)
    reset()
    for plane in Plane:
        init_metrics_exporter(plane, config=STRICT_PROMETHEUS)
    assert _run_steps(11, 3000) == first
    assert _run_steps(12, 3000) != first


def test_command_line_demo_runs_and_exits_cleanly() -> None:
    """`trading-telemetry demo --duration 3 --base-port 0` prints its endpoints and a summary, and exits 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRADING_TELEMETRY_"))}
    cli = os.path.join(os.path.dirname(sys.executable), "trading-telemetry")
    done = subprocess.run([cli, "demo", "--duration", "3", "--base-port", "0", "--seed", "1"],
                          capture_output=True, text=True, timeout=60, env=env, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("/metrics") == 3
    assert "ticks=" in done.stdout.splitlines()[-1]
