"""The demo trading session: one process, three planes, every catalog metric moving.

It is written as a trading system would use the package, through the public API only:

- **Data plane**: ticks for five symbols from a real-time and a historical source, with
  freshness, validation and NTP checks, a dead-letter queue, OFI events, one-minute bars
  and batched storage writes (``timed`` on an async writer). Each tick is handled in a
  ``traced`` span and handed to the Strategy plane as a message carrying the trace.
- **Strategy plane**: three strategies (OFI, ERN, VRP) turn a price move into signals
  inside ``traced`` spans, within the tick's trace; a small QP (projected gradient,
  ``timed`` with its status as the outcome) sizes the portfolio; PnL, exposures, a
  Calm/Normal/Storm regime and a drawdown kill switch follow.
- **Order plane**: each signal becomes an order intent message carrying the W3C trace
  context; the Order plane continues the trace, runs risk checks and POV limits, and
  follows the order to a fill with ``OrderLifecycle``, waiting out realistic latencies.

Every random draw happens in step order, so a ``seed`` gives the same market, signals,
orders and outcomes each run; only measured durations differ.

    trading-telemetry demo --seed 7 --duration 60 --rate 500
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from trading_telemetry import (
    MetricsServer,
    OrderLifecycle,
    PlaneMetrics,
    continue_trace,
    init_metrics_exporter,
    inject_trace_context,
    serve_metrics,
    timed,
    traced,
)

SYMBOLS = ("SPY", "QQQ", "TSLA", "AAPL", "NVDA")
START_PRICES = (500.0, 430.0, 250.0, 190.0, 120.0)
STRATEGIES = ("OFI", "ERN", "VRP")
REGIMES = ("Calm", "Normal", "Storm")
RISK_CHECKS = ("max_position", "max_notional", "price_band", "max_order_rate")
VOLATILITY = (0.0001, 0.0003, 0.0012)  # per tick, by regime
KILL_DRAWDOWN_USD = 1500.0
KILL_COOLDOWN_STEPS = 2000
TURN_S = 0.02  # longest run of ticks between two yields to the event loop
MAX_BEHIND_S = 1.0  # a backlog of ticks older than this is skipped, not caught up


@dataclass
class Intent:
    """An order intent as it travels from the Strategy plane to the Order plane."""

    message: dict[str, Any]
    # Drawn when the intent is made, so outcomes do not depend on task timing.
    risk_reject: str | None
    pov_downscale: bool
    broker_reject: bool
    latencies: tuple[float, float, float]
    pieces: int  # the fills the order's quantity arrives in
    end: str  # "filled", or "canceled"/"expired" after its first piece
    slippage_bps: float
    commission_usd: float  # per unit of quantity


@dataclass
class Desk:
    """The simulated desk's state."""

    rng: random.Random
    prices: dict[str, float] = field(default_factory=lambda: dict(zip(SYMBOLS, START_PRICES, strict=True)))
    positions: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SYMBOLS, 0.0))
    realized: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STRATEGIES, 0.0))
    weights: list[float] = field(default_factory=lambda: [0.2] * len(SYMBOLS))
    regime: int = 1
    peak_pnl: float = 0.0
    kill_until_step: int = -1
    steps: int = 0
    fills: int = 0
    triggers: int = 0
    pending_writes: dict[str, int] = field(default_factory=dict)


@dataclass
class QPResult:
    weights: list[float]
    status: str


def project_to_simplex(v: list[float]) -> list[float]:
    """Euclidean projection onto {w >= 0, sum w = 1}."""
    u = sorted(v, reverse=True)
    total, theta = 0.0, 0.0
    for i, x in enumerate(u, start=1):
        total += x
        t = (total - 1.0) / i
        if x - t > 0:
            theta = t
    return [max(x - theta, 0.0) for x in v]


