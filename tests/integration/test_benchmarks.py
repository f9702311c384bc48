"""The benchmark scripts run (a quick smoke run each): a script that no longer runs measures nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # each runs a script in a process of its own

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def quick_run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCHMARKS / script), "--quick"],
                          capture_output=True, text=True, timeout=600, check=True)  # fmt: skip


def test_bad_input_benchmark_prints_a_ratio_for_every_kind_of_rejected_call() -> None:
    """bench_bad_input.py --quick prints a ratio with its minimum for each kind of rejected call."""
    done = quick_run("bench_bad_input.py")
    for kind in ("unknown key", "label value not a string", "negative increment", "over the cardinality limit",
                 "rejected (past the cardinality limit)"):  # fmt: skip
        (line,) = [line for line in done.stdout.splitlines() if line.strip().startswith(kind)]
        assert "x  (min " in line, line
        assert line.rstrip().endswith(")"), line


def test_export_benchmark_prints_every_ratio() -> None:
    """bench_export.py --quick prints every ratio it measures and finds that the exports carried all."""
    done = quick_run("bench_export.py")
    for what in ("render /metrics", "OTLP collect + encode", "loop p99.9 scraped/quiet", "loop worst scraped/quiet",
                 "memory per counter", "memory per gauge", "memory per histogram", "OrderLifecycle vs"):  # fmt: skip
        (line,) = [line for line in done.stdout.splitlines() if what in line]
        assert "x" in line.split(what)[1], line
    lines = done.stdout.splitlines()
    assert [line.strip() for line in lines if line.strip().startswith("scrape and OTLP")] == [
        "scrape and OTLP in the trading process:", "scrape and OTLP in an export process:",
    ]  # fmt: skip
    short = [line for line in lines if "exports short of the series that existed at their collection's start" in line]
    assert len([line for line in short if "OTLP every 1 s meanwhile" in line]) == 2, short  # both ways
    assert all(" 0 of " in line for line in short), short  # every export carried every series
    for what in ("loop p99.9 scraped+OTLP/quiet", "loop worst scraped+OTLP/quiet"):
        found = [line for line in lines if what in line]
        assert len(found) == 2, found  # the trading process, then the export process
        assert all("x (min " in line for line in found), found
    found = [line for line in lines if "loop worst scraped+OTLP " in line]
    assert len(found) == 2, found
    assert all(" ms (min " in line and "quiet" in line for line in found), found


def test_nautilus_benchmark_prints_the_wall_time_ratio() -> None:
    """bench_nautilus.py --quick prints the backtest's wall time with / without our actor as a ratio."""
    done = quick_run("bench_nautilus.py")
    (line,) = [line for line in done.stdout.splitlines() if "wall time with / without" in line]
    assert "x (min " in line, line
    assert "an order on every quote" in done.stdout


def test_multiprocess_benchmark_prints_its_ratios() -> None:
    """bench_multiprocess.py --quick prints each bound call's ratios and the scrape figures."""
    done = quick_run("bench_multiprocess.py")
    for what in ("bound inc()", "bound set()", "bound observe()"):
        (line,) = [line for line in done.stdout.splitlines() if line.startswith(what)]
        assert len(line.split()) == 6, line  # name (2 words), default, multiprocess, ratio, prometheus_client ratio
    for what in ("running processes", "the workers ended: first scrape", "MultiProcessCollector",
                 "ours (running) / prometheus_client's"):  # fmt: skip
        (line,) = [line for line in done.stdout.splitlines() if what in line]
        assert "ratio" in line or line.rstrip()[-1].isdigit(), line


def test_import_benchmark_prints_both_ratios_and_the_heaviest_modules() -> None:
    """bench_import.py --quick prints both import-time ratios and names trading_telemetry's heaviest modules."""
    done = quick_run("bench_import.py")
    for what in ("import trading_telemetry / import opentelemetry.sdk.metrics:",
                 "quick start's import line / import opentelemetry.sdk.metrics:"):  # fmt: skip
        (line,) = [line for line in done.stdout.splitlines() if what in line]
        assert "x  (min " in line, line
    assert "trading_telemetry" in done.stdout.split("heaviest modules", 1)[1]


def test_native_benchmark_prints_every_ratio_and_bounded_buckets() -> None:
    """bench_native.py --quick prints observe, memory and scrape ratios, and per workload a scale equal to the
    OTel SDK's with at most 160 buckets."""
    done = quick_run("bench_native.py")
    lines = done.stdout.splitlines()

    def line(start: str) -> str:
        (found,) = [text for text in lines if text.strip().startswith(start)]
        return found

    for what in ("native: metrics.observe(key, v, **labels)", "native: bound observe(v)",
                 "classic: metrics.observe(key, v, **labels)", "classic: bound observe(v)", "ours, protobuf:",
                 "ours, text:", "ours, OpenMetrics:"):  # fmt: skip
        assert "x  (min " in line(what), line(what)
    for what in ("ours, native", "ours, classic", "prometheus_client, classic"):
        *_, size, unit = line(what).split()
        assert (size.isdigit(), unit) == (True, "B"), line(what)
    assert "x;  ours native / ours classic: " in line("ours native / prometheus_client classic:")
    header = lines.index(line("workload"))
    rows = [text.split() for text in lines[header + 1 : header + 8]]
    assert [row[0] for row in rows] == ["lognormal"] * 5 + ["uniform", "log-uniform"], rows
    for row in rows:
        scale, sdk_scale, buckets = int(row[-4]), int(row[-3]), int(row[-2])
        assert scale == sdk_scale, row
        assert 0 < buckets <= 160, row
