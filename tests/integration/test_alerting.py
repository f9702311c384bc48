"""Rules, Alertmanager and dashboards, proven with the real tools and on the demo's data
(`promtool check rules` and `promtool test rules` run in test_stack_files.py)."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from helpers import STRICT_PROMETHEUS, dashboard_queries, wait_for, with_all_variables
from servers import (
    ALERTMANAGER_TEMPLATE,
    PROMETHEUS_DIR,
    ROOT,
    RULE_FILES,
    Alertmanager,
    Prometheus,
    Webhook,
    render_env,
    require_binary,
)
from trading_telemetry import MetricsServer, init_metrics_exporter, reset
from trading_telemetry._objectives import le_matcher
from trading_telemetry.catalog import Plane
from trading_telemetry.demo import run_demo

pytestmark = pytest.mark.integration

ALERT_TESTS = PROMETHEUS_DIR / "tests" / "alerts_test.yml"


def alert_names() -> list[str]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "rules" / "alerts.yml").read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def _le_and_quantile_matchers(expr: str) -> list[str]:
    """The values an expression's `le` and `quantile` matchers compare with."""
    return re.findall(r'\b(?:le|quantile)\s*(?:=|!=|=~|!~)\s*"([^"]*)"', expr)


def test_queries_match_bounds_only_by_the_spelling_every_path_stores() -> None:
    """No dashboard or rule matches a bucket or quantile by a literal value but "+Inf": Prometheus 3 stores
    a scraped bound 1 as le="1.0" and its OTLP receiver as le="1", so only "+Inf" is spelled alike."""
    assert _le_and_quantile_matchers('x_bucket{le="1", job="a"} or y{quantile =~ "0.5"}') == ["1", "0.5"]
    exprs = [expr for _, _, expr in dashboard_queries()]
    exprs += [p.read_text() for p in (ROOT / "grafana" / "dashboards").glob("*.json")]  # JSON: \" for "
    exprs += [r["expr"] for f in RULE_FILES for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"]]
    found = [value for expr in exprs for value in _le_and_quantile_matchers(expr.replace('\\"', '"'))]
    # An objective's threshold bucket is matched by every spelling of its bound (le_matcher).
    spelled_alike = {v for v in found if f'"{v}"' in le_matcher(float(v.split("|")[0].replace("\\", "")))}
    assert set(found) - spelled_alike <= {"+Inf"}, found
    assert le_matcher(1.0) == 'le=~"1\\\\.0|1"'
    assert le_matcher(0.25) == 'le="0.25"'
    assert le_matcher(1e-05) == 'le=~"1e\\\\-05|0\\\\.00001"'
    assert any("histogram_quantile" in expr for expr in exprs)


SHAPES_TESTS = PROMETHEUS_DIR / "tests" / "histogram_shapes_test.yml"
# histogram_quantile(q, sum[ by (L)] (rate(NAME[w]))) or histogram_quantile(q, sum by (le[, L]) (rate(NAME_bucket[w])))
BOTH_SHAPES = re.compile(
    r"\s*histogram_quantile\((?P<q>[0-9.]+), sum(?: by \((?P<by>[^)]*)\))? \(rate\((?P<name>\w+)\[(?P<w>\w+)\]\)\)\)"
    r"\s+or\s+histogram_quantile\((?P=q), sum by \((?P<classic_by>[^)]*)\) \(rate\((?P=name)_bucket\[(?P=w)\]\)\)\)\s*"
)


# The documented quantile rules and the labels they record (docs/dashboards-and-alerts.md).
QUANTILE_RULE_LABELS = {
    "source_symbol:data_freshness_seconds:p95_5m": "source, symbol",
    "strategy_order_type:orders_total_fill_latency_seconds:p95_5m": "strategy, order_type",
    "trading:strategy_qp_solve_time_seconds:p95_5m": None,
}


def _records() -> dict[str, str]:
    groups = [g for f in RULE_FILES for g in yaml.safe_load(f.read_text())["groups"]]
    return {r["record"]: r["expr"] for g in groups for r in g["rules"] if "record" in r}


def test_quantile_rules_read_both_histogram_shapes() -> None:
    """Every rule over a histogram takes the quantile of its native histogram or else of its classic buckets,
    with the same quantile, window and labels on both sides, so the recorded labels are those of before."""
    quantiles = {name: expr for name, expr in _records().items() if "histogram_quantile" in expr}
    assert set(quantiles) == set(QUANTILE_RULE_LABELS)
    for name, expr in quantiles.items():
        match = BOTH_SHAPES.fullmatch(expr)
        assert match, (name, expr)
        assert match["classic_by"] == ", ".join(["le", *([match["by"]] if match["by"] else [])]), (name, expr)
        assert match["by"] == QUANTILE_RULE_LABELS[name], (name, expr)


def test_every_quantile_rule_is_tested_on_native_series_only() -> None:
    """Each quantile rule, directly or through the alert built on it, has a promtool case whose input is
    native histograms only."""
    alerts = {
        rule["alert"]: rule["expr"]
        for group in yaml.safe_load((PROMETHEUS_DIR / "rules" / "alerts.yml").read_text())["groups"]
        for rule in group["rules"] if "alert" in rule
    }  # fmt: skip
    evaluated = []
    for test in yaml.safe_load(SHAPES_TESTS.read_text())["tests"]:
        if all("{{" in s["values"] and "_bucket" not in s["series"] for s in test["input_series"]):
            evaluated += [case["expr"] for case in test.get("promql_expr_test", [])]
            evaluated += [alerts[case["alertname"]] for case in test.get("alert_rule_test", []) if case["exp_alerts"]]
    for name, expr in _records().items():
        if "histogram_quantile" in expr:
            assert any(name in e for e in evaluated), f"{name} is never tested on native histograms only"


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    """Each alert has a promtool case where it fires and one where it must not."""
    cases = [
        case for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"] for case in test.get("alert_rule_test", [])
    ]
    for name in alert_names():
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in mine), f"{name} is never tested firing"
        assert any(not c["exp_alerts"] for c in mine), f"{name} is never tested not firing"