@timed("qp_solve_time", outcome="qp_solve_status", outcome_of=lambda r: r.status)
@traced(plane="strategy_plane", name="solve_portfolio")
def solve_portfolio(expected: list[float], risk: list[float], max_iter: int) -> QPResult:
    """Mean-variance weights by projected gradient: max w.mu - w'diag(risk)w on the simplex."""
    w = [1.0 / len(expected)] * len(expected)
    for _ in range(max_iter):
        grad = [mu - 2 * r * x for mu, r, x in zip(expected, risk, w, strict=True)]
        new = project_to_simplex([x + 0.05 * g for x, g in zip(w, grad, strict=True)])
        if max(abs(a - b) for a, b in zip(new, w, strict=True)) < 1e-7:
            return QPResult(new, "optimal")
        w = new
    return QPResult(w, "max_iter")


@traced(plane="strategy_plane", attributes_from=("strategy", "symbol"))
def evaluate_signal(strategy: str, symbol: str, move_bps: float, rng: random.Random) -> tuple[str, float] | None:
    """A strategy's view of the last price move: (direction, strength) or no signal."""
    if strategy == "OFI":  # order-flow momentum
        score = move_bps / 6.0
    elif strategy == "ERN":  # mean reversion
        score = -move_bps / 8.0
    else:  # VRP: volatility-risk-premium, sells into calm
        score = rng.gauss(-0.1, 0.4)
    strength = min(1.0, abs(score))
    if strength < 0.5:
        return None
    return ("BUY" if score > 0 else "SELL"), strength


