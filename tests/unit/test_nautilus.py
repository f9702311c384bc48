"""The NautilusTrader integration inside a real BacktestEngine: our counters against the
engine's own books, the reason codes, the portfolio gauges, backtest vs live planes."""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from nautilus_trader.model.enums import PriceType
from nautilus_trader.model.events import OrderFilled

from trading_telemetry import TelemetryConfig, _state, reset
from trading_telemetry.catalog import Plane
from trading_telemetry.integrations import nautilus
from trading_telemetry.integrations.nautilus import (
    BACKTEST_NAMESPACE,
    prepare,
)
from trading_telemetry.integrations.nautilus_example import books, build_engine, ours
from trading_telemetry.testing import TelemetryCapture

PAGE = Path(__file__).resolve().parents[2] / "docs" / "nautilus.md"
QUOTES = 5000  # per instrument: about 3,000 orders, 3 s of CPU


@dataclass
class Session:
    """What one backtest with the actor left: the engine's books, ours, and the metrics read
    before the planes were reset (each test starts with none)."""

    theirs: dict[str, float]
    mine: dict[str, float]
    drops: dict[Plane, dict[tuple[str, str], int]]
    reasons: set[str]
    check_types: set[str]
    gauges: dict[str, float | None]
    pnl: dict[str, list[float | None]]
    signed_exposures: list[float]


@pytest.fixture(scope="module")
def session() -> Session:
    """One backtest with the actor, recording in production mode (nothing raised, bad input counted)."""
    reset()
    config = TelemetryConfig(metrics_exporters=(), traces_exporters=(),
                             resource_attributes={"service.namespace": BACKTEST_NAMESPACE})  # fmt: skip
    capture = TelemetryCapture(config)
    capture.start()
    engine, actor = build_engine(QUOTES, seed=1)  # its last cancel comes after the actor stopped
    try:
        engine.run()
        assert actor is not None
        order = capture._collect(Plane.ORDER)
        portfolio = ("portfolio_net_exposure_usd", "portfolio_gross_exposure_usd", "portfolio_value_usd")
        pnl = ("pnl_realized_usd", "pnl_unrealized_usd", "pnl_total_usd")
        return Session(
            theirs=books(engine),
            mine=ours(capture, actor),
            drops={p: _state.get_metrics(p).policy.counts() for p in Plane},
            reasons={dict(k)["reason"] for k in order["orders_rejected"]},
            check_types={dict(k)["check_type"] for k in order["orders_risk_rejections"]},
            gauges={k: capture.gauge(k) for k in portfolio},
            pnl={s: [capture.gauge(k, strategy=s) for k in pnl] for s in actor._strategies},
            signed_exposures=[
                p.signed_qty
                * engine.cache.price(p.instrument_id, PriceType.BID if p.is_long else PriceType.ASK).as_double()
                for p in engine.cache.positions_open()
            ],
        )
    finally:
        engine.dispose()
        reset()


def test_our_counters_equal_the_engines_books(session: Session) -> None:
    """Every count and sum equals the engine's: quotes, trades and bars; orders submitted,
    filled, part-filled, canceled, expired, rejected, denied; fill events; commission;
    realized PnL (the account's ledger); and nothing was dropped."""
    assert session.mine == session.theirs
    # Every kind of outcome happened, so each equality could have failed.
    assert all(value != 0 for value in session.theirs.values()), session.theirs
    assert session.theirs["fill events"] > session.theirs["orders filled"]  # orders filled in pieces
    assert session.drops == {p: {} for p in Plane}


