"""What a rejected call costs the trading thread, against an accepted one, in one run.

    .venv/bin/python benchmarks/bench_bad_input.py [--quick]

Production mode drops bad input and counts it. A hot loop that keeps making the same bad
call (a typo in a key, a label value that is not a string, a negative increment) must not
be slowed down by it, and a flood of new label sets past the cardinality limit must not
cost more than new label sets under it. Prints the median per-call cost of each kind of
rejected call and its ratio to the accepted call of the same shape, over interleaved
rounds (min / median / max of the ratio), so the machine's noise cancels.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import timeit
from collections.abc import Callable

from trading_telemetry import TelemetryConfig, init_metrics_exporter, reset

SPY = {"source": "ibkr_rt", "symbol": "SPY"}


def per_call_us(fn: Callable[[], object], calls: int) -> float:
    return timeit.timeit(fn, number=calls) / calls * 1e6


def repeated(calls: int, rounds: int) -> None:
    """The same call again and again: the accepted one against each kind of rejected one."""
    reset()
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=("prometheus",)))
    accepted = ("accepted inc(key, **labels)", lambda: metrics.inc("ticks_received", **SPY))
    rejected = [
        ("unknown key", lambda: metrics.inc("tick_received", **SPY)),
        ("unknown label", lambda: metrics.inc("ticks_received", venue="ARCA", **SPY)),
        ("label value not a string", lambda: metrics.inc("ticks_received", source="ibkr_rt", symbol=5)),  # type: ignore[arg-type]
        ("negative increment", lambda: metrics.inc("ticks_received", -1, **SPY)),
        ("NaN", lambda: metrics.inc("ticks_received", float("nan"), **SPY)),
        ("wrong kind (observe on a counter)", lambda: metrics.observe("ticks_received", 1.0, **SPY)),
    ]
    # Past the cardinality limit, one label set repeated.
    limited = init_metrics_exporter(
        "order_plane", config=TelemetryConfig(metrics_exporters=("prometheus",), cardinality_limit=1)
    )
    limited.inc("pov_downscales", strategy="OFI", symbol="SPY")
    rejected.append(("over the cardinality limit", lambda: limited.inc("pov_downscales", strategy="OFI", symbol="QQQ")))
    for _, fn in [accepted, *rejected]:
        fn()  # warm: bind, cache
    ratios: dict[str, list[float]] = {name: [] for name, _ in rejected}
    costs: dict[str, list[float]] = {name: [] for name, _ in [accepted, *rejected]}
    for _ in range(rounds):
        base = per_call_us(accepted[1], calls)
        costs[accepted[0]].append(base)
        for name, fn in rejected:
            cost = per_call_us(fn, calls)
            costs[name].append(cost)
            ratios[name].append(cost / base)
    print(f"repeated calls ({rounds} interleaved rounds of {calls} calls), production mode")
    print(f"  {accepted[0]:<36} {statistics.median(costs[accepted[0]]):6.2f} us   1.00x")
    for name, _ in rejected:
        r = ratios[name]
        print(
            f"  {name:<36} {statistics.median(costs[name]):6.2f} us   "
            f"{statistics.median(r):4.2f}x  (min {min(r):.2f}, max {max(r):.2f})"
        )


def new_label_sets(calls: int, rounds: int) -> None:
    """Every call a label set never seen: accepted under the limit against rejected past it."""
    reset()
    config = TelemetryConfig(metrics_exporters=("prometheus",), cardinality_limit=10_000_000)
    open_plane = init_metrics_exporter("data_plane", config=config)
    full = init_metrics_exporter(
        "order_plane", config=TelemetryConfig(metrics_exporters=("prometheus",), cardinality_limit=1)
    )
    full.inc("pov_downscales", strategy="OFI", symbol="SPY")
    fresh = itertools.count()
    ratios: list[float] = []
    accepted_costs: list[float] = []
    rejected_costs: list[float] = []
    for _ in range(rounds):
        accepted = per_call_us(
            lambda: open_plane.inc("ticks_received", source="ibkr_rt", symbol=f"A{next(fresh)}"), calls
        )
        rejected = per_call_us(lambda: full.inc("pov_downscales", strategy="OFI", symbol=f"R{next(fresh)}"), calls)
        accepted_costs.append(accepted)
        rejected_costs.append(rejected)
        ratios.append(rejected / accepted)
    print(f"new label sets ({rounds} interleaved rounds of {calls} calls)")
    print(f"  {'accepted (a new series)':<36} {statistics.median(accepted_costs):6.2f} us   1.00x")
    print(
        f"  {'rejected (past the cardinality limit)':<36} {statistics.median(rejected_costs):6.2f} us   "
        f"{statistics.median(ratios):4.2f}x  (min {min(ratios):.2f}, max {max(ratios):.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls: a smoke run")
    args = parser.parse_args()
    calls, rounds = (2_000, 3) if args.quick else (50_000, 9)
    repeated(calls, rounds)
    new_label_sets(calls // 10, rounds)
    reset()


if __name__ == "__main__":
    main()
