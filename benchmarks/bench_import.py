"""What importing the package costs, against importing the OpenTelemetry metrics SDK.

    .venv/bin/python benchmarks/bench_import.py [-n N] [--quick]

Each sample is a fresh interpreter timing one import statement (``time.perf_counter``
around it, so the interpreter's own start-up is left out of both sides). The statements
run in turn, one sample of each per round, so a drift in the machine's speed reaches them
alike; each is reported as its median over N rounds, and the ratios as the median of the
per-round ratios. Bytecode is compiled once before the first round (into a temporary
``PYTHONPYCACHEPREFIX``), as an installed package's is.

The last lines are the heaviest modules the package's import loads, from
``python -X importtime`` (self time, microseconds): where to look when the ratio grows.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

STATEMENTS = {
    "import trading_telemetry": "import trading_telemetry",
    "quick start's import line": "from trading_telemetry import init_metrics_exporter, start_metrics_server",
    "import opentelemetry.sdk.metrics": "import opentelemetry.sdk.metrics",
}
BASELINE = "import opentelemetry.sdk.metrics"
CHILD = "import time\nstart = time.perf_counter()\n{statement}\nprint(time.perf_counter() - start)\n"


def sample(statement: str, env: dict[str, str]) -> float:
    """Seconds the statement took in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", CHILD.format(statement=statement)], env=env, capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    return float(done.stdout.strip())


def heaviest(statement: str, env: dict[str, str], count: int = 10) -> list[tuple[int, str]]:
    """The ``count`` modules with the largest self time when ``statement`` runs."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", statement], env=env, capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    rows = re.findall(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", done.stderr)
    return sorted(((int(us), name) for us, name in rows), reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=21, help="rounds (fresh interpreters per statement); default 21")
    parser.add_argument("--quick", action="store_true", help="3 rounds (the smoke test)")
    args = parser.parse_args()
    rounds = 3 if args.quick else args.n
    with tempfile.TemporaryDirectory() as pycache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = pycache
        for statement in STATEMENTS.values():  # compiles the bytecode
            sample(statement, env)
        times: dict[str, list[float]] = {name: [] for name in STATEMENTS}
        for i in range(rounds):
            names = list(STATEMENTS)
            names = names[i % len(names) :] + names[: i % len(names)]  # each goes first in turn
            for name in names:
                times[name].append(sample(STATEMENTS[name], env))
        top = heaviest(STATEMENTS["import trading_telemetry"], env)
    print(f"{sys.executable} (Python {sys.version.split()[0]}), {rounds} rounds, median import time:")
    for name, values in times.items():
        print(f"  {name:<34} {1000 * statistics.median(values):7.1f} ms")
    base = times[BASELINE]
    for name, values in times.items():
        if name == BASELINE:
            continue
        ratios = [a / b for a, b in zip(values, base, strict=True)]
        spread = f"(min {min(ratios):.2f}, max {max(ratios):.2f})"
        print(f"  {name} / {BASELINE}: {statistics.median(ratios):.2f}x  {spread}")
    print("heaviest modules of `import trading_telemetry` (self time, us):")
    for us, module in top:
        print(f"  {us:7d}  {module}")


if __name__ == "__main__":
    main()
