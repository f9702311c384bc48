"""The NautilusTrader integration's overhead: the same backtest with and without TelemetryActor.

The backtest of ``trading_telemetry.integrations.nautilus_example`` with its two
strategies sending an order on every quote (three FX pairs), run with the actor and
without it, interleaved, in fresh engines; only ``engine.run()`` is timed (wall clock).
The planes record as in production (the default exporter: /metrics rendered on demand,
nothing served here). Prints the ratio's median and range. Target: at most 1.10x.

    .venv/bin/python benchmarks/bench_nautilus.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from trading_telemetry import TelemetryConfig, init_metrics_exporter, reset
from trading_telemetry.catalog import Plane
from trading_telemetry.integrations.nautilus import BACKTEST_NAMESPACE
from trading_telemetry.integrations.nautilus_example import build_engine


def run(quotes: int, telemetry: bool) -> tuple[float, int]:
    """Seconds of engine.run(), and the number of orders the backtest made."""
    if telemetry:
        config = TelemetryConfig(resource_attributes={"service.namespace": BACKTEST_NAMESPACE})
        for plane in Plane:
            init_metrics_exporter(plane, config=config)
    engine, _ = build_engine(quotes, seed=5, telemetry=telemetry, every_quote=True)
    gc.collect()
    start = time.perf_counter()
    engine.run()
    seconds = time.perf_counter() - start
    orders = len(engine.cache.orders())
    engine.dispose()
    reset()
    return seconds, orders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller backtest, fewer rounds (a smoke run)")
    args = parser.parse_args()
    quotes, rounds = (500, 3) if args.quick else (4000, 7)
    run(quotes // 4, True)  # warm up imports and caches
    ratios, plain, instrumented = [], [], []
    for i in range(rounds):
        # Alternate which goes first, so drift of the machine falls on both sides.
        order = (False, True) if i % 2 == 0 else (True, False)
        timings = {t: run(quotes, t) for t in order}
        (without, orders), (with_, orders2) = timings[False], timings[True]
        assert orders == orders2, "the same backtest either way"
        plain.append(without)
        instrumented.append(with_)
        ratios.append(with_ / without)
    print(f"backtest: 3 instruments x {quotes} quotes, an order on every quote ({orders} orders), {rounds} rounds")
    print(f"  without the actor  median {statistics.median(plain):.3f} s")
    print(f"  with the actor     median {statistics.median(instrumented):.3f} s")
    median, low, high = statistics.median(ratios), min(ratios), max(ratios)
    print(f"  wall time with / without   {median:.3f}x (min {low:.3f}, max {high:.3f})")


if __name__ == "__main__":
    main()
