"""A simulated three-plane trading session that moves every catalog metric.

It uses only the public API, as a trading program would: market data arrives (Data
plane), strategies turn it into signals and a QP sizes the portfolio (Strategy plane),
order intents go through risk checks to fills (Order plane). Deterministic for a given
``seed``; the metrics are real, the market is not.

    trading-telemetry demo --duration 60 --seed 7
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, field

from trading_telemetry import MetricsServer, PlaneMetrics, init_metrics_exporter, serve_metrics

SYMBOLS = ("SPY", "QQQ", "TSLA", "AAPL", "NVDA")
SOURCES = ("ibkr_rt", "ibkr_hist")
STRATEGIES = ("OFI", "ERN", "VRP")
REGIMES = ("Calm", "Normal", "Storm")
CHECKS = ("max_position", "max_notional", "price_band", "max_order_rate")
ORDER_TYPES = ("MARKET", "LIMIT")


@dataclass
class Session:
    """The state of the simulated desk: prices, positions, PnL, regime, kill switch."""

    data: PlaneMetrics
    order: PlaneMetrics
    strategy: PlaneMetrics
    rng: random.Random
    prices: dict[str, float] = field(
        default_factory=lambda: dict(zip(SYMBOLS, (500.0, 430.0, 250.0, 190.0, 120.0), strict=True))
    )
    positions: dict[tuple[str, str], float] = field(default_factory=dict)
    realized: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STRATEGIES, 0.0))
    peak_pnl: float = 0.0
    regime: int = 1
    kill_until: float = 0.0
    steps: int = 0
    orders: int = 0

    def step(self, now: float) -> None:
        self.steps += 1
        symbol = self.rng.choice(SYMBOLS)
        self._market_data(symbol)
        if self.steps % 5 == 0:
            self._signal_and_order(symbol, now)
        if self.steps % 25 == 0:
            self._portfolio(now)

    def _market_data(self, symbol: str) -> None:
        rng, d = self.rng, self.data
        source = "ibkr_rt" if rng.random() < 0.9 else "ibkr_hist"
        vol = (0.0002, 0.0005, 0.002)[self.regime]
        self.prices[symbol] *= math.exp(rng.gauss(0.0, vol))
        d.inc("ticks_received", source=source, symbol=symbol)
        d.observe("data_freshness", rng.lognormvariate(math.log(0.04), 0.6), source=source, symbol=symbol)
        d.inc("storage_writes", event_type="tick")
        d.observe("storage_write_latency", rng.lognormvariate(math.log(0.002), 0.5), event_type="tick")
        if rng.random() < 0.1:
            d.inc("ofi_events_generated", source=source, symbol=symbol)
            d.inc("storage_writes", event_type="ofi")
        if rng.random() < 0.02:
            d.inc("bars_received", source=source, symbol=symbol, duration="1m")
            d.inc("storage_writes", event_type="bar")
            d.set("completeness_score", min(1.0, rng.uniform(0.93, 1.02)), symbol=symbol)
        if rng.random() < 0.01:
            d.inc(
                "validation_errors", source=source, event_type="tick", error_type=rng.choice(("crossed_book", "stale"))
            )
        if rng.random() < 0.004:
            d.inc("ntp_rejects", source=source)
        if rng.random() < 0.004:
            d.inc("normalization_errors", source=source, event_type="tick")
            d.inc("dlq_messages", source=source, event_type="tick")

    def _signal_and_order(self, symbol: str, now: float) -> None:
        rng, s, o = self.rng, self.strategy, self.order
        strategy = rng.choice(STRATEGIES)
        direction = rng.choice(("BUY", "SELL"))
        s.inc("signals_generated", strategy=strategy, symbol=symbol, direction=direction)
        s.observe("signal_strength", rng.betavariate(2, 3), strategy=strategy, direction=direction)
        if now < self.kill_until:
            return
        order_type = "MARKET" if rng.random() < 0.6 else "LIMIT"
        base = {"strategy": strategy, "symbol": symbol}
        o.inc("orders_received", **base, direction=direction, order_type=order_type)
        if rng.random() < 0.05:
            o.inc("risk_rejections", **base, check_type=rng.choice(CHECKS))
            o.inc("orders_rejected", **base, reason="risk_check")
            return
        if rng.random() < 0.1:
            o.inc("pov_downscales", **base)
        o.inc("orders_submitted", **base, direction=direction, order_type=order_type)
        latency = {**base, "order_type": order_type}
        to_submit = rng.lognormvariate(math.log(0.0004), 0.4)
        to_ack = rng.lognormvariate(math.log(0.012 if order_type == "MARKET" else 0.02), 0.5)
        o.observe("intent_to_submit_latency", to_submit, **latency)
        o.observe("submit_to_ack_latency", to_ack, **latency)
        if rng.random() < 0.03:
            o.inc("orders_rejected", **base, reason="broker_reject")
            return
        to_fill = rng.lognormvariate(math.log(0.03 if order_type == "MARKET" else 0.8), 0.8)
        o.observe("ack_to_fill_latency", to_fill, **latency)
        o.observe("total_fill_latency", to_submit + to_ack + to_fill, **latency)
        status = "FILLED" if rng.random() < 0.9 else "PARTIAL_FILL"
        o.inc("orders_filled", **base, direction=direction, status=status)
        o.observe("slippage_bps", rng.gauss(0.8 if order_type == "MARKET" else -0.3, 2.0 + 3 * self.regime),
                  **base, direction=direction)  # fmt: skip
        qty = rng.choice((10, 25, 50, 100))
        o.inc("commission_usd", 0.005 * qty, **base)
        sign = 1 if direction == "BUY" else -1
        self.positions[(strategy, symbol)] = self.positions.get((strategy, symbol), 0.0) + sign * qty
        self.realized[strategy] += rng.gauss(0.5, 20.0) - 0.005 * qty
        self.orders += 1

    def _portfolio(self, now: float) -> None:
        rng, s = self.rng, self.strategy
        start = time.perf_counter()
        status = "optimal" if rng.random() < 0.95 else rng.choice(("infeasible", "max_iter"))
        s.observe("qp_solve_time", rng.lognormvariate(math.log(0.008), 0.7) + (time.perf_counter() - start))
        s.inc("qp_solve_status", status=status)
        gross = net = value_total = 0.0
        total_pnl = 0.0
        for strategy in STRATEGIES:
            unrealized = 0.0
            for (strat, symbol), qty in self.positions.items():
                if strat == strategy:
                    notional = qty * self.prices[symbol]
                    gross += abs(notional)
                    net += notional
                    unrealized += qty * self.prices[symbol] * rng.gauss(0.0, 0.001)
            s.set("pnl_realized_usd", self.realized[strategy], strategy=strategy)
            s.set("pnl_unrealized_usd", unrealized, strategy=strategy)
            s.set("pnl_total_usd", self.realized[strategy] + unrealized, strategy=strategy)
            total_pnl += self.realized[strategy] + unrealized
        value_total = 1_000_000.0 + total_pnl
        s.set("portfolio_gross_exposure_usd", gross)
        s.set("portfolio_net_exposure_usd", net)
        s.set("portfolio_value_usd", value_total)
        self._regime(rng)
        self.peak_pnl = max(self.peak_pnl, total_pnl)
        drawdown = self.peak_pnl - total_pnl
        active = now < self.kill_until
        if not active and drawdown > 400.0:
            s.inc("kill_switches_triggered", switch_type="drawdown")
            self.kill_until = now + 10.0
            self.peak_pnl = total_pnl
            active = True
        s.set("kill_switch_active", 1 if active else 0, switch_type="drawdown")

    def _regime(self, rng: random.Random) -> None:
        stay = (0.97, 0.95, 0.9)[self.regime]
        if rng.random() > stay:
            new = max(0, min(2, self.regime + rng.choice((-1, 1))))
            if new != self.regime:
                self.strategy.inc("regime_transitions", from_regime=REGIMES[self.regime], to_regime=REGIMES[new])
                self.regime = new
        self.strategy.set("regime_state", self.regime)


def run_demo(
    *,
    duration: float | None = None,
    seed: int = 0,
    rate: float = 200.0,
    base_port: int = 8000,
    addr: str | None = None,
    stop: threading.Event | None = None,
    quiet: bool = False,
) -> Session:
    """Run the session until ``duration`` seconds pass or ``stop`` is set, serving
    the three planes on ``base_port`` .. ``base_port + 2``."""
    stop = stop or threading.Event()
    session = Session(
        init_metrics_exporter("data_plane"),
        init_metrics_exporter("order_plane"),
        init_metrics_exporter("strategy_plane"),
        random.Random(seed),
    )
    servers: list[MetricsServer] = []
    try:
        for offset, metrics in enumerate((session.data, session.order, session.strategy)):
            port = base_port + offset if base_port else 0
            servers.append(serve_metrics(metrics, port, addr))
        if not quiet:
            for server in servers:
                print(f"{server.metrics.plane.value:>15}: {server.url}/metrics  {server.url}/health", flush=True)
        _loop(session, duration, rate, stop, quiet)
    finally:
        for server in servers:
            server.close()
    return session


def _loop(session: Session, duration: float | None, rate: float, stop: threading.Event, quiet: bool) -> None:
    start = time.monotonic()
    interval = 1.0 / rate
    next_step = start
    next_report = start + 5.0
    while not stop.is_set():
        now = time.monotonic()
        if duration is not None and now - start >= duration:
            break
        if now < next_step:
            stop.wait(min(next_step - now, 0.05))
            continue
        session.step(now)
        next_step += interval
        if next_step < now - 1.0:  # fell behind (slow machine): do not try to catch up
            next_step = now
        if not quiet and now >= next_report:
            next_report = now + 5.0
            print(
                f"t={now - start:6.1f}s ticks={session.steps} orders_filled={session.orders} "
                f"regime={REGIMES[session.regime]} kill_switch={'ON' if now < session.kill_until else 'off'}",
                flush=True,
            )