def test_alerts_carry_severity_summary_description_and_runbook() -> None:
    """Every alert has a severity label and the three annotations."""
    groups = yaml.safe_load((PROMETHEUS_DIR / "rules" / "alerts.yml").read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"] if "alert" in r):
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]


def test_documented_commission_name_is_a_recording_rule() -> None:
    """orders_commission_total_usd, the specification's name no counter can carry, is recorded from the counter."""
    groups = yaml.safe_load((PROMETHEUS_DIR / "rules" / "recording.yml").read_text())["groups"]
    records = {r["record"]: r["expr"] for g in groups for r in g["rules"] if "record" in r}
    assert records["orders_commission_total_usd"] == "orders_commission_usd_total"


def _amtool_check(rendered: str) -> subprocess.CompletedProcess[str]:
    path = ROOT / ".cache" / "alertmanager-rendered.yml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(rendered)
    return subprocess.run([require_binary("amtool"), "check-config", str(path)],
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip


def _awks() -> list[tuple[str, ...]]:
    """Debian's awk (mawk) and busybox awk, the one in the Alertmanager image compose runs."""
    return [("awk",), (require_binary("busybox", "busybox"), "awk")]


def test_alertmanager_config_renders_and_passes_amtool() -> None:
    """The template, rendered by render-env.awk with nothing set and with every receiver set, passes
    `amtool check-config`; mawk and busybox awk render it identically."""
    template = ALERTMANAGER_TEMPLATE.read_text()
    full = {
        "ALERT_WEBHOOK_URL": "https://relay.example/alerts?token=a&b=c",
        "SLACK_WEBHOOK_URL": "https://hooks.slack.example/services/T/B/X",
        "SLACK_CHANNEL": "#desk",
        "PAGERDUTY_ROUTING_KEY": "0123456789abcdef",
        "PAGERDUTY_URL": "https://events.pagerduty.example/v2/enqueue",
        "SMTP_SMARTHOST": "smtp.example:587",
        "SMTP_FROM": "am@example.com",
        "SMTP_USERNAME": "am",
        "SMTP_PASSWORD": "pa$$word",
        "ALERT_EMAIL_TO": "desk@example.com",
    }
    for env in ({}, full):
        rendered = [render_env(template, env, awk) for awk in _awks()]
        assert rendered[0] == rendered[1]
        assert "${" not in json.dumps(yaml.safe_load(rendered[0]))
        done = _amtool_check(rendered[0])
        assert done.returncode == 0, done.stdout + done.stderr
    assert "0123456789abcdef" not in template, "no secret is committed"


def _keys(node: Any) -> set[str]:
    """Every mapping key anywhere in a parsed YAML document."""
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in _keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in _keys(v)}
    return set()


