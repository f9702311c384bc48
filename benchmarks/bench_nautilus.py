"""The NautilusTrader integration's overhead: the same backtest with and without TelemetryActor.

First the backtest of ``trading_telemetry.integrations.nautilus_example`` with its two
strategies sending an order on every quote (three FX pairs); then one backtest per data
shape of ``tests/nautilus_shapes.py`` (quotes only, trades only, bid/ask bars only, L2
order book only, and quotes, trades and bars mixed), larger than the tests'. Each is run
with the actor and without it, interleaved, in fresh engines; only ``engine.run()`` is timed
(wall clock). The planes record as in production (the default exporter: /metrics rendered
on demand, nothing served here). Prints each ratio's median and range. Target: at most
1.10x each.

    .venv/bin/python benchmarks/bench_nautilus.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trading_telemetry import TelemetryConfig, init_metrics_exporter, reset
from trading_telemetry.catalog import Plane
from trading_telemetry.integrations.nautilus import BACKTEST_NAMESPACE
from trading_telemetry.integrations.nautilus_example import build_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from nautilus_shapes import SHAPES  # the tests' scenario builders

TARGET = 1.10


def _planes() -> None:
    config = TelemetryConfig(resource_attributes={"service.namespace": BACKTEST_NAMESPACE})
    for plane in Plane:
        init_metrics_exporter(plane, config=config)


def _timed(make: Callable[[], Any], telemetry: bool) -> tuple[float, int, int]:
    """Seconds of engine.run(), the data the engine processed, and the orders it made."""
    if telemetry:
        _planes()
    engine, run = make()
    gc.collect()
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    data, orders = engine.iteration, len(engine.cache.orders())
    engine.dispose()
    reset()
    return seconds, data, orders


def example(quotes: int, telemetry: bool) -> tuple[float, int, int]:
    """The example backtest, an order on every quote."""

    def make() -> Any:
        engine, _ = build_engine(quotes, seed=5, telemetry=telemetry, every_quote=True)
        return engine, engine.run

    return _timed(make, telemetry)


def shape(name: str, size: int, telemetry: bool) -> tuple[float, int, int]:
    """A data shape's scenario, ``size`` times the tests' data."""

    def make() -> Any:
        s = SHAPES[name](telemetry=telemetry, size=size, seed=5)
        return s.engine, s.run

    return _timed(make, telemetry)


def compare(rounds: int, run: Callable[[bool], tuple[float, int, int]]) -> dict[str, Any]:
    """``rounds`` pairs of runs, without and with the actor, alternating which goes first
    (drift of the machine falls on both sides)."""
    plain, instrumented, ratios = [], [], []
    data = orders = 0
    for i in range(rounds):
        order = (False, True) if i % 2 == 0 else (True, False)
        timings = {t: run(t) for t in order}
        (without, data, orders), (with_, data2, orders2) = timings[False], timings[True]
        assert (data, orders) == (data2, orders2), "the same backtest either way"
        plain.append(without)
        instrumented.append(with_)
        ratios.append(with_ / without)
    return {"data": data, "orders": orders, "without": statistics.median(plain),
            "with": statistics.median(instrumented), "median": statistics.median(ratios), "min": min(ratios),
            "max": max(ratios)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller backtests, fewer rounds (a smoke run)")
    args = parser.parse_args()
    quotes, rounds, size, shape_rounds = (500, 3, 1, 2) if args.quick else (4000, 7, 5, 7)
    example(quotes // 4, True)  # warm up imports and caches
    r = compare(rounds, lambda telemetry: example(quotes, telemetry))
    print(f"backtest: 3 instruments x {quotes} quotes, an order on every quote ({r['orders']} orders), {rounds} rounds")
    print(f"  without the actor  median {r['without']:.3f} s")
    print(f"  with the actor     median {r['with']:.3f} s")
    print(f"  wall time with / without   {r['median']:.3f}x (min {r['min']:.3f}, max {r['max']:.3f})")
    print()
    print(f"data shapes (tests/nautilus_shapes.py, size {size}), {shape_rounds} rounds; target <= {TARGET:.2f}x")
    print(f"  {'shape':8} {'data':>8} {'orders':>7} {'without':>9} {'with':>9} {'with / without':>15}  range")
    for name in SHAPES:
        shape(name, 1, True)  # warm up this shape's code paths
        r = compare(shape_rounds, lambda telemetry, name=name: shape(name, size, telemetry))  # type: ignore[misc]
        flag = "" if r["median"] <= TARGET else "  over target"
        print(f"  {name:8} {r['data']:>8,} {r['orders']:>7,} {r['without']:>8.3f}s {r['with']:>8.3f}s "
              f"{r['median']:>14.3f}x  ({r['min']:.3f}-{r['max']:.3f}){flag}")  # fmt: skip


if __name__ == "__main__":
    main()
