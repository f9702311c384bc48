"""The catalog's benchmark scripts run (a quick smoke run each): a script that no longer runs measures nothing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # each runs a script in a process of its own

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def quick_run(script: str, *args: str) -> str:
    return subprocess.run([sys.executable, str(BENCHMARKS / script), "--quick", *args],
                          capture_output=True, text=True, timeout=600, check=True).stdout  # fmt: skip


def test_the_catalog_file_benchmark_refuses_every_hostile_file_with_a_catalog_error() -> None:
    """Each hostile file's line ends in a CatalogError with its wall time and peak RSS; the valid one loads."""
    out = quick_run("bench_catalog_file.py")
    rows = [line for line in out.splitlines() if line.startswith("  ") and not line.strip().startswith("file")]
    assert len(rows) == 9, out
    for row in rows:
        match = re.search(r"\s([\d,]+)\s+([\d.]+)\s+([\d.]+)\s+(-?[\d.]+)\s+(accepted|CatalogError: FILE: .+)$", row)
        assert match is not None, row
        assert float(match[3]) > 0, row
        assert (match[5] == "accepted") == row.strip().startswith("1,000 valid entries"), row


def test_the_unknown_keys_benchmark_prints_every_cost() -> None:
    """The benchmark prints the accepted call's cost and each unknown-key cost with its ratio."""
    out = quick_run("bench_unknown_keys.py")
    for what in ("accepted inc", "production, unknown key", "strict, unknown key", "cache miss, 14 keys",
                 "cache miss, 1000 keys", "cache hit"):  # fmt: skip
        (line,) = [line for line in out.splitlines() if what in line]
        assert " us" in line, line
