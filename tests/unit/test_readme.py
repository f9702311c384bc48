from __future__ import annotations

import re
from pathlib import Path

from trading_telemetry._docs import render_readme
from trading_telemetry.catalog import CATALOG

README = Path(__file__).resolve().parents[2] / "README.md"


def test_generated_sections_match_the_code() -> None:
    """The README's settings and catalog tables are what the code generates (fix: `make docs`)."""
    text = README.read_text()
    assert render_readme(text) == text, "README drifted from the catalog or settings: run `make docs`"


def test_catalog_table_names_every_metric() -> None:
    """Every catalog metric appears in the README under its exposed name."""
    text = README.read_text()
    for s in CATALOG:
        assert f"`{s.prometheus_name}`" in text


def test_quick_start_has_exactly_two_commands() -> None:
    """The quick start is two commands: one runs the demo, one runs the tests."""
    section = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    assert commands == ["make demo", "make test"]


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run calls the quick start's test command."""
    ci = (README.parent / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, flags=re.M)


def test_alert_table_lists_every_alert() -> None:
    """The README's alert table has a row for every alert in prometheus/rules/alerts.yml."""
    import yaml

    groups = yaml.safe_load((README.parent / "prometheus" / "rules" / "alerts.yml").read_text())["groups"]
    text = README.read_text()
    for rule in (r for g in groups for r in g["rules"] if "alert" in r):
        assert f"| `{rule['alert']}` | {rule['labels']['severity']} |" in text, rule["alert"]