def test_fills_resent_after_their_orders_ended_count_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fill of the latest ended orders resent after the run (a venue replaying its
    executions): no count or cost moves and the figures still equal the engine's books; the
    actor keeps no order the engine has closed among its open ones, and at most
    ENDED_ORDERS_KEPT ended ones (an order evicted from those counts a resent fill again)."""
    monkeypatch.setattr(nautilus, "ENDED_ORDERS_KEPT", 40)
    reset()
    config = TelemetryConfig(metrics_exporters=(), traces_exporters=(),
                             resource_attributes={"service.namespace": BACKTEST_NAMESPACE})  # fmt: skip
    capture = TelemetryCapture(config)
    capture.start()
    engine, actor = build_engine(400, seed=2)
    try:
        engine.run()
        assert actor is not None
        figures = ours(capture, actor)
        assert figures == books(engine)
        kept = set(actor._ended)
        assert len(kept) == 40
        fills = {o.client_order_id: [e for e in o.events if isinstance(e, OrderFilled)] for o in engine.cache.orders()}
        resent = [e for key in kept for e in fills[key]]
        assert len(resent) > 20
        for event in resent:
            actor._on_order_event(event)  # the actor has stopped: recorded at once
        assert ours(capture, actor) == figures
        assert set(actor._ended) == kept
        assert set(actor._orders) == {o.client_order_id for o in engine.cache.orders_open()}
        assert _state.get_metrics(Plane.ORDER).policy.counts() == {}
        # A fill of an order ended long before (no longer kept): counted again, and kept with
        # the ended orders (the engine has closed it), never among the open ones.
        evicted = next(e for key, events in fills.items() if key not in kept for e in events)
        actor._on_order_event(evicted)
        assert ours(capture, actor)["fill events"] == figures["fill events"] + 1
        assert len(actor._ended) == 40
        assert evicted.client_order_id in actor._ended
        assert set(actor._orders) == {o.client_order_id for o in engine.cache.orders_open()}
    finally:
        engine.dispose()
        reset()


def test_reasons_are_reduced_to_codes_on_the_engines_own_messages(session: Session) -> None:
    """The engine's free-text reasons arrive as bounded codes, one series each."""
    assert session.reasons == {"post_only"}
    assert session.check_types == {"max_quantity", "gtd_expired"}


def test_portfolio_gauges_match_the_open_positions(session: Session) -> None:
    """Net exposure is signed (long minus short, USD at the bid for a long and the ask for a
    short, as the engine's portfolio marks), gross the sum of sizes,
    and each strategy's total PnL is its realized plus unrealized."""
    signed = session.signed_exposures
    assert any(s < 0 for s in signed), "the session ends with a short position"
    net, gross, value = (session.gauges[k] for k in ("portfolio_net_exposure_usd", "portfolio_gross_exposure_usd",
                                                     "portfolio_value_usd"))  # fmt: skip
    assert net is not None
    assert gross is not None
    assert value is not None
    assert math.isclose(net, math.fsum(signed), rel_tol=1e-9)
    assert math.isclose(gross, math.fsum(abs(s) for s in signed), rel_tol=1e-9)
    assert value > 0
    assert len(session.pnl) == 2
    for realized, unrealized, total in session.pnl.values():
        assert realized is not None
        assert unrealized is not None
        assert total is not None
        assert math.isclose(total, realized + unrealized, abs_tol=1e-6)


def test_a_backtest_records_into_the_backtest_namespace(caplog: pytest.LogCaptureFixture) -> None:
    """prepare(backtest=True) starts the planes under service.namespace=backtest; planes already
    started for live trading are kept, with a warning that the series will mix."""
    reset()
    try:
        prepare(backtest=True)
        resource = _state.get_metrics(Plane.ORDER).sdk.resource
        assert resource is not None
        assert resource.attributes["service.namespace"] == BACKTEST_NAMESPACE
    finally:
        reset()
    capture = TelemetryCapture()
    capture.start()
    try:
        with caplog.at_level(logging.WARNING, logger="trading_telemetry"):
            prepare(backtest=True)
        assert "a backtest is recording into order_plane, initialised for live trading" in caplog.text
    finally:
        reset()


@pytest.mark.integration  # runs the example as a script in a process of its own: out of `make check`
def test_the_docs_backtest_example_runs(tmp_path: Path) -> None:
    """docs/nautilus.md's backtest example, run as a script, prints what the actor recorded."""
    code = next(c for c in re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S) if "engine.run()" in c)
    script = tmp_path / "backtest.py"
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRADING_TELEMETRY_"))}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    filled = [line for line in lines if line.startswith("orders_filled_total{")]
    assert {'direction="BUY"' in line for line in filled} == {True, False}
    assert sum(float(line.rsplit(" ", 1)[1]) for line in filled) == 100  # an order every 20th of 2,000 quotes
    assert any(line.startswith("strategy_pnl_realized_usd{") for line in lines)
