"""A dead pushing plane is noticed: the demo pushes OTLP through our Collector to a real
Prometheus with our rules, its process is killed, PlaneStopped fires within two minutes
and reaches the real Alertmanager, and the plane's frozen series go stale promptly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import wait_for
from servers import RULE_FILES, Alertmanager, Collector, Prometheus, Webhook
from trading_telemetry.catalog import Plane

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def stack(
    collector_factory: Callable[[], Collector],
    prometheus_factory: Callable[..., Prometheus],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Collector, Prometheus, Alertmanager, Webhook]]:
    webhook = Webhook()
    alertmanager = Alertmanager(tmp_path_factory.mktemp("alertmanager"), {"ALERT_WEBHOOK_URL": webhook.url})
    collector = collector_factory()
    prom = prometheus_factory(
        {"collector": [collector.prometheus_target]},
        rule_files=RULE_FILES,
        alertmanagers=[f"127.0.0.1:{alertmanager.port}"],
    )
    try:
        yield collector, prom, alertmanager, webhook
    finally:
        alertmanager.stop()
        webhook.close()


def _uptimes(prom: Prometheus) -> dict[str, float]:
    return {r["metric"]["service"]: float(r["value"][1]) for r in prom.query("trading_telemetry_uptime_seconds")}


def test_a_killed_pushing_plane_fires_plane_stopped_and_goes_stale(
    stack: tuple[Collector, Prometheus, Alertmanager, Webhook],
) -> None:
    """A demo pushing through the Collector and killed: its series go stale within 90 s and PlaneStopped
    fires for its three planes within 120 s, in Prometheus 3 and in Alertmanager, and reaches the webhook."""
    collector, prom, alertmanager, webhook = stack
    env = {
        **os.environ,
        "OTEL_METRICS_EXPORTER": "otlp",
        **collector.sdk_env("http/protobuf"),
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
    }
    demo = subprocess.Popen([str(BIN / "trading-telemetry"), "demo", "--base-port", "0", "--rate", "200"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        services = {p.value for p in Plane}

        def moving() -> bool:
            first = _uptimes(prom)
            time.sleep(2.5)
            second = _uptimes(prom)
            return set(second) == services and all(second[s] > first.get(s, -1) for s in services)

        wait_for("the three planes' uptime moving in Prometheus", moving, timeout=60, interval=0.5)
        # Running planes: never firing (a plane's first seconds may show it pending, before
        # its uptime has been seen to move).
        alive = prom.api("alerts")["alerts"]
        assert not [a for a in alive if a["labels"]["alertname"] == "PlaneStopped" and a["state"] == "firing"]
    finally:
        demo.send_signal(signal.SIGKILL)  # a crash: no last export, no goodbye
        demo.wait(timeout=30)
    killed = time.monotonic()

    def gone() -> bool:
        return not prom.query('trading_telemetry_uptime_seconds{service="order_plane"}') and not prom.query(
            'orders_received_total{service="order_plane"}'
        )

    # The deadlines count from the kill: the series stale within 90 s, the alert firing within 120 s.
    wait_for("the dead plane's series to go stale within 90 s of the kill", gone,
             timeout=killed + 90 - time.monotonic(), interval=1.0)  # fmt: skip
    stale_after = time.monotonic() - killed

    def firing() -> list[dict[str, Any]]:
        alerts = prom.api("alerts")["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "PlaneStopped" and a["state"] == "firing"]

    fired = wait_for("PlaneStopped firing for the three planes within 120 s of the kill",
                     lambda: len(firing()) == 3 and firing(),
                     timeout=killed + 120 - time.monotonic(), interval=1.0)  # fmt: skip
    fired_after = time.monotonic() - killed
    assert {a["labels"]["service"] for a in fired} == services
    assert all(a["labels"]["job"].endswith(a["labels"]["service"]) for a in fired)  # trading/<plane>

    def listed() -> list[dict[str, Any]]:
        return [a for a in alertmanager.alerts() if a["labels"]["alertname"] == "PlaneStopped"]

    wait_for("PlaneStopped in Alertmanager", lambda: len(listed()) == 3, timeout=60)

    def delivered() -> list[dict[str, Any]]:
        return [p for p in webhook.received if p["commonLabels"].get("alertname") == "PlaneStopped"]

    (payload, *_) = wait_for("the webhook notification", delivered, timeout=60)
    assert payload["status"] == "firing"
    print(f"series stale after {stale_after:.0f}s, PlaneStopped firing after {fired_after:.0f}s")
