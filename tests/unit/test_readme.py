"""The README and the pages under docs/: generated parts, examples, links and wording."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import free_port, http_get, wait_for
from trading_telemetry import InvalidValueError, TelemetryConfig, catalog, init_metrics_exporter
from trading_telemetry._docs import SECTIONS, generated_sections, render
from trading_telemetry.catalog import CATALOG

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
MARKERS = {"": "script", "<!-- serves -->": "serves", "<!-- pytest -->": "pytest", "<!-- fragment -->": "fragment"}


def page(name: str) -> str:
    return (ROOT / "docs" / name).read_text()


def prose(text: str) -> str:
    """``text`` without its fenced code blocks, whitespace runs made one space."""
    return " ".join(re.sub(r"^( *)```.*?^\1```", "", text, flags=re.M | re.S).split())


# -- generated parts -------------------------------------------------------------------


def test_generated_sections_match_the_code() -> None:
    """Every page's generated parts (settings, catalog, number of metrics) are what the code generates (fix:
    `make docs`), and each generated part appears on exactly one page."""
    seen: list[str] = []
    for path in PAGES:
        text = path.read_text()
        assert render(text) == text, f"{path.name} drifted from the catalog or settings: run `make docs`"
        seen += generated_sections(text)
    assert sorted(seen) == sorted(SECTIONS)


def test_make_docs_rewrites_the_pages(tmp_path: Path) -> None:
    """`python -m trading_telemetry._docs ROOT` rewrites a stale generated part under ROOT/docs and leaves the
    rest of the page as it was."""
    (tmp_path / "docs").mkdir()
    stale = "# Metrics\n\nbefore\n<!-- BEGIN generated:count -->\n2 metrics\n<!-- END generated:count -->\nafter\n"
    (tmp_path / "docs" / "metrics.md").write_text(stale)
    done = subprocess.run([sys.executable, "-m", "trading_telemetry._docs", str(tmp_path)], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "docs" / "metrics.md").read_text()
    assert text.startswith("# Metrics\n\nbefore\n<!-- BEGIN generated:count -->\n")
    assert text.endswith("<!-- END generated:count -->\nafter\n")
    assert f"has {len(CATALOG)} metrics" in text


def test_catalog_table_names_every_metric() -> None:
    """Every catalog metric appears in docs/metrics.md under its exposed name."""
    text = page("metrics.md")
    for s in CATALOG:
        assert f"`{s.prometheus_name}`" in text


def test_no_number_of_metrics_but_the_generated_one() -> None:
    """No page states a number of metrics outside the generated part that counts the catalog."""
    for path in PAGES:
        text = re.sub(r"<!-- BEGIN generated:(\w+) -->.*?<!-- END generated:\1 -->", "", path.read_text(), flags=re.S)
        stated = re.findall(r"\b\d[\d,]*\s+(?:built-in\s+|catalog\s+)?metrics\b", prose(text))
        assert stated == [], f"{path.name}: {stated}"


# -- the README as a front page ----------------------------------------------------------


def test_readme_is_a_front_page_that_links_every_docs_page() -> None:
    """The README has at most 300 lines and links every page under docs/."""
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    for path in DOCS:
        assert f"(docs/{path.name})" in text, path.name


def test_every_docs_page_opens_with_a_title_and_a_summary() -> None:
    """Each page under docs/ starts with its title, then a paragraph of prose (not a table, list, code or heading)."""
    for path in DOCS:
        lines = path.read_text().splitlines()
        assert lines[0].startswith("# "), path.name
        assert lines[1] == "", path.name
        paragraph = " ".join(lines[2 : lines.index("", 2)])
        assert not paragraph.startswith(("#", "|", "-", "```", "<!--")), path.name
        assert len(paragraph.split()) >= 25, path.name


def test_quick_start_has_exactly_two_commands() -> None:
    """The quick start is two commands: one runs the demo, one runs the tests."""
    section = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, flags=re.M)
    assert re.search(r"^test:", makefile, flags=re.M)


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run calls the quick start's test command."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, flags=re.M)


def test_the_extras_table_names_every_extra_but_dev() -> None:
    """The README's Extras table has a row for each optional dependency pyproject.toml declares (but `dev`)."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    section = pyproject.split("[project.optional-dependencies]\n", 1)[1].split("\n[", 1)[0]
    extras = set(re.findall(r"^([\w-]+) = \[", section, flags=re.M))
    assert {"nautilus", "dashboards", "dev"} <= extras
    text = README.read_text()
    for extra in extras - {"dev"}:
        assert f"| `[{extra}]` |" in text, extra