class Session:
    """The three planes of one trading session."""

    def __init__(self, seed: int) -> None:
        self.data: PlaneMetrics = init_metrics_exporter("data_plane")
        self.order: PlaneMetrics = init_metrics_exporter("order_plane")
        self.strategy: PlaneMetrics = init_metrics_exporter("strategy_plane")
        self.desk = Desk(random.Random(seed))
        self.orders: asyncio.Queue[Intent] = asyncio.Queue()
        self.tasks: set[asyncio.Task[None]] = set()
        self.skipped = 0  # ticks dropped because the machine could not keep up with the rate
        self.achieved_rate = 0.0  # ticks per second over the whole run
        # Counters that alerts watch start at 0, so their first increment is an increase.
        for switch_type in ("drawdown", "pnl"):
            self.strategy.inc("kill_switches_triggered", 0, switch_type=switch_type)

    # -- Data plane ------------------------------------------------------------------

    @traced(plane="data_plane", name="handle_tick")
    def on_tick(self) -> MutableMapping[str, Any]:
        """One tick. Returns the message the Strategy plane reads: the symbol, the price move
        in basis points (0 for a rejected tick) and the trace context of this span."""
        desk, rng, d = self.desk, self.desk.rng, self.data
        symbol = rng.choice(SYMBOLS)
        source = "ibkr_rt" if rng.random() < 0.92 else "ibkr_hist"
        old = desk.prices[symbol]
        desk.prices[symbol] = old * math.exp(rng.gauss(0.0, VOLATILITY[desk.regime]))
        move_bps = (desk.prices[symbol] / old - 1.0) * 1e4
        if rng.random() < 0.003:
            d.inc("ntp_rejects", source=source)
            return {"symbol": symbol, "move_bps": 0.0}
        if rng.random() < 0.008:
            d.inc("validation_errors", source=source, event_type="tick",
                  error_type=rng.choice(("crossed_book", "stale_quote", "zero_size")))  # fmt: skip
            if rng.random() < 0.5:
                d.inc("normalization_errors", source=source, event_type="tick")
                d.inc("dlq_messages", source=source, event_type="tick")
            return {"symbol": symbol, "move_bps": 0.0}
        d.inc("ticks_received", source=source, symbol=symbol)
        lag = 0.04 if source == "ibkr_rt" else 1.5
        d.observe("data_freshness", rng.lognormvariate(math.log(lag), 0.5), source=source, symbol=symbol)
        self._queue_write("tick")
        if rng.random() < 0.08:
            d.inc("ofi_events_generated", source=source, symbol=symbol)
            self._queue_write("ofi")
        if desk.steps % 100 == 0:
            for s in SYMBOLS:
                d.inc("bars_received", source="ibkr_rt", symbol=s, duration="1m")
                d.set("completeness_score", max(0.0, min(1.0, rng.gauss(0.985, 0.01))), symbol=s)
                self._queue_write("bar")
        return inject_trace_context({"symbol": symbol, "move_bps": move_bps})

    def _queue_write(self, event_type: str) -> None:
        self.desk.pending_writes[event_type] = self.desk.pending_writes.get(event_type, 0) + 1

    def flush_storage(self) -> None:
        for event_type, count in sorted(self.desk.pending_writes.items()):
            latency = self.desk.rng.lognormvariate(math.log(0.002 * (1 + count / 200)), 0.4)
            self._spawn(self.write_batch(event_type, count, latency))
        self.desk.pending_writes.clear()

    @timed("storage_write_latency", labels_from=("event_type",))
    async def write_batch(self, event_type: str, count: int, latency: float) -> None:
        await asyncio.sleep(latency)  # the storage round trip
        self.data.inc("storage_writes", count, event_type=event_type)

    # -- Strategy plane ----------------------------------------------------------------

    @traced(plane="strategy_plane", name="evaluate_move", attributes_from=("symbol",))
    def on_move(self, symbol: str, move_bps: float) -> None:
        """The strategies' signals on a price move; each intent carries this span's trace."""
        desk, s = self.desk, self.strategy
        for strategy in STRATEGIES:
            signal = evaluate_signal(strategy, symbol, move_bps, desk.rng)
            if signal is None:
                continue
            direction, strength = signal
            s.inc("signals_generated", strategy=strategy, symbol=symbol, direction=direction)
            s.observe("signal_strength", strength, strategy=strategy, direction=direction)
            if desk.steps <= desk.kill_until_step:
                continue  # the kill switch holds new orders
            self.orders.put_nowait(self._intent(strategy, symbol, direction, strength))

    def _intent(self, strategy: str, symbol: str, direction: str, strength: float) -> Intent:
        rng, regime = self.desk.rng, self.desk.regime
        qty = max(1, round(strength * 100))
        order_type = "MARKET" if rng.random() < 0.6 else "LIMIT"
        message = {"strategy": strategy, "symbol": symbol, "direction": direction, "qty": qty,
                   "order_type": order_type}  # fmt: skip
        inject_trace_context(message)  # the order-intent message carries the trace onward
        risk_reject = rng.choice(RISK_CHECKS) if rng.random() < 0.04 + 0.04 * regime else None
        to_submit = rng.lognormvariate(math.log(0.0004), 0.4)
        to_ack = rng.lognormvariate(math.log(0.015 if order_type == "MARKET" else 0.025), 0.5)
        to_fill = rng.lognormvariate(math.log(0.03 if order_type == "MARKET" else 0.6), 0.7)
        slippage = rng.gauss(0.6 if order_type == "MARKET" else -0.3, 1.5 * (1 + regime))
        edge = strength * 3.0 - slippage * qty * self.desk.prices[symbol] * 1e-4
        pnl = edge + rng.gauss(0.0, 20.0 * (1 + 3 * regime))
        if risk_reject is None:
            self.desk.realized[strategy] += pnl
            self.desk.positions[symbol] += qty if direction == "BUY" else -qty
        return Intent(
            message=message,
            risk_reject=risk_reject,
            pov_downscale=rng.random() < 0.1,
            broker_reject=rng.random() < 0.02,
            latencies=(to_submit, to_ack, to_fill),
            pieces=min(qty, rng.choice((1, 1, 2, 3))),
            end="filled" if order_type == "MARKET" else rng.choices(("filled", "canceled", "expired"), (16, 3, 1))[0],
            slippage_bps=slippage,
            commission_usd=0.0035,
        )

    def rebalance(self) -> None:
        desk, rng, s = self.desk, self.desk.rng, self.strategy
        expected = [rng.gauss(0.02, 0.05) for _ in SYMBOLS]
        risk = [0.05 * (1 + desk.regime) * rng.uniform(0.5, 1.5) for _ in SYMBOLS]
        max_iter = 3 if rng.random() < 0.05 else 500  # an occasional starved solve
        result = solve_portfolio(expected, risk, max_iter)
        if result.status == "optimal":
            desk.weights = result.weights
        unrealized_total = 0.0
        for strategy in STRATEGIES:
            unrealized = rng.gauss(0.0, 40.0 * (1 + desk.regime))
            unrealized_total += unrealized
            s.set("pnl_realized_usd", desk.realized[strategy], strategy=strategy)
            s.set("pnl_unrealized_usd", unrealized, strategy=strategy)
            s.set("pnl_total_usd", desk.realized[strategy] + unrealized, strategy=strategy)
        notional = {sym: desk.positions[sym] * desk.prices[sym] for sym in SYMBOLS}
        total_pnl = sum(desk.realized.values()) + unrealized_total
        s.set("portfolio_gross_exposure_usd", sum(abs(v) for v in notional.values()))
        s.set("portfolio_net_exposure_usd", sum(notional.values()))
        s.set("portfolio_value_usd", 1_000_000.0 + total_pnl)
        self._regime()
        self._kill_switch(total_pnl)

    def _regime(self) -> None:
        desk = self.desk
        stay = (0.97, 0.96, 0.9)[desk.regime]
        if desk.rng.random() > stay:
            new = min(2, max(0, desk.regime + desk.rng.choice((-1, 1))))
            if new != desk.regime:
                self.strategy.inc("regime_transitions", from_regime=REGIMES[desk.regime], to_regime=REGIMES[new])
                desk.regime = new
        self.strategy.set("regime_state", desk.regime)

    def _kill_switch(self, total_pnl: float) -> None:
        desk = self.desk
        desk.peak_pnl = max(desk.peak_pnl, total_pnl)
        active = desk.steps <= desk.kill_until_step
        if not active and desk.peak_pnl - total_pnl > KILL_DRAWDOWN_USD:
            self.strategy.inc("kill_switches_triggered", switch_type="drawdown")
            desk.kill_until_step = desk.steps + KILL_COOLDOWN_STEPS
            desk.peak_pnl = total_pnl  # re-armed from here once the cooldown ends
            desk.triggers += 1
            active = True
        self.strategy.set("kill_switch_active", 1 if active else 0, switch_type="drawdown")
        self.strategy.set("kill_switch_active", 0, switch_type="pnl")

    # -- Order plane ----------------------------------------------------------------

    async def order_router(self) -> None:
        while True:
            intent = await self.orders.get()
            with continue_trace(intent.message):  # the task starts inside the strategy's trace
                self._spawn(self.execute(intent, intent.message["strategy"], intent.message["symbol"]))

    @traced(plane="order_plane", name="execute_order", attributes_from=("strategy", "symbol"))
    async def execute(self, intent: Intent, strategy: str, symbol: str) -> None:
        m = intent.message
        order = OrderLifecycle(strategy=m["strategy"], symbol=m["symbol"], direction=m["direction"],
                               order_type=m["order_type"], quantity=m["qty"], metrics=self.order)  # fmt: skip
        order.intent()
        base = {"strategy": m["strategy"], "symbol": m["symbol"]}
        if intent.risk_reject:
            order.denied(intent.risk_reject)
            return
        if intent.pov_downscale:
            self.order.inc("pov_downscales", **base)
        to_submit, to_ack, to_fill = intent.latencies
        await asyncio.sleep(to_submit)
        order.submitted()
        await asyncio.sleep(to_ack)
        order.acked()
        if intent.broker_reject:
            order.rejected("broker_reject")
            return
        qty, pieces = m["qty"], intent.pieces
        sizes = [qty // pieces + (1 if i < qty % pieces else 0) for i in range(pieces)]
        if intent.end != "filled":
            sizes = sizes[:1] if pieces > 1 else []  # ends with its first piece filled, or none
        for size in sizes:
            await asyncio.sleep(to_fill / pieces)
            order.fill(size, slippage_bps=intent.slippage_bps, commission_usd=intent.commission_usd * size)
            self.desk.fills += 1
        if intent.end == "canceled":
            order.canceled()
        elif intent.end == "expired":
            order.expired()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- the clock ------------------------------------------------------------------

    def step(self) -> None:
        self.desk.steps += 1
        tick = self.on_tick()
        if tick["move_bps"]:
            with continue_trace(tick):  # the Strategy plane's spans join the tick's trace
                self.on_move(tick["symbol"], tick["move_bps"])
        if self.desk.steps % 50 == 0:
            self.flush_storage()
        if self.desk.steps % 25 == 0:
            self.rebalance()

    def summary(self, elapsed: float) -> str:
        d = self.desk
        pnl = sum(d.realized.values())
        return (f"t={elapsed:6.1f}s ticks={d.steps} fills={d.fills} open={len(self.tasks)} "
                f"pnl={pnl:+.0f}$ regime={REGIMES[d.regime]} "
                f"kill_switch={'ON' if d.steps <= d.kill_until_step else 'off'} triggers={d.triggers}")  # fmt: skip


async def run_session(
    seed: int,
    rate: float,
    duration: float | None,
    stop: threading.Event,
    report: Callable[[str], None] | None = None,
) -> Session:
    """Run the session on the current event loop until ``duration`` or ``stop``."""
    session = Session(seed)
    router = asyncio.ensure_future(session.order_router())
    start = time.monotonic()
    next_step, next_report = start, start + 5.0
    try:
        while not stop.is_set():
            now = time.monotonic()
            if duration is not None and now - start >= duration:
                break
            # Catch up on the ticks due, but yield to the order tasks (and notice the stop
            # and the duration) at least every TURN_S; a backlog past MAX_BEHIND_S is
            # dropped, so a machine that cannot keep up runs slower, never unbounded.
            turn_end = now + TURN_S
            while next_step <= now and time.monotonic() < turn_end:
                session.step()
                next_step += 1.0 / rate
            if now - next_step > MAX_BEHIND_S:
                session.skipped += int((now - next_step) * rate)
                next_step = now
            if report is not None and now >= next_report:
                report(session.summary(now - start))
                next_report += 5.0
            await asyncio.sleep(min(0.01, max(0.0, next_step - time.monotonic())))
    finally:
        router.cancel()
        for task in list(session.tasks):
            task.cancel()
        await asyncio.gather(router, *session.tasks, return_exceptions=True)
    elapsed = time.monotonic() - start
    session.achieved_rate = session.desk.steps / elapsed if elapsed > 0 else 0.0
    if report is not None:
        report(session.summary(elapsed))
        if session.skipped:
            report(
                f"could not keep up with --rate {rate:.12g}: ran {session.achieved_rate:.0f} ticks/s, "
                f"skipped {session.skipped} ticks"
            )
    return session


def run_demo(
    *,
    duration: float | None = None,
    seed: int = 0,
    rate: float = 200.0,
    base_port: int = 8000,
    addr: str | None = None,
    stop: threading.Event | None = None,
    quiet: bool = False,
    servers_ready: Callable[[list[MetricsServer]], None] | None = None,
) -> Session:
    """Serve the three planes on ``base_port`` .. ``base_port + 2`` (0: any free ports)
    and run the session until ``duration`` seconds pass or ``stop`` is set."""
    stop = stop or threading.Event()
    planes = [init_metrics_exporter(p) for p in ("data_plane", "order_plane", "strategy_plane")]
    servers: list[MetricsServer] = []
    report = None if quiet else (lambda line: print(line, flush=True))
    try:
        for offset, metrics in enumerate(planes):
            servers.append(serve_metrics(metrics, base_port + offset if base_port else 0, addr))
        if report is not None:
            for server in servers:
                report(f"{server.metrics.plane.value:>15}: {server.url}/metrics  {server.url}/health")
        if servers_ready is not None:
            servers_ready(servers)
        return asyncio.run(run_session(seed, rate, duration, stop, report))
    finally:
        for server in servers:
            server.close()
