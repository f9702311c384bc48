"""The library as a user installs it: `python -m build` makes a wheel and an sdist; the
wheel goes into a fresh venv with the newest OTel SDK our ranges allow, and the seed's
usage example runs there and serves its metrics."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SEED_EXAMPLE = """
import asyncio, urllib.request
from trading_telemetry import init_metrics_exporter, start_metrics_server

async def main() -> None:
    # Initialize metrics
    metrics = init_metrics_exporter("data_plane")
    # Track metrics
    metrics.inc("ticks_received", source="ibkr_rt", symbol="SPY")
    metrics.observe("data_freshness", 0.150, source="ibkr_rt", symbol="SPY")
    metrics.set("completeness_score", 0.95, symbol="SPY")
    # Start metrics server
    server = await start_metrics_server(metrics, port=0)
    print(urllib.request.urlopen(server.url + "/metrics", timeout=10).read().decode())
    server.close()

asyncio.run(main())
"""


def test_the_wheel_installs_beside_the_newest_sdk_and_runs_the_seed_example(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--sdist", "--outdir", str(dist), str(ROOT)],
                   check=True, capture_output=True, timeout=600)  # fmt: skip
    (wheel,) = dist.glob("trading_telemetry-*.whl")
    assert list(dist.glob("trading_telemetry-*.tar.gz"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "trading_telemetry/py.typed" in names
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, str(wheel)], check=True, capture_output=True, timeout=600)
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([str(venv / "bin" / "python"), "-c", SEED_EXAMPLE], capture_output=True, text=True,
                          timeout=120, check=False, cwd=tmp_path, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'data_ticks_received_total{service="data_plane",source="ibkr_rt",symbol="SPY"} 1.0' in done.stdout
    assert "data_completeness_score" in done.stdout
    cli = subprocess.run([str(venv / "bin" / "trading-telemetry"), "catalog"], capture_output=True, text=True,
                         timeout=60, check=True, env=env)  # fmt: skip
    assert "`data_ticks_received_total`" in cli.stdout
