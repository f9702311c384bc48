"""Per-call cost of `traced` + `timed` against the same work written by hand with OTel.

    .venv/bin/python benchmarks/bench_decorators.py

Prints medians (µs per call) and ratios measured in the same run; the machine's noise
cancels in the ratios. Tracing is on (a span processor that drops every span), so both
versions create a real span and record a real histogram observation and counter add.
"""

from __future__ import annotations

import statistics
import time
import timeit
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from trading_telemetry import TelemetryConfig, init_metrics_exporter, reset, timed, traced

CALLS = 20_000
REPEATS = 9


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def work(strategy: str, symbol: str) -> str:
    return strategy


def median_us(fn: Callable[[], object]) -> float:
    runs = timeit.repeat(fn, number=CALLS, repeat=REPEATS)
    return statistics.median(runs) / CALLS * 1e6


def measure(tracing: bool) -> dict[str, float]:
    reset()
    config = TelemetryConfig(metrics_exporters=())
    metrics = init_metrics_exporter("strategy_plane", config=config, span_exporters=[Discard()] if tracing else ())

    @timed("qp_solve_time", outcome="qp_solve_status")
    @traced(plane="strategy_plane", attributes_from=("strategy", "symbol"))
    def decorated(strategy: str, symbol: str) -> str:
        return strategy

    # The same work by hand with the OTel API: span, duration histogram, outcome counter.
    provider = metrics.sdk.meter_provider
    meter = provider.get_meter("hand")
    histogram = meter.create_histogram("hand_solve_time", unit="s")
    counter = meter.create_counter("hand_solve_status")
    tracer = metrics.tracer

    def by_hand(strategy: str, symbol: str) -> str:
        start = time.perf_counter_ns()
        try:
            if tracer is None:
                result = work(strategy, symbol)
            else:
                with tracer.start_as_current_span("work", attributes={"strategy": strategy, "symbol": symbol}):
                    result = work(strategy, symbol)
        except Exception:
            counter.add(1, {"status": "error", "service": "strategy_plane"})
            raise
        finally:
            histogram.record((time.perf_counter_ns() - start) / 1e9, {"service": "strategy_plane"})
        counter.add(1, {"status": "ok", "service": "strategy_plane"})
        return result

    results = {
        "bare": median_us(lambda: work("OFI", "SPY")),
        "decorated": median_us(lambda: decorated("OFI", "SPY")),
        "by_hand": median_us(lambda: by_hand("OFI", "SPY")),
    }
    reset()
    return results


def main() -> None:
    for tracing in (True, False):
        r = measure(tracing)
        ours, hand = r["decorated"] - r["bare"], r["by_hand"] - r["bare"]
        print(f"tracing {'on ' if tracing else 'off'}: bare {r['bare']:.2f} µs, traced+timed {r['decorated']:.2f} µs, "
              f"hand-written OTel {r['by_hand']:.2f} µs per call")  # fmt: skip
        print(f"    added cost: ours {ours:.2f} µs, by hand {hand:.2f} µs, ratio ours/by-hand {ours / hand:.2f}")


if __name__ == "__main__":
    main()
