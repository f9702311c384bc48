"""Grafana dashboards as code, built from the catalog with grafana-foundation-sdk.

    python -m trading_telemetry._dashboards grafana/dashboards     (make dashboards)

writes the JSON Grafana provisions: a trading overview and one dashboard per plane, the
per-plane ones with a panel for every catalog metric. A test fails when the committed
JSON drifts from this code. Needs the ``dashboards`` extra (in ``dev``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import prometheus as gp
from grafana_foundation_sdk.builders import stat as gs
from grafana_foundation_sdk.builders import timeseries as gt
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as m

from trading_telemetry.catalog import Kind, MetricSpec, Plane, effective_catalog

PROMETHEUS = m.DataSourceRef(type_val="prometheus", uid="prometheus")
VARIABLES = ("service", "source", "symbol", "strategy")


@dataclass(frozen=True)
class Hints:
    """How one metric is shown: Grafana unit, series breakdown, thresholds as
    ((value, color), ...) from the base color up."""

    unit: str = "ops"
    by: tuple[str, ...] | None = None
    thresholds: tuple[tuple[float | None, str], ...] = ()


RED_IF_NEGATIVE = ((None, "red"), (0.0, "green"))
HINTS: dict[str, Hints] = {
    "completeness_score": Hints("percentunit", ("symbol",), ((None, "red"), (0.9, "yellow"), (0.95, "green"))),
    "data_freshness": Hints("s", ("source",), ((None, "green"), (0.5, "yellow"), (1.0, "red"))),
    "storage_write_latency": Hints("s", ("event_type",)),
    "total_fill_latency": Hints("s", ("strategy", "order_type"), ((None, "green"), (0.5, "yellow"), (1.0, "red"))),
    "intent_to_submit_latency": Hints("s", ("strategy", "order_type")),
    "submit_to_ack_latency": Hints("s", ("strategy", "order_type")),
    "ack_to_fill_latency": Hints("s", ("strategy", "order_type")),
    "slippage_bps": Hints("suffix: bps", ("strategy", "direction")),
    "commission_usd": Hints("currencyUSD", ("strategy",)),
    "signal_strength": Hints("none", ("strategy",)),
    "qp_solve_time": Hints("s", (), ((None, "green"), (0.25, "yellow"), (0.5, "red"))),
    "portfolio_gross_exposure_usd": Hints("currencyUSD", ()),
    "portfolio_net_exposure_usd": Hints("currencyUSD", ()),
    "portfolio_value_usd": Hints("currencyUSD", ()),
    "pnl_realized_usd": Hints("currencyUSD", ("strategy",), RED_IF_NEGATIVE),
    "pnl_unrealized_usd": Hints("currencyUSD", ("strategy",), RED_IF_NEGATIVE),
    "pnl_total_usd": Hints("currencyUSD", ("strategy",), RED_IF_NEGATIVE),
    "regime_state": Hints("none", ()),
    "kill_switch_active": Hints("none", ("switch_type",)),
}
# Quantiles a histogram panel shows; with native buckets also p99.9, which classic buckets
# place anywhere in their last finite bucket.
QUANTILES = (0.5, 0.95, 0.99)
NATIVE_QUANTILES = (*QUANTILES, 0.999)
REGIME = {"0": ("Calm", "green"), "1": ("Normal", "yellow"), "2": ("Storm", "red")}
KILL_SWITCH = {"0": ("off", "green"), "1": ("ACTIVE", "red")}


def selector(spec: MetricSpec, extra: str = "") -> str:
    """The metric's label filter from the dashboard variables it has labels for."""
    parts = [f'{v}=~"${v}"' for v in VARIABLES if v == "service" or v in spec.labels]
    return "{" + ", ".join(parts + ([extra] if extra else [])) + "}"


def _by(labels: Sequence[str]) -> str:
    return f" by ({', '.join(labels)})" if labels else ""


def _legend(labels: Sequence[str], prefix: str = "") -> str:
    text = " ".join("{{" + label + "}}" for label in labels)
    return f"{prefix} {text}".strip() or prefix or "value"


def queries(spec: MetricSpec) -> list[tuple[str, str]]:
    """(PromQL, legend) pairs that show the metric."""
    hints = HINTS.get(spec.key, Hints())
    by = tuple(spec.labels) if hints.by is None else hints.by
    name = spec.prometheus_name
    if spec.kind is Kind.COUNTER:
        return [(f"sum{_by(by)} (rate({name}{selector(spec)}[$__rate_interval]))", _legend(by))]
    if spec.kind is Kind.GAUGE:
        return [(f"max{_by(by)} ({name}{selector(spec)})" if by or not spec.labels else name, _legend(by))]
    levels = NATIVE_QUANTILES if spec.native else QUANTILES
    out = [(quantile(q, name, selector(spec)), f"p{q * 100:g}") for q in levels]
    if by:
        out.append((quantile(0.95, name, selector(spec), by), _legend(by, "p95")))
    return out


