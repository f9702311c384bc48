"""The ``trading-telemetry`` command: ``--version``, ``catalog`` with each metric's allowed
label values (built-in and the desk's), and a reader that closes the pipe early."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trading_telemetry import __version__, cli, reset
from trading_telemetry import catalog as cat
from trading_telemetry._docs import catalog_table
from trading_telemetry.catalog import MAX_LABEL_VALUE_LENGTH, Kind, MetricSpec, Plane

DESK = {
    "metrics": [
        {"plane": "strategy_plane", "key": "callback_latency", "name": "strategy_callback_latency_seconds",
         "kind": "histogram", "unit": "s", "description": "Strategy callback latency",
         "labels": ["strategy", "callback"], "buckets": [0.001, 0.01], "min": 0, "native": True},
    ],
    "label_values": {"callback": ["on_quote", "on_bar"], "order_type": ["PEGGED"]},
}  # fmt: skip


def _row(table: str, key: str) -> str:
    (row,) = [line for line in table.splitlines() if f"| `{key}` |" in line]
    return row


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`trading-telemetry --version` prints `trading-telemetry X.Y.Z`, the package's version, and exits 0."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out == f"trading-telemetry {__version__}\n"
    assert re.fullmatch(r"trading-telemetry \d+\.\d+\.\d+\n", out)


def test_catalog_shows_the_built_in_allowed_label_values(capsys: pytest.CaptureFixture[str]) -> None:
    """Each metric's row lists its closed label value sets in their documented order; open labels are not listed."""
    assert cli.main(["catalog"]) == 0
    table = capsys.readouterr().out
    assert "allowed label values (others: any)" in table
    assert "| `direction`: BUY, SELL; `order_type`: MARKET, LIMIT, STOP |" in _row(table, "orders_received")
    assert "`status`: FILLED, PARTIAL_FILL, REJECTED" in _row(table, "orders_filled")
    assert "| `duration`: 1m, 5m, 1h, 1d |" in _row(table, "bars_received")
    assert "| `source`, `symbol` |  |" in _row(table, "ticks_received")


def test_catalog_shows_the_desks_allowed_label_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With TRADING_TELEMETRY_CATALOG the desk's label values show: its own label's, and one added to a built-in set;
    a histogram with native buckets says so beside its classic ones."""
    path = tmp_path / "desk.yaml"
    path.write_text(json.dumps(DESK))
    monkeypatch.setenv("TRADING_TELEMETRY_CATALOG", str(path))
    assert cli.main(["catalog"]) == 0
    table = capsys.readouterr().out
    assert "| `callback`: on_bar, on_quote |" in _row(table, "callback_latency")
    assert "`order_type`: MARKET, LIMIT, STOP, PEGGED |" in _row(table, "orders_submitted")
    assert "| 0.001, 0.01 + native |" in _row(table, "callback_latency")
    assert "+ native" not in _row(table, "submit_to_ack_latency")


def _cells(row: str) -> list[str]:
    """A Markdown table row's cells: split on `|` not escaped by a backslash."""
    return re.split(r"(?<!\\)\|", row)[1:-1]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(
        st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=MAX_LABEL_VALUE_LENGTH),
        min_size=1,
        max_size=5,
        unique=True,
    )
)
def test_any_label_values_keep_one_row_per_metric(values: list[str]) -> None:
    """Whatever label values a desk declares (separators, pipes, newlines, quotes), each metric stays one row of
    eight cells, and a plain value shows as written."""
    reset()
    desk = MetricSpec(Plane.DATA, "desk_depth", "data_desk_depth", Kind.GAUGE, "", "Desk | depth", ("venue",))
    cat.extend([desk], {"venue": values})
    table = catalog_table(cat.effective_catalog(), label_values=True)
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == len(cat.effective_catalog())
    assert all(len(_cells(row)) == 8 for row in rows)
    cell = _cells(_row(table, "desk_depth"))[4]
    assert cell.startswith(" `venue`: ")
    for value in values:
        if value.isalnum():
            assert value in cell


@pytest.mark.integration
def test_catalog_into_a_pipe_closed_after_one_line_exits_0_quietly(tmp_path: Path) -> None:
    """`trading-telemetry catalog | head -1`: the reader closes the pipe after a line; the command exits 0 with
    nothing on stderr. The desk's 1,000 metrics make the table far larger than the pipe holds."""
    long = "Desk gauge " + "x" * 300
    desk = {"metrics": [{"plane": "data_plane", "key": f"desk_{i}", "name": f"data_desk_{i}", "kind": "gauge",
                         "description": f"{long} {i}"} for i in range(1000)]}  # fmt: skip
    path = tmp_path / "desk.yaml"
    path.write_text(json.dumps(desk))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRADING_TELEMETRY_"))}
    env["TRADING_TELEMETRY_CATALOG"] = str(path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "trading_telemetry.cli", "catalog"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        assert proc.stdout.readline() == b"#### Data plane (port 8000)\n"
        proc.stdout.close()  # as head -1 does
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 0, err
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]
    assert err == ""