HOSTILE = {
    # A quote and a newline, to end the URL string and add a proxy of the attacker's.
    "ALERT_WEBHOOK_URL": 'https://relay.example/a"\n        proxy_url: "http://attacker.example:3128',
    "SLACK_CHANNEL": '#desk"\n  smtp_smarthost: "attacker.example:25',
    # A legitimate password with every character YAML double quotes treat specially.
    "SMTP_PASSWORD": 'p"a\\ss\\"w\to\x01rd\\n${X}',
    "SMTP_USERNAME": "am\r\nBcc: attacker@example.com",
}


def test_environment_values_cannot_inject_alertmanager_configuration() -> None:
    """Hostile receiver values come out as exactly the strings given, in their own fields, with both awks:
    no injected key, no changed field; a legitimate password full of quotes and backslashes passes amtool."""
    template = ALERTMANAGER_TEMPLATE.read_text()
    for awk in _awks():
        config = yaml.safe_load(render_env(template, HOSTILE, awk))
        assert "proxy_url" not in _keys(config)
        assert config["global"]["smtp_smarthost"] == "127.0.0.1:9"
        assert config["global"]["smtp_auth_password"] == HOSTILE["SMTP_PASSWORD"]
        assert config["global"]["smtp_auth_username"] == HOSTILE["SMTP_USERNAME"]
        webhooks = [w["url"] for r in config["receivers"] for w in r.get("webhook_configs", [])]
        assert webhooks
        assert set(webhooks) == {HOSTILE["ALERT_WEBHOOK_URL"]}
        channels = {s["channel"] for r in config["receivers"] for s in r.get("slack_configs", [])}
        assert channels == {HOSTILE["SLACK_CHANNEL"]}
    password_only = render_env(template, {"SMTP_PASSWORD": HOSTILE["SMTP_PASSWORD"]})
    done = _amtool_check(password_only)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_placeholder_is_a_whole_double_quoted_string() -> None:
    """render-env.awk escapes for double-quoted YAML only, and substitutes only quoted placeholders."""
    lines = [line for line in ALERTMANAGER_TEMPLATE.read_text().splitlines() if not line.lstrip().startswith("#")]
    placeholders = re.findall(r".?\$\{[^}]*\}.?", "\n".join(lines))
    assert placeholders
    assert all(p.startswith('"') and p.endswith('"') for p in placeholders), placeholders


def test_unset_receivers_stay_on_this_machine() -> None:
    """With nothing configured every receiver points at the loopback discard port."""
    rendered = yaml.safe_load(render_env(ALERTMANAGER_TEMPLATE.read_text(), {}))
    urls = re.findall(r"https?://[^\"' ]+", json.dumps(rendered))
    assert urls
    assert all(u.startswith("http://127.0.0.1:9/") for u in urls), urls
    assert rendered["global"]["smtp_smarthost"] == "127.0.0.1:9"


