"""What a hostile catalog file (TRADING_TELEMETRY_CATALOG) costs to refuse.

    .venv/bin/python benchmarks/bench_catalog_file.py [--quick] [--python-parser] [--timeout S]

Each file is loaded in a fresh interpreter (``load_file``, as the first plane does),
which prints how the load ended, its wall time, the process's peak RSS, and how much the
load added to the peak RSS the imports had reached. ``--python-parser`` uses PyYAML's
pure-Python scanner and parser instead of libyaml's (PyYAML built without libyaml).
``--quick`` uses smaller big files (for the smoke test). A child that runs past
``--timeout`` seconds is stopped; its address space is capped at 4 GiB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def peak_mb():  # VmHWM: this process's own peak (ru_maxrss may carry the parent's over fork and exec)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024



from trading_telemetry import catalog
from trading_telemetry.errors import CatalogError
if sys.argv[2] == "python":
    from trading_telemetry import _catalog_file
    _catalog_file.LOADER = _catalog_file.loader(_catalog_file._PythonParser)
before = peak_mb()
start = time.perf_counter()
try:
    catalog.load_file(sys.argv[1])
    outcome = "accepted"
except CatalogError as error:
    outcome = "CatalogError: " + str(error).replace(sys.argv[1], "FILE").splitlines()[0]
except BaseException as error:
    outcome = f"{type(error).__name__} (not a CatalogError): {str(error)[:60]}"
wall = time.perf_counter() - start
peak = peak_mb()
print(json.dumps({"outcome": outcome, "wall": wall, "peak_mb": peak, "added_mb": peak - before}))
"""

ENTRY = "  - {{plane: data_plane, key: k{i}, name: data_k{i}, kind: gauge, description: Queue depth {i}}}\n"


def billion_laughs() -> str:
    """Nine levels of nine aliases (9^9 strings once expanded), the key an alias of the last."""
    levels = ["&a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"&{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "metrics:\n  - description: [" + ", ".join(levels) + "]\n    key: *i\n"


def entries(count: int) -> str:
    return "metrics:\n" + "".join(ENTRY.format(i=i) for i in range(count))


def of_size(size: int) -> str:
    """Valid catalog entries up to ``size`` bytes."""
    per = len(ENTRY.format(i=10**6))
    return entries(size // per)


def cases(quick: bool) -> dict[str, Callable[[], str]]:
    big = 5 << 20 if quick else 50 << 20
    many = 10_000 if quick else 100_000
    return {
        "billion laughs (aliases)": billion_laughs,
        f"{big >> 20} MB of entries": lambda: of_size(big),
        f"{many:,} entries": lambda: entries(many),
        f"{many:,} empty entries (- {{}})": lambda: "metrics:\n" + "- {}\n" * many,
        "deep nesting (100,000 [)": lambda: "metrics: " + "[" * 100_000 + "]" * 100_000 + "\n",
        "1 MiB flow list of numbers": lambda: "label_values: {x: [" + "1," * ((1 << 20) // 2 - 20) + "]}\n",
        "a 5,000-digit number": lambda: "metrics:\n  - {min: " + "9" * 5000 + "}\n",
        "UTF-16 text": lambda: "\ufeff" + entries(3),
        "1,000 valid entries (accepted)": lambda: entries(1000),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--python-parser", action="store_true")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    which = "python" if args.python_parser else "default"
    print(f"catalog files, refused or loaded in a fresh interpreter ({which} YAML parser)")
    print(f"  {'file':34} {'bytes':>11} {'wall s':>8} {'peak RSS MB':>12} {'added MB':>9}  outcome")
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in cases(args.quick).items():
            path = Path(tmp) / "catalog.yaml"
            text = make()
            path.write_bytes(text.encode("utf-16") if name.startswith("UTF-16") else text.encode())
            del text
            try:
                done = subprocess.run(
                    [sys.executable, "-c", CHILD, str(path), which],
                    capture_output=True, text=True, timeout=args.timeout, check=False,
                )  # fmt: skip
                lines = done.stdout.strip().splitlines()
                result = json.loads(lines[-1]) if lines else {"outcome": done.stderr.strip()[-120:]}
            except subprocess.TimeoutExpired:
                result = {"outcome": f"stopped after {args.timeout:.0f} s"}
            size = path.stat().st_size
            wall, peak, added = (f"{result[k]:.3f}" if k in result else "-" for k in ("wall", "peak_mb", "added_mb"))
            print(f"  {name:34} {size:>11,} {wall:>8} {peak:>12} {added:>9}  {result['outcome'][:110]}")


if __name__ == "__main__":
    main()
