"""The market-data alerts know the session on a real Prometheus with the repository's rules:
a data plane with calendars serves its /metrics, every feed is dead, and NoTicksForSymbol
goes pending for the symbols whose venue is open (and for one with no calendar), not for the
one whose venue is shut, until that venue opens."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from helpers import wait_for
from servers import RULE_FILES, Prometheus
from trading_telemetry import TelemetryConfig, init_metrics_exporter, reset, serve_metrics, sessions
from trading_telemetry import catalog as cat

pytestmark = pytest.mark.integration

NY = ZoneInfo("America/New_York")
DESK = """\
calendars:
  XNYS:
    timezone: America/New_York
    sessions: [{days: [mon, tue, wed, thu, fri], open: "09:30", close: "16:00"}]
  BINANCE: "24/7"
symbols: {AAPL: XNYS, BTCUSDT: BINANCE}
"""


def test_no_ticks_is_pending_only_where_the_session_is_open(
    tmp_path: Path, prometheus_factory: Callable[..., Prometheus]
) -> None:
    """Saturday noon in New York: BTCUSDT (24/7) and ES (no calendar) go pending, AAPL (XNYS, shut) does not;
    once the clock reads Monday 10:00 in New York, AAPL goes pending too."""
    reset()
    (tmp_path / "desk.yaml").write_text(DESK)
    cat.load_file(str(tmp_path / "desk.yaml"))
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=("prometheus",)))
    for symbol, source in (("AAPL", "ibkr_rt"), ("BTCUSDT", "binance_rt"), ("ES", "ibkr_rt")):
        metrics.inc("ticks_received", source=source, symbol=symbol)  # then nothing: a dead feed
    now = [dt.datetime(2026, 12, 5, 12, tzinfo=NY).timestamp()]
    gauges = sessions.start(metrics, sessions.from_file(str(tmp_path / "desk.yaml")), interval=0.2,
                            clock=lambda: now[0])  # fmt: skip
    server = serve_metrics(metrics, 0)
    try:
        prom = prometheus_factory({"planes": [f"127.0.0.1:{server.port}"]}, rule_files=RULE_FILES)

        def pending() -> set[str]:
            found = prom.query('ALERTS{alertname="NoTicksForSymbol"}')
            return {r["metric"]["symbol"] for r in found}

        # The three share one feed's timing: once two are pending, the third would be too, but for its session.
        assert wait_for("BTCUSDT and ES pending", lambda: pending() or None, timeout=60) == {"BTCUSDT", "ES"}
        assert prom.query('data_session_open{calendar="XNYS"} == 0')
        now[0] = dt.datetime(2026, 12, 7, 10, tzinfo=NY).timestamp()
        wait_for("AAPL pending at the open", lambda: "AAPL" in pending(), timeout=60)
        assert pending() == {"AAPL", "BTCUSDT", "ES"}
    finally:
        gauges.stop(timeout=5)
        server.close()
        reset()
