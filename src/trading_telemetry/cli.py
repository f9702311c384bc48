"""The ``trading-telemetry`` command: ``demo`` (the three-plane session), ``serve``
(one plane's endpoint), ``config`` (the effective settings), ``catalog`` (the metric
table, with each metric's allowed label values), ``dashboards`` (Grafana dashboards) and
``rules`` (Prometheus burn-rate rules of the objectives, with their promtool tests), the
last three for the effective catalog. Output into a pipe its reader closed early
(``trading-telemetry catalog | head -1``) ends the command quietly, with status 0."""

from __future__ import annotations

import argparse
import os
import sys

from trading_telemetry._version import __version__
from trading_telemetry.catalog import MetricSpec, Plane, effective_catalog, load_file
from trading_telemetry.errors import TradingTelemetryError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trading-telemetry", description="OpenTelemetry metrics for a three-plane trading system."
    )
    parser.add_argument("--version", action="version", version=f"trading-telemetry {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the simulated trading session, serving ports 8000-8002")
    demo.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    demo.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same session")
    demo.add_argument("--rate", type=float, default=200.0, help="market-data ticks per second (default 200)")
    demo.add_argument(
        "--base-port", type=int, default=8000, help="data plane port; order and strategy follow (0: any free)"
    )
    demo.add_argument("--addr", default=None, help="bind address (default TRADING_TELEMETRY_BIND_ADDRESS)")
    serve = sub.add_parser("serve", help="serve one plane's /metrics and /health")
    serve.add_argument("plane", choices=[p.value for p in Plane])
    serve.add_argument("--port", type=int, default=None, help="default: 8000, 8001, 8002 by plane")
    serve.add_argument("--addr", default=None, help="bind address (default TRADING_TELEMETRY_BIND_ADDRESS)")
    sub.add_parser("config", help="print the effective configuration: each variable, its value, where it came from")
    sub.add_parser(
        "catalog",
        help="print the effective metric catalog (built-in and TRADING_TELEMETRY_CATALOG) as Markdown, with each "
        "metric's allowed label values",
    )
    boards = sub.add_parser(
        "dashboards", help="write Grafana dashboards for the effective catalog (needs the `dashboards` extra)"
    )
    boards.add_argument("--out", required=True, help="directory to write the dashboard JSON files to")
    rules = sub.add_parser(
        "rules",
        help="write Prometheus recording and multi-window burn-rate alert rules for every objective in the effective "
        "catalog (DIR/rules/objectives.yml) and their promtool tests (DIR/tests/objectives_test.yml)",
    )
    rules.add_argument("--out", required=True, help="directory to write rules/ and tests/ under")
    return parser


def _effective_catalog() -> tuple[MetricSpec, ...]:
    """The catalog with the desk's file (TRADING_TELEMETRY_CATALOG) added, if one is set."""
    from trading_telemetry._state import current_config

    path = current_config().catalog_path
    if path:
        load_file(path)
    return effective_catalog()


def main(argv: list[str] | None = None) -> int:
    try:
        status = _main(argv)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is met below
    except BrokenPipeError:
        # The reader has gone (`| head`): what it did not read is nobody's. Later writes,
        # and the interpreter's last flush, go nowhere instead of raising again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    return status


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "serve":
            from trading_telemetry.metrics_server import DEFAULT_PORTS, run_server

            return run_server(args.plane, DEFAULT_PORTS[args.plane] if args.port is None else args.port, args.addr)
        if args.command == "config":
            from trading_telemetry.config import TelemetryConfig

            for variable, value, source in TelemetryConfig.describe():
                print(f"{variable:<70} {value:<24} ({source})")
            return 0
        if args.command == "dashboards":
            return _dashboards(args.out)
        if args.command == "rules":
            return _rules(args.out)
        from trading_telemetry._docs import catalog_table

        print(catalog_table(_effective_catalog(), label_values=True))
        return 0
    except BrokenPipeError:
        raise
    except (TradingTelemetryError, OSError) as error:
        print(f"trading-telemetry: {error}", file=sys.stderr)
        return 2


def _dashboards(out: str) -> int:
    _effective_catalog()
    try:
        from trading_telemetry._dashboards import main as write_dashboards
    except ImportError:
        print(
            "trading-telemetry: dashboards need the extra: pip install 'trading-telemetry[dashboards]'", file=sys.stderr
        )
        return 2
    write_dashboards([out])
    print(f"dashboards for {len(effective_catalog())} metrics written to {out}")
    return 0


def _rules(out: str) -> int:
    from trading_telemetry._objectives import objectives, write

    catalog = _effective_catalog()
    for path in write(out, catalog):
        print(f"wrote {path}")
    print(f"rules for {len(objectives(catalog))} objectives")
    return 0


def _demo(args: argparse.Namespace) -> int:
    import signal
    import threading

    from trading_telemetry._state import reset
    from trading_telemetry.demo import run_demo

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        run_demo(
            duration=args.duration, seed=args.seed, rate=args.rate, base_port=args.base_port, addr=args.addr, stop=stop
        )
    finally:
        reset()
    return 0


if __name__ == "__main__":
    sys.exit(main())
