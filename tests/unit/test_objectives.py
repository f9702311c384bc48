"""Objectives in the catalog: declared and checked like any field, turned into burn-rate rules and their
promtool tests (``trading-telemetry rules``); promtool itself runs them in tests/integration/test_stack_files.py."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from trading_telemetry import catalog as cat
from trading_telemetry import cli, reset
from trading_telemetry._objectives import ALERTS, REMAINING, WINDOWS, le_matcher, objective_rules, rendered
from trading_telemetry.catalog import CATALOG, Kind, MetricSpec, Objective, Plane
from trading_telemetry.errors import CatalogError

PROMETHEUS = Path(__file__).resolve().parents[2] / "prometheus"

LATENCY_DESK = {
    "metrics": [
        {"plane": "strategy_plane", "key": "callback_latency", "name": "strategy_callback_latency_seconds",
         "kind": "histogram", "unit": "s", "description": "Strategy callback latency", "labels": ["strategy"],
         "buckets": [0.001, 0.01, 0.1, 1], "min": 0,
         "objective": {"target": 0.999, "window": "4w", "threshold": 0.01}},
        {"plane": "strategy_plane", "key": "callbacks", "name": "strategy_callbacks_total", "kind": "counter",
         "description": "Callbacks run"},
        {"plane": "strategy_plane", "key": "callback_failures", "name": "strategy_callback_failures_total",
         "kind": "counter", "description": "Callbacks that raised",
         "objective": {"target": 0.995, "total": "callbacks", "name": "callback_errors"}},
    ],
}  # fmt: skip


def _histogram(objective: object, buckets: tuple[float, ...] = (0.1, 0.25, 1.0)) -> MetricSpec:
    return MetricSpec(Plane.ORDER, "route_latency", "orders_route_latency", Kind.HISTOGRAM, "s", "Route latency",
                      ("strategy",), buckets, min_value=0.0, objective=objective)  # type: ignore[arg-type]  # fmt: skip


def _counter(key: str, objective: object = None, plane: Plane = Plane.ORDER) -> MetricSpec:
    return MetricSpec(plane, key, f"{plane.value.split('_')[0]}_{key}", Kind.COUNTER, "{order}", key,
                      ("strategy",), min_value=0.0, objective=objective)  # type: ignore[arg-type]  # fmt: skip


def test_committed_files_are_what_the_generator_writes() -> None:
    """prometheus/rules/objectives.yml and prometheus/tests/objectives_test.yml are the built-in catalog's
    generated rules and tests, byte for byte."""
    for relative, text in rendered(CATALOG).items():
        assert (PROMETHEUS / relative).read_text() == text, f"{relative} drifted from the code: run `make objectives`"


def test_built_in_objectives_are_order_ack_latency_and_rejections() -> None:
    """The built-in objectives: 99 % of submit-to-ack latencies at or under 0.25 s (a bucket bound), and 99 %
    of order intents not rejected, both over 28 days."""
    found = {s.key: s.objective for s in CATALOG if s.objective is not None}
    assert found == {
        "submit_to_ack_latency": Objective(0.99, "28d", threshold=0.25, name="order_ack_latency"),
        "orders_rejected": Objective(0.99, "28d", total="orders_received", name="order_rejections"),
    }
    assert 0.25 in cat.spec(Plane.ORDER, "submit_to_ack_latency").buckets  # type: ignore[operator]


def _rules_of(document: dict[str, Any], objective: str) -> list[dict[str, Any]]:
    (group,) = [g for g in document["groups"] if g["name"] == f"objective_{objective}"]
    return list(group["rules"])


def test_each_objective_records_seven_windows_and_alerts_on_the_workbook_burn_rates() -> None:
    """Each objective records its error ratio over 5m..3d and the budget left over its window, and pages at
    14.4x (1h and 5m) or 6x (6h and 30m), tickets at 3x (1d and 2h) or 1x (3d and 6h), with severity and objective
    labels and the annotations."""
    document = objective_rules(CATALOG)
    assert [g["name"] for g in document["groups"]] == ["objective_order_rejections", "objective_order_ack_latency"]
    rules = _rules_of(document, "order_ack_latency")
    records = [r for r in rules if "record" in r]
    assert [r["record"] for r in records] == [*(f"objective:error_ratio:rate{w}" for w in WINDOWS), REMAINING]
    assert REMAINING == "objective:error_budget_remaining:ratio"
    assert records[-1]["expr"] == (
        '1 - avg_over_time(objective:error_ratio:rate5m{objective="order_ack_latency"}[28d]) / 0.01'
    )
    assert records[2]["expr"] == (  # >= 0: no events, no sample (0/0 is NaN)
        "(\n"
        "  1 - (histogram_fraction(0, 0.25, sum by (service) (rate(orders_submit_to_ack_latency_seconds[1h])))\n"
        '    or sum by (service) (rate(orders_submit_to_ack_latency_seconds_bucket{le="0.25"}[1h]))\n'
        "    / sum by (service) (rate(orders_submit_to_ack_latency_seconds_count[1h])))\n"
        ") >= 0"
    )
    assert all(r["labels"] == {"objective": "order_ack_latency"} for r in records)
    alerts = {r["alert"]: r for r in rules if "alert" in r}
    assert {a: [(p[0], p[1], p[2]) for p in pairs] for a, _, pairs in ALERTS} == {
        "ObjectiveBudgetBurnFast": [(14.4, "1h", "5m"), (6.0, "6h", "30m")],
        "ObjectiveBudgetBurnSlow": [(3.0, "1d", "2h"), (1.0, "3d", "6h")],
    }
    fast = alerts["ObjectiveBudgetBurnFast"]
    assert fast["labels"] == {"severity": "critical", "objective": "order_ack_latency"}
    assert alerts["ObjectiveBudgetBurnSlow"]["labels"]["severity"] == "warning"
    assert 'objective:error_ratio:rate1h{objective="order_ack_latency"} / 0.01 > 14.4' in fast["expr"]
    assert 'objective:error_ratio:rate30m{objective="order_ack_latency"} / 0.01 > 6' in fast["expr"]
    assert "order_ack_latency" in fast["annotations"]["description"]
    assert "$value" in fast["annotations"]["description"]
    rejections = _rules_of(document, "order_rejections")[0]["expr"]
    assert rejections == (
        "(\n  sum by (service) (rate(orders_rejected_total[5m]))\n"
        "    / sum by (service) (rate(orders_received_total[5m]))\n) >= 0"
    )


def test_generated_tests_cover_a_fast_burn_a_slow_burn_and_a_healthy_series() -> None:
    """The promtool file tests each objective three ways: the page silent, then firing, on a fast burn; a
    ticket but no page on a slow burn, and the budget overspent; nothing on a healthy series, and most of the
    budget left."""
    tests = yaml.safe_load((PROMETHEUS / "tests" / "objectives_test.yml").read_text())
    assert tests["rule_files"] == ["../rules/objectives.yml"]
    cases = [(c["alertname"], bool(c["exp_alerts"])) for t in tests["tests"] for c in t["alert_rule_test"]]
    per_objective = [
        ("ObjectiveBudgetBurnFast", False), ("ObjectiveBudgetBurnFast", True),
        ("ObjectiveBudgetBurnFast", False), ("ObjectiveBudgetBurnSlow", True),
        ("ObjectiveBudgetBurnFast", False), ("ObjectiveBudgetBurnSlow", False),
    ]  # fmt: skip
    assert cases == per_objective * 2
    # The healthy series has a quiet hour (a closed market: no event, so no ratio) in its middle.
    quiet = [s for t in tests["tests"] for s in t["input_series"] if "+0x59 " in s["values"]]
    assert len(quiet) == 4  # both series of each objective
    # The budget left: 3.5 budgets spent on the slow burn (-2.5 left), a tenth on the healthy series (0.9 left).
    remaining = [
        (q["expr"], q["exp_samples"][0]["value"]) for t in tests["tests"] for q in t.get("promql_expr_test", [])
    ]
    assert remaining == [
        (f'round({REMAINING}{{objective="{name}"}}, 0.001)', value)
        for name in ("order_rejections", "order_ack_latency")
        for value in (-2.5, 0.9)
    ]


def _refusal(specs: list[MetricSpec]) -> str:
    with pytest.raises(CatalogError) as refused:
        cat.extend(specs, where="desk.yml")
    return str(refused.value)


def test_a_threshold_must_be_a_bucket_bound() -> None:
    """A latency threshold that is no bucket bound is refused, naming entry, field, value and the bounds."""
    message = _refusal([_histogram(Objective(0.99, threshold=0.3))])
    assert message.startswith("desk.yml: metrics entry 1 ('route_latency'): objective: threshold: 0.3: ")
    assert "must be one of the metric's bucket bounds (0.1, 0.25, 1.0)" in message
    cat.extend([_histogram(Objective(0.99, threshold=0.25))])
    assert cat.spec(Plane.ORDER, "route_latency").objective == Objective(0.99, threshold=0.25)


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        ([_histogram(Objective(0.9, threshold=0.25))], "objective: target: 0.9: expected a fraction"),
        ([_histogram(Objective(1.0, threshold=0.25))], "objective: target: 1.0: expected a fraction"),
        ([_histogram(Objective(0.99, window="2d", threshold=0.25))], "objective: window: '2d': expected"),
        ([_histogram(Objective(0.99, window="28x", threshold=0.25))], "objective: window: '28x': expected"),
        ([_histogram(Objective(0.99))], "objective: threshold: required on a histogram"),
        ([_histogram(Objective(0.99, total="x", threshold=0.25))], "objective: total: 'x': a histogram's"),
        ([_histogram({"target": 0.99, "threshold": 0.25, "quantile": 0.99})], "objective: unknown field 'quantile'"),
        ([_histogram({"threshold": 0.25})], "objective: target: required"),
        ([_histogram("99%")], "objective: '99%': expected a mapping"),
        ([_counter("route_errors", Objective(0.99))], "objective: total: required on a counter"),
        ([_counter("route_errors", Objective(0.99, threshold=1.0))], "objective: threshold: 1.0: a counter's"),
        ([_counter("route_errors", Objective(0.99, total="nothing"))], "objective: total: 'nothing': expected the key"),
        ([_counter("route_errors", Objective(0.99, total="route_errors"))], "objective: total: 'route_errors': "),
        ([_counter("route_errors", Objective(0.99, total="ticks_received"))], "objective: total: 'ticks_received'"),
        ([_counter("route_errors", Objective(0.99, total="submit_to_ack_latency"))], "expected the key of another"),
        (
            [_counter("route_errors", Objective(0.99, total="orders_received", name="order_rejections"))],
            "objective: name: 'order_rejections': the objective of 'orders_rejected' has it",
        ),
    ],
)
def test_a_bad_objective_is_refused_naming_entry_field_and_value(specs: list[MetricSpec], expected: str) -> None:
    """Each mistake in an objective raises CatalogError naming the source, the entry, the objective's field and
    its value; nothing is added."""
    message = _refusal(specs)
    assert message.startswith("desk.yml: metrics entry 1 ("), message
    assert expected in message, message
    assert cat.effective_catalog() == CATALOG


def test_a_total_declared_later_in_the_same_extension_is_found() -> None:
    """An error-ratio objective may name a total counter declared after it in the same extension."""
    cat.extend([_counter("route_errors", Objective(0.995, total="routes")), _counter("routes")])
    assert cat.spec(Plane.ORDER, "route_errors").objective == Objective(0.995, total="routes")


@given(target=st.floats(min_value=0.5, max_value=1.5, allow_nan=False))
def test_any_target_is_accepted_exactly_when_a_page_can_fire(target: float) -> None:
    """A target is accepted when every event bad would burn the budget faster than 14.4x (and at most 0.99999),
    and refused otherwise, never with another error."""
    reset()
    accepted = 1 - 1 / 14.4 < target <= 0.99999
    if accepted:
        cat.extend([_histogram(Objective(target, threshold=0.25))])
        assert cat.spec(Plane.ORDER, "route_latency").objective == Objective(target, threshold=0.25)
    else:
        with pytest.raises(CatalogError, match="objective: target"):
            cat.extend([_histogram(Objective(target, threshold=0.25))])


@given(bound=st.floats(min_value=1e-9, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_the_le_matcher_matches_every_spelling_of_the_bound_and_no_other_bound(bound: float) -> None:
    """The threshold's ``le`` matcher matches the bound as a scrape stores it (Go's shortest form, ".0" on a
    whole number) and as the OTLP receiver does (no exponent), and each spelling it accepts reads as the bound."""
    matcher = le_matcher(bound)
    found = re.fullmatch(r'le(=~?)"(.*)"', matcher)
    assert found is not None
    pattern = found[2].replace("\\\\", "\\") if found[1] == "=~" else re.escape(found[2])
    spellings = [s.replace("\\", "") for s in found[2].replace("\\\\", "\\").split("|")]
    assert all(float(s) == bound for s in spellings)
    positional = format(Decimal(repr(bound)), "f")
    positional = positional.rstrip("0").rstrip(".") if "." in positional else positional
    assert re.fullmatch(pattern, positional), (matcher, positional)
    go = spellings[0]
    assert "." in go or "e" in go
    assert not re.fullmatch(pattern, repr(bound * 2)), matcher


def test_a_desk_file_declares_objectives_and_rules_writes_their_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With TRADING_TELEMETRY_CATALOG naming a file with two objectives, `trading-telemetry rules --out DIR`
    writes the built-in and the desk's rule groups and their tests."""
    path = tmp_path / "desk.yml"
    path.write_text(yaml.safe_dump(LATENCY_DESK))
    monkeypatch.setenv("TRADING_TELEMETRY_CATALOG", str(path))
    assert cli.main(["rules", "--out", str(tmp_path / "out")]) == 0
    assert "rules for 4 objectives" in capsys.readouterr().out
    rules = yaml.safe_load((tmp_path / "out" / "rules" / "objectives.yml").read_text())
    names = [g["name"] for g in rules["groups"]]
    assert names == ["objective_order_rejections", "objective_order_ack_latency",
                     "objective_callback_latency", "objective_callback_errors"]  # fmt: skip
    latency = _rules_of(rules, "callback_latency")
    assert 'strategy_callback_latency_seconds_bucket{le="0.01"}[5m]' in latency[0]["expr"]
    assert "/ 0.001 > 14.4" in latency[-2]["expr"]
    assert (
        "99.9% of strategy_callback_latency_seconds at or under 0.01s over 4w"
        in (latency[-2]["annotations"]["description"])
    )
    errors = _rules_of(rules, "callback_errors")[0]["expr"]
    assert (
        "rate(strategy_callback_failures_total[5m]))\n    / sum by (service) (rate(strategy_callbacks_total[5m]))"
        in (errors)
    )
    tests = yaml.safe_load((tmp_path / "out" / "tests" / "objectives_test.yml").read_text())
    assert len(tests["tests"]) == 4 * 3


