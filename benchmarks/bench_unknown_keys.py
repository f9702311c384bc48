"""What a stream of distinct unknown keys costs, against an accepted call, in one run.

    .venv/bin/python benchmarks/bench_unknown_keys.py [--quick]

Every key is new, so every call misses the suggestion cache ("did you mean ...?"): in
production mode the drop is counted and the suggestion not computed (the message is read
only by the drop log: for the first 32 distinct keys, then once a minute); in strict mode
each raised error's message is read. Also prints one suggestion's cost on its own, for the order plane's keys and for
a catalog extended to 1,000 keys, and a cache hit's.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import time
from collections.abc import Callable

from trading_telemetry import MeasurementError, TelemetryConfig, init_metrics_exporter, reset
from trading_telemetry._checks import did_you_mean
from trading_telemetry.catalog import plane_specs

SPY = {"source": "ibkr_rt", "symbol": "SPY"}
_fresh = itertools.count()


def per_call_us(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    calls = 2_000 if parser.parse_args().quick else 20_000
    logging.getLogger("trading_telemetry").setLevel(logging.ERROR)  # the drop log once, not in the figures

    reset()
    production = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=()))
    accepted = per_call_us(lambda: production.inc("ticks_received", **SPY), calls)
    unknown = per_call_us(lambda: production.inc(f"tick_recieved_{next(_fresh)}", **SPY), calls)
    reset()
    strict = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=(), strict=True))

    def strict_call() -> None:
        try:
            strict.inc(f"tick_recieved_{next(_fresh)}", **SPY)
        except MeasurementError as error:
            str(error)

    raised = per_call_us(strict_call, calls // 10)
    reset()
    keys = tuple(plane_specs("order_plane"))
    many = tuple(f"desk_metric_{i}" for i in range(1000))
    miss = per_call_us(lambda: did_you_mean(f"order_recieved_{next(_fresh)}", keys), calls // 10)
    miss_many = per_call_us(lambda: did_you_mean(f"desk_metrc_{next(_fresh)}", many), calls // 100)
    hit = per_call_us(lambda: did_you_mean("order_recieved", keys), calls)
    print(f"distinct unknown keys ({calls} calls), per call")
    print(f"  accepted inc(key, **labels)                 {accepted:8.2f} us")
    print(f"  production, unknown key (dropped)           {unknown:8.2f} us  {unknown / accepted:6.1f}x accepted")
    print(f"  strict, unknown key (raised, message read)  {raised:8.2f} us  {raised / accepted:6.1f}x accepted")
    print(f"  suggestion, cache miss, {len(keys)} keys             {miss:8.2f} us")
    print(f"  suggestion, cache miss, {len(many)} keys           {miss_many:8.2f} us")
    print(f"  suggestion, cache hit                       {hit:8.2f} us")


if __name__ == "__main__":
    main()