def test_kill_switch_inhibits_the_alerts_it_explains() -> None:
    """An inhibition rule silences drawdown, PnL and rejection alerts while a kill switch alert fires."""
    config = yaml.safe_load(render_env(ALERTMANAGER_TEMPLATE.read_text(), {}))
    (rule,) = [r for r in config["inhibit_rules"] if "KillSwitchTripped" in str(r["source_matchers"])]
    targets = str(rule["target_matchers"])
    for name in ("PnLDrawdown", "PnLLoss", "OrderRejectionRatioHigh", "RiskRejectionsSpike"):
        assert name in targets
    assert config["route"]["group_by"] == ["alertname", "service"]
    severities = {str(r["matchers"]) for r in config["route"]["routes"]}
    assert severities == {"['severity=\"critical\"']", "['severity=\"warning\"']", "['severity=\"info\"']"}


# --- proof on real data -------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_state() -> None:
    """Overrides the unit tests' reset-per-test: the demo below lives for the module."""


@pytest.fixture(scope="module")
def live(
    prometheus_factory: Callable[..., Prometheus], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Prometheus, Alertmanager, Webhook]]:
    """The demo session scraped by Prometheus with our rules, alerting a real Alertmanager."""
    reset()
    webhook = Webhook()
    alertmanager = Alertmanager(tmp_path_factory.mktemp("alertmanager"), {"ALERT_WEBHOOK_URL": webhook.url})
    for plane in Plane:
        init_metrics_exporter(plane, config=STRICT_PROMETHEUS)
    stop = threading.Event()
    ready: list[MetricsServer] = []
    thread = threading.Thread(
        target=run_demo,
        kwargs={
            "duration": 600,
            "seed": 3,
            "rate": 1000,
            "base_port": 0,
            "stop": stop,
            "quiet": True,
            "servers_ready": ready.extend,
        },
        daemon=True,
    )
    thread.start()
    try:
        wait_for("the demo's servers", lambda: len(ready) == 3, timeout=20)
        prom = prometheus_factory(
            {"planes": [f"127.0.0.1:{s.port}" for s in ready]},
            rule_files=RULE_FILES,
            alertmanagers=[f"127.0.0.1:{alertmanager.port}"],
        )
        prom.wait_for_scrapes(targets=3, samples=5)
        yield prom, alertmanager, webhook
    finally:
        stop.set()
        thread.join(timeout=30)
        alertmanager.stop()
        webhook.close()
        reset()


@pytest.mark.parametrize(("board", "title", "expr"), dashboard_queries(), ids=lambda x: str(x)[:60])
def test_every_dashboard_query_returns_data(live: tuple[Prometheus, Alertmanager, Webhook], board: str, title: str,
                                            expr: str) -> None:  # fmt: skip
    """Each query of each panel returns at least one series on the demo's data."""
    prom = live[0]
    query = with_all_variables(expr)
    found = wait_for(f"data for {board} / {title}", lambda: prom.query(query), timeout=60, interval=1.0)
    assert found


def test_kill_switch_alert_fires_and_reaches_alertmanager(live: tuple[Prometheus, Alertmanager, Webhook]) -> None:
    """The demo trips its drawdown kill switch: KillSwitchTripped fires in Prometheus, Alertmanager lists
    it, and the configured webhook receives it."""
    prom, alertmanager, webhook = live

    def firing() -> list[dict[str, Any]]:
        alerts = prom.api("alerts")["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "KillSwitchTripped" and a["state"] == "firing"]

    (alert,) = wait_for("KillSwitchTripped firing in Prometheus", firing, timeout=120, interval=1.0)
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["switch_type"] == "drawdown"

    def listed() -> list[dict[str, Any]]:
        return [a for a in alertmanager.alerts() if a["labels"]["alertname"] == "KillSwitchTripped"]

    (listed_alert,) = wait_for("KillSwitchTripped in Alertmanager", listed, timeout=60)
    assert listed_alert["annotations"]["summary"] == "Kill switch tripped: drawdown"
    assert listed_alert["status"]["state"] in ("active", "suppressed")
    assert "on-call" in [r["name"] for r in listed_alert["receivers"]]

    def delivered() -> list[dict[str, Any]]:
        return [p for p in webhook.received if p["commonLabels"].get("alertname") == "KillSwitchTripped"]

    (payload, *_) = wait_for("the webhook notification", delivered, timeout=60)
    assert payload["status"] == "firing"
    assert payload["receiver"] == "on-call"