# -- wording ---------------------------------------------------------------------------


def test_the_specification_is_named_and_said_what_it_is() -> None:
    """No page says "seed" for the original monitoring specification, and on each page its first mention says
    what it is: the README this project was created from."""
    for path in PAGES:
        text = prose(path.read_text())
        assert not re.search(r"(?<![-\w])seeds?(?![\w=])", text, flags=re.I), path.name
        first = text.find("original monitoring specification")
        if first >= 0:
            after = text[first + len("original monitoring specification") :]
            assert after.startswith(" (the README this project was created from"), path.name


# -- links -----------------------------------------------------------------------------


def anchors(text: str) -> set[str]:
    """The anchors GitHub makes of a page's headings (lowercased, punctuation dropped, spaces made dashes,
    repeats numbered)."""
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+?)\s*$", re.sub(r"^( *)```.*?^\1```", "", text, flags=re.M | re.S),
                              flags=re.M):  # fmt: skip
        plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
        slug = "".join(c for c in plain if c in " -_" or unicodedata.category(c)[0] in "LN").replace(" ", "-")
        candidate, n = slug, 0
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


def test_the_anchor_rules_match_githubs() -> None:
    """Headings become the anchors GitHub gives them, repeats numbered."""
    text = "# A: b/c (d)\n## Exports: /metrics and OTLP\n## Bad input\n## Bad input\n```\n# not a heading\n```\n"
    assert anchors(text) == {"a-bc-d", "exports-metrics-and-otlp", "bad-input", "bad-input-1"}


def test_every_relative_link_and_anchor_exists() -> None:
    """Every link from the README or a docs page to a file of the repository leads to one that exists, and its
    #anchor to a heading of that page."""
    checked = 0
    for path in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", prose(path.read_text())):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            assert dest.exists(), f"{path.name}: {target}"
            assert dest.is_relative_to(ROOT), f"{path.name}: {target}"
            if anchor:
                assert dest.suffix == ".md", f"{path.name}: {target}"
                assert anchor in anchors(dest.read_text()), f"{path.name}: {target}"
            checked += 1
    assert checked > len(PAGES)


# -- the tables that must list everything ------------------------------------------------


def test_alert_table_lists_every_alert() -> None:
    """docs/dashboards-and-alerts.md's alert table has a row for every alert in prometheus/rules/alerts.yml."""
    import yaml

    groups = yaml.safe_load((ROOT / "prometheus" / "rules" / "alerts.yml").read_text())["groups"]
    text = page("dashboards-and-alerts.md")
    for rule in (r for g in groups for r in g["rules"] if "alert" in r):
        assert f"| `{rule['alert']}` | {rule['labels']['severity']} |" in text, rule["alert"]


def test_the_catalog_file_example_loads_with_every_field_it_shows(tmp_path: Path) -> None:
    """docs/metrics.md's catalog file example (min, max and integral included) loads and means what its comments
    say."""
    section = page("metrics.md").split("## Extending the catalog", 1)[1]
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


# -- every Python block runs, or says it is a fragment --------------------------------------


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    marker: str
    code: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def python_blocks(path: Path) -> list[Block]:
    """The ```python blocks of a page (indented ones too, dedented), each with the HTML comment on the line
    before it, if any."""
    text = path.read_text()
    blocks = []
    for match in re.finditer(r"^( *)```python[^\n]*\n(.*?)^\1```[ \t]*$", text, flags=re.M | re.S):
        indent = len(match.group(1))
        code = "".join(line[indent:] for line in match.group(2).splitlines(keepends=True))
        before = text[: match.start()].splitlines()
        previous = before[-1].strip() if before else ""
        marker = previous if previous.startswith("<!--") else ""
        blocks.append(Block(path.relative_to(ROOT).as_posix(), len(before) + 1, marker, code))
    return blocks


BLOCKS = [block for path in PAGES for block in python_blocks(path)]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRADING_TELEMETRY_"))}
    return {**env, "TRADING_TELEMETRY_STRICT": "true", "PYTHONDONTWRITEBYTECODE": "1", **extra}


# A block run as a program, with Ctrl-C raising KeyboardInterrupt even when the test runner was started with
# SIGINT ignored (a background job), which the child would otherwise inherit.
_RUN = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_path(sys.argv[1], run_name='__main__')"
)


