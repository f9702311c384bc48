from __future__ import annotations

import re
from pathlib import Path

import pytest

from trading_telemetry import InvalidValueError, TelemetryConfig, catalog, init_metrics_exporter
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


@pytest.mark.usefixtures("built_in_catalog")
def test_the_catalog_file_example_loads_with_every_field_it_shows(tmp_path: Path) -> None:
    """The README's catalog file example (min, max and integral included) loads and means what its comments say."""
    section = README.read_text().split("### Extending the catalog", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "desk.yaml"
    path.write_text(example)
    catalog.load_file(str(path))
    feed = catalog.lookup("feed_state")
    assert feed is not None
    assert (feed.min_value, feed.max_value, feed.integral) == (0.0, 2.0, True)
    metrics = init_metrics_exporter("data_plane", config=TelemetryConfig(metrics_exporters=(), strict=True))
    metrics.set("feed_state", 2, source="ibkr_rt")
    for bad in (1.5, 3):
        with pytest.raises(InvalidValueError, match="out of range"):
            metrics.set("feed_state", bad, source="ibkr_rt")