def test_a_desk_file_with_a_bad_threshold_fails_rules_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A desk file whose threshold is not a bucket bound makes `rules` exit 2 with the file, entry, field and
    value, and write nothing."""
    desk = {"metrics": [dict(LATENCY_DESK["metrics"][0], objective={"target": 0.99, "threshold": 0.02})]}
    path = tmp_path / "desk.yml"
    path.write_text(yaml.safe_dump(desk))
    monkeypatch.setenv("TRADING_TELEMETRY_CATALOG", str(path))
    assert cli.main(["rules", "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert f"{path}: metrics entry 1 ('callback_latency'): objective: threshold: 0.02: must be one of" in error
    assert not (tmp_path / "out").exists()


def test_the_documented_example_loads_with_both_objectives(tmp_path: Path) -> None:
    """docs/dashboards-and-alerts.md's Objectives example is a catalog file declaring a latency and an error-ratio
    objective, as its comments say."""
    text = (PROMETHEUS.parent / "docs" / "dashboards-and-alerts.md").read_text()
    example = text.split("## Objectives", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "desk.yaml"
    path.write_text(example)
    cat.load_file(str(path))
    assert cat.spec(Plane.STRATEGY, "callback_latency").objective == Objective(0.999, "28d", threshold=0.01)
    assert cat.spec(Plane.STRATEGY, "callback_failures").objective == Objective(
        0.995, "28d", total="callbacks", name="callback_errors"
    )
