"""Documentation generated from the catalog and the settings table (README sections)."""

from __future__ import annotations

import json

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


def catalog_table(specs: tuple[MetricSpec, ...] = CATALOG, *, label_values: bool = False) -> str:
    """The metric catalog, one table per plane: the README's is the built-in one. With
    ``label_values``, a column of each metric's allowed label values (``trading-telemetry
    catalog``)."""
    out: list[str] = []
    values_header, values_rule = (" allowed label values (others: any) |", "---|") if label_values else ("", "")
    for plane in Plane:
        out += [f"#### {PLANE_TITLES[plane]}", "",
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
                shape = ", ".join(_fmt(b) for b in s.buckets)
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
    """The README's configuration table."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        names = " / ".join(f"`{v}`" for v in s.variables)
        default = f"`{s.default}`" if s.default else "(unset)"
        rows.append(f"| {names} | {default} | {s.meaning} |")
    return "\n".join(rows) + "\n"


SECTIONS = {"settings": settings_table, "catalog": catalog_table}


def render_readme(text: str) -> str:
    """``text`` with every generated section (between BEGIN/END markers) rendered anew."""
    for name, render in SECTIONS.items():
        begin, end = f"<!-- BEGIN generated:{name} -->", f"<!-- END generated:{name} -->"
        head, sep, rest = text.partition(begin)
        _, sep2, tail = rest.partition(end)
        if not (sep and sep2):
            raise ValueError(f"README has no {begin} ... {end} section")
        text = f"{head}{begin}\n{render()}{end}{tail}"
    return text


def main(argv: list[str] | None = None) -> int:
    """``python -m trading_telemetry._docs README.md``: rewrite the generated sections."""
    import sys
    from pathlib import Path

    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0] if args else "README.md")
    path.write_text(render_readme(path.read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