def quantile(q: float, name: str, labels: str, by: Sequence[str] = ()) -> str:
    """The q-quantile of histogram ``name`` over ``by``, read from its native histogram where there is one
    and from its classic ``_bucket`` series for the label sets that have no native one: a metric opted in to
    native buckets is scraped with both and pushed over OTLP as the native one only. Both sides have the
    labels ``by`` after the aggregation, so ``or`` keeps the native result where both answer."""
    native = f"histogram_quantile({q}, sum{_by(by)} (rate({name}{labels}[$__rate_interval])))"
    classic = f"histogram_quantile({q}, sum{_by(('le', *by))} (rate({name}_bucket{labels}[$__rate_interval])))"
    return f"{native} or {classic}"


def _thresholds(steps: Sequence[tuple[float | None, str]]) -> gd.ThresholdsConfig:
    return gd.ThresholdsConfig().mode(m.ThresholdsMode.ABSOLUTE).steps([m.Threshold(v, c) for v, c in steps])


def _mappings(values: dict[str, tuple[str, str]]) -> list[m.ValueMapping]:
    options = {k: m.ValueMappingResult(text=t, color=c, index=i) for i, (k, (t, c)) in enumerate(values.items())}
    return [m.ValueMap(options=options)]


def _targets(pairs: Sequence[tuple[str, str]], exemplars: bool) -> Iterator[gp.Dataquery]:
    for i, (expr, legend) in enumerate(pairs):
        query = gp.Dataquery().expr(expr).legend_format(legend).ref_id(chr(ord("A") + i))
        yield query.exemplar(True) if exemplars else query


def metric_panel(spec: MetricSpec) -> gt.Panel | gs.Panel:
    """The panel for one catalog metric."""
    hints = HINTS.get(spec.key, Hints())
    title = spec.prometheus_name + (" (rate)" if spec.kind is Kind.COUNTER else "")
    description = f"{spec.description}. Key `{spec.key}`; labels: {', '.join(spec.labels) or 'none'}."
    latency = spec.kind is Kind.HISTOGRAM and spec.unit == "s"
    if spec.key in ("regime_state", "kill_switch_active"):
        mappings = _mappings(REGIME if spec.key == "regime_state" else KILL_SWITCH)
        panel: gt.Panel | gs.Panel = gs.Panel().mappings(mappings).color_mode(common.BigValueColorMode.BACKGROUND)
    else:
        panel = gt.Panel().fill_opacity(10)
    panel = panel.title(title).description(description).unit(hints.unit).datasource(PROMETHEUS).span(12).height(8)
    if hints.thresholds:
        panel = panel.thresholds(_thresholds(hints.thresholds))
    for target in _targets(queries(spec), exemplars=latency):
        panel = panel.with_target(target)
    return panel


def _stat(title: str, expr: str, unit: str, *, thresholds: Sequence[tuple[float | None, str]] = (),
          mappings: dict[str, tuple[str, str]] | None = None) -> gs.Panel:  # fmt: skip
    panel = gs.Panel().title(title).unit(unit).datasource(PROMETHEUS).span(4).height(5)
    panel = panel.with_target(gp.Dataquery().expr(expr).ref_id("A").instant())
    if thresholds:
        panel = panel.thresholds(_thresholds(thresholds))
    if mappings:
        panel = panel.mappings(_mappings(mappings))
    return panel


def _timeseries(title: str, pairs: Sequence[tuple[str, str]], unit: str, exemplars: bool = False) -> gt.Panel:
    panel = gt.Panel().title(title).unit(unit).datasource(PROMETHEUS).span(12).height(8).fill_opacity(10)
    for target in _targets(pairs, exemplars):
        panel = panel.with_target(target)
    return panel


def _variables(board: gd.Dashboard) -> gd.Dashboard:
    for name in VARIABLES:
        variable = (
            gd.QueryVariable(name).label(name).datasource(PROMETHEUS).query(f"label_values({name})")
            .multi(True).include_all(True).all_value(".*").refresh(m.VariableRefresh.ON_TIME_RANGE_CHANGED)
        )  # fmt: skip
        board = board.with_variable(variable)
    return board