def test_every_python_block_is_run_or_marked_a_fragment() -> None:
    """Every ```python block of the README and docs/ is preceded by no marker (a script) or by a known one, the
    README's first block serves until Ctrl-C, and the pages hold all four kinds."""
    assert BLOCKS
    for block in BLOCKS:
        assert block.marker in MARKERS, f"{block}: unknown marker {block.marker}"
    first = next(b for b in BLOCKS if b.page == "README.md")
    assert first.marker == "<!-- serves -->"
    assert {MARKERS[b.marker] for b in BLOCKS} == set(MARKERS.values())


def test_no_python_block_under_another_language_name() -> None:
    """Python code is fenced as ```python, the name the block test looks for (not py, python3 or pycon)."""
    for path in PAGES:
        names = set(re.findall(r"^ *```(py\w*)", path.read_text(), flags=re.M))
        assert names <= {"python"}, f"{path.name}: {names}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.marker == "<!-- fragment -->"], ids=str)
def test_a_fragment_parses(block: Block) -> None:
    """A fragment, not run, is still Python that parses (a top-level await allowed)."""
    import ast

    compile(block.code, str(block), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)


@pytest.mark.integration
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.marker == ""], ids=str)
def test_a_script_block_runs(block: Block, tmp_path: Path) -> None:
    """A block without a marker runs as a script, in strict mode in an empty directory: exit 0, nothing on
    stderr."""
    script = tmp_path / "example.py"
    script.write_text(block.code)
    done = subprocess.run([sys.executable, "-c", _RUN, str(script)], capture_output=True, text=True, timeout=300,
                          env=_env(), cwd=tmp_path, check=False)  # fmt: skip
    assert done.returncode == 0, f"{block}:\n{done.stderr}"
    assert done.stderr == "", f"{block}:\n{done.stderr}"


@pytest.mark.integration
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.marker == "<!-- pytest -->"], ids=str)
def test_a_pytest_block_passes(block: Block, tmp_path: Path) -> None:
    """A block marked pytest is a test file whose tests all pass under pytest, strict mode on."""
    (tmp_path / "test_example.py").write_text(block.code)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error",
                           "test_example.py"], capture_output=True, text=True, timeout=300, env=_env(), cwd=tmp_path,
                          check=False)  # fmt: skip
    assert done.returncode == 0, f"{block}:\n{done.stdout}\n{done.stderr}"
    assert re.search(r"\b\d+ passed\b", done.stdout), done.stdout
    assert not re.search(r"\b(failed|skipped|xfailed|error)\b", done.stdout.splitlines()[-1]), done.stdout


@pytest.mark.integration
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.marker == "<!-- serves -->"], ids=str)
def test_a_serving_block_serves_until_ctrl_c(block: Block, tmp_path: Path) -> None:
    """A block marked serves, given a free port in METRICS_PORT, prints where it serves, answers /metrics with
    the samples it records and /health, keeps serving, and on SIGINT (Ctrl-C) exits 0 with nothing on stderr."""
    script = tmp_path / "example.py"
    script.write_text(block.code)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", _RUN, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(METRICS_PORT=str(port)), cwd=tmp_path)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        names = tuple(s.prometheus_name for s in CATALOG)

        def recorded() -> str | None:
            if proc.poll() is not None:
                return "exited"
            status, _, body = http_get(f"{url}/metrics")
            lines = body.decode().splitlines()
            return "serving" if status == 200 and any(line.startswith(names) for line in lines) else None

        state = wait_for(f"{block} serving {url}/metrics with a catalog sample", recorded, timeout=60)
        assert state == "serving", f"{block} exited before serving:\n{proc.communicate()[1]}"
        assert http_get(f"{url}/health")[0] == 200
        assert proc.poll() is None, "the program stopped by itself"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, f"{block}:\n{err}"
    assert err == "", f"{block}:\n{err}"
    assert f":{port}/metrics" in out


def test_every_alert_has_a_row_saying_when_it_fires_and_when_it_is_silent() -> None:
    """Each alert of prometheus/rules has one row in the alert table of docs/dashboards-and-alerts.md, with its
    firing and silent cases filled in."""
    import yaml

    rules = Path(__file__).parents[2] / "prometheus" / "rules"
    alerts = {
        rule["alert"]
        for path in rules.glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    text = (Path(__file__).parents[2] / "docs" / "dashboards-and-alerts.md").read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)` \| (?:critical|warning|info) \|.*$", text, re.M)}
    assert alerts <= set(rows), sorted(alerts - set(rows))
    for name in alerts:
        cells = [c.strip() for c in rows[name].split(" | ")]
        assert len(cells) == 6, name
        assert all(cells[2:5]), name
