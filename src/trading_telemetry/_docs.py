"""Documentation generated from the catalog and the settings table: the sections of the
pages under docs/ between ``<!-- BEGIN generated:NAME -->`` and ``<!-- END generated:NAME -->``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from trading_telemetry.catalog import (
    BUILTIN_LABEL_VALUES,
    BUILTIN_METRIC_LABEL_VALUES,
    CATALOG,
    MetricSpec,
    Plane,
    allowed_values,
)
from trading_telemetry.config import SETTINGS

PLANE_TITLES = {Plane.DATA: "Data plane (port 8000)", Plane.ORDER: "Order plane (port 8001)",
                Plane.STRATEGY: "Strategy plane (port 8002)"}  # fmt: skip


def _fmt(x: float) -> str:
    return f"{x:g}"


def _label_value(text: str) -> str:
    """A label value as a table cell shows it: as written, or quoted with escapes when it
    has characters that would blur it (separators, control characters, edge spaces)."""
    if text.isprintable() and text.strip() == text and not any(c in text for c in ',;`"\\'):
        shown = text
    else:
        quoted = json.dumps(text, ensure_ascii=False)
        shown = "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in quoted)
    return shown.replace("|", "\\|")


def allowed_label_values(s: MetricSpec) -> str:
    """The closed label value sets of ``s`` (built-in and the desk's), e.g.
    ``direction: BUY, SELL``; labels not listed take any value. Built-in values keep
    their documented order, added ones follow sorted."""
    parts = []
    for label in s.labels:
        values = allowed_values(s, label)
        if values is None:
            continue
        declared = BUILTIN_METRIC_LABEL_VALUES.get((s.key, label), BUILTIN_LABEL_VALUES.get(label, ()))
        ordered = [v for v in declared if v in values] + sorted(values.difference(declared))
        parts.append(f"`{label}`: " + ", ".join(_label_value(v) for v in ordered))
    return "; ".join(parts)


def catalog_table(specs: tuple[MetricSpec, ...] = CATALOG, *, label_values: bool = False, heading: str = "####") -> str:
    """The metric catalog, one table per plane under a ``heading`` of that level:
    docs/metrics.md's is the built-in one. With ``label_values``, a column of each
    metric's allowed label values (``trading-telemetry catalog``)."""
    out: list[str] = []
    values_header, values_rule = (" allowed label values (others: any) |", "---|") if label_values else ("", "")
    for plane in Plane:
        out += [f"{heading} {PLANE_TITLES[plane]}", "",
                f"| Prometheus name | type | key | labels (+ `service`) |{values_header} unit | buckets / range | "
                "description |",
                f"|---|---|---|---|{values_rule}---|---|---|"]  # fmt: skip
        for s in specs:
            if s.plane is not plane:
                continue
            name = f"`{s.prometheus_name}`"
            if s.documented_name != s.prometheus_name:
                name += f" (documented `{s.documented_name}`: recording rule)"
            if s.buckets:
                shape = ", ".join(_fmt(b) for b in s.buckets) + (" + native" if s.native else "")
            elif s.integral and s.min_value is not None and s.max_value is not None:
                shape = "{" + ", ".join(str(v) for v in range(int(s.min_value), int(s.max_value) + 1)) + "}"
            elif s.kind.value == "gauge" and (s.min_value is not None or s.max_value is not None):
                lo = "-inf" if s.min_value is None else _fmt(s.min_value)
                hi = "+inf" if s.max_value is None else _fmt(s.max_value)
                shape = f"[{lo}, {hi}]"
            else:
                shape = ""
            labels = ", ".join(f"`{label}`" for label in s.labels) or "none"
            if label_values:
                labels += f" | {allowed_label_values(s)}"
            description = s.description.replace("|", "\\|")  # a desk's may have one
            out.append(f"| {name} | {s.kind.value} | `{s.key}` | {labels} | `{s.unit}` | {shape} | {description} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def settings_table() -> str:
    """docs/configuration.md's table of every setting."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        names = " / ".join(f"`{v}`" for v in s.variables)
        default = f"`{s.default}`" if s.default else "(unset)"
        rows.append(f"| {names} | {default} | {s.meaning} |")
    return "\n".join(rows) + "\n"


def catalog_count() -> str:
    """The number of built-in metrics, in all and per plane: the one place the
    documentation states it."""
    per_plane = [f"{sum(s.plane is p for s in CATALOG)} on the {PLANE_TITLES[p].split(' (')[0]}" for p in Plane]
    return f"The built-in catalog has {len(CATALOG)} metrics: {', '.join(per_plane[:-1])} and {per_plane[-1]}.\n"


SECTIONS: dict[str, Callable[[], str]] = {
    "settings": settings_table,
    "catalog": lambda: catalog_table(heading="###"),
    "count": catalog_count,
}
DOCS = Path("docs")
"""Where the generated sections live, relative to the repository's root."""


def _marker(kind: str, name: str) -> str:
    return f"<!-- {kind} generated:{name} -->"


def _section(name: str) -> re.Pattern[str]:
    """A generated section: its BEGIN marker on a line of its own, what is generated, its END marker."""
    begin, end = re.escape(_marker("BEGIN", name)), re.escape(_marker("END", name))
    return re.compile(rf"^({begin}\n)(.*?)^({end})$", re.M | re.S)


def generated_sections(text: str) -> list[str]:
    """The names of the generated sections in ``text`` (markers on lines of their own), in
    order; raises ValueError on a section that is not known, not closed, or there twice."""
    names: list[str] = re.findall(r"^<!-- BEGIN generated:([\w-]+) -->$", text, flags=re.M)
    for name in names:
        if name not in SECTIONS:
            raise ValueError(f"unknown generated section {name!r}: known are {', '.join(SECTIONS)}")
        if len(_section(name).findall(text)) != 1 or len(re.findall(rf"^{_marker('END', name)}$", text, re.M)) != 1:
            raise ValueError(f"generated section {name!r} needs one BEGIN and, after it, one END marker")
    return names


def render(text: str) -> str:
    """``text`` with each of its generated sections (between BEGIN/END markers) rendered anew."""
    for name in generated_sections(text):
        match = _section(name).search(text)
        assert match is not None  # generated_sections found it
        text = f"{text[: match.end(1)]}{SECTIONS[name]()}{text[match.start(3) :]}"
    return text


def pages(root: Path) -> list[Path]:
    """The documentation pages under ``root`` that have generated sections."""
    return [p for p in sorted((root / DOCS).glob("*.md")) if generated_sections(p.read_text())]


def main(argv: list[str] | None = None) -> int:
    """``python -m trading_telemetry._docs [ROOT]``: rewrite the generated sections of the
    pages under ROOT/docs (default: the current directory), printing the ones that changed."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0] if args else ".")
    found = pages(root)
    if not found:
        print(f"no page under {root / DOCS} has a generated section", file=sys.stderr)
        return 1
    for path in found:
        text = path.read_text()
        new = render(text)
        if new != text:
            path.write_text(new)
            print(f"rewrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