def _board(uid: str, title: str, description: str) -> gd.Dashboard:
    board = (
        gd.Dashboard(title).uid(uid).description(description).tags(["trading", "trading-telemetry"])
        .time("now-1h", "now").refresh("10s").timezone("browser").editable()
    )  # fmt: skip
    return _variables(board)


PLANE_TITLES = {
    Plane.DATA: ("Data plane", "Market data in: ingestion, quality, validation, storage."),
    Plane.ORDER: ("Order plane", "Execution: the order lifecycle, its latencies, costs and risk checks."),
    Plane.STRATEGY: ("Strategy plane", "Signals, portfolio optimisation, PnL, regime and kill switches."),
}


def plane_dashboard(plane: Plane) -> gd.Dashboard:
    title, description = PLANE_TITLES[plane]
    board = _board(f"trading-{plane.value.replace('_', '-')}", f"Trading / {title}", description)
    for spec in effective_catalog():
        if spec.plane is plane:
            board = board.with_panel(metric_panel(spec))
    return board


def overview_dashboard() -> gd.Dashboard:
    board = _board("trading-overview", "Trading / Overview", "The desk at a glance: data in, orders out, PnL, risk.")
    fill = "orders_total_fill_latency_seconds"
    fill_p95 = quantile(0.95, fill, '{service=~"$service", strategy=~"$strategy", symbol=~"$symbol"}')
    panels = [
        _stat(
            "Ticks / s",
            'sum(rate(data_ticks_received_total{source=~"$source", symbol=~"$symbol"}[$__rate_interval]))',
            "ops",
        ),
        _stat(
            "Fills / s",
            'sum(rate(orders_filled_total{strategy=~"$strategy", symbol=~"$symbol"}[$__rate_interval]))',
            "ops",
        ),
        _stat("Fill latency p95", fill_p95, "s", thresholds=((None, "green"), (0.5, "yellow"), (1.0, "red"))),
        _stat(
            "Total PnL", 'sum(strategy_pnl_total_usd{strategy=~"$strategy"})', "currencyUSD", thresholds=RED_IF_NEGATIVE
        ),
        _stat("Kill switch", "max(strategy_kill_switch_active)", "none", mappings=KILL_SWITCH),
        _stat("Regime", "max(strategy_regime_state)", "none", mappings=REGIME),
        _stat(
            "Order rejection ratio",
            'sum(rate(orders_rejected_total{strategy=~"$strategy"}[$__rate_interval])) '
            '/ sum(rate(orders_received_total{strategy=~"$strategy"}[$__rate_interval]))',
            "percentunit",
            thresholds=((None, "green"), (0.1, "yellow"), (0.2, "red")),
        ),
        _stat(
            "Validation errors / s",
            'sum(rate(data_validation_errors_total{source=~"$source"}[$__rate_interval]))',
            "ops",
        ),
        _stat(
            "Alerts firing",
            'count(ALERTS{alertstate="firing"}) or vector(0)',
            "none",
            thresholds=((None, "green"), (1.0, "red")),
        ),
        _timeseries(
            "PnL by strategy",
            [('sum by (strategy) (strategy_pnl_total_usd{strategy=~"$strategy"})', "{{strategy}}")],
            "currencyUSD",
        ),
        _timeseries(
            "Fill latency p95 by strategy",
            [(quantile(0.95, fill, '{strategy=~"$strategy", symbol=~"$symbol"}', ("strategy",)), "{{strategy}}")],
            "s",
            exemplars=True,
        ),
        _timeseries(
            "Ticks / s by source",
            [('sum by (source) (rate(data_ticks_received_total{source=~"$source"}[$__rate_interval]))', "{{source}}")],
            "ops",
        ),
        _timeseries(
            "Planes reporting (1: uptime moving)",
            [
                (
                    'max by (service, instance) (changes(trading_telemetry_uptime_seconds{service=~"$service"}'
                    "[$__rate_interval]) > bool 0)",
                    "{{service}} {{instance}}",
                )
            ],
            "none",
        ),
    ]
    for panel in panels:
        board = board.with_panel(panel)
    return board


def dashboards() -> dict[str, dict[str, object]]:
    """File name -> dashboard JSON (as Grafana provisions it)."""
    boards = {"overview.json": overview_dashboard()}
    for plane in Plane:
        boards[f"{plane.value.replace('_', '-')}.json"] = plane_dashboard(plane)
    return {name: json.loads(JSONEncoder(sort_keys=True, indent=2).encode(b.build())) for name, b in boards.items()}


def render(document: dict[str, object]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "grafana/dashboards")
    out.mkdir(parents=True, exist_ok=True)
    for name, document in dashboards().items():
        (out / name).write_text(render(document))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
