"""The package's modules use one another's public names only: no module reads or writes another's
underscore members or imports another's underscore names. The SDK's private API is the one exception, in
``_aggregation.py`` alone (guarded by test_sdk_private)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "trading_telemetry"
SDK_MODULE = "_aggregation.py"


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _own_names(tree: ast.Module) -> set[str]:
    """The underscore names a module defines: its functions, classes, variables, arguments, members it assigns
    on ``self`` or ``cls``, and the names it spells out (``__slots__``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _private(node.value):
            names.add(node.value)
    return {name for name in names if _private(name)}


def _is_module(package: str, name: str) -> bool:
    """Whether ``package.name`` is one of the package's modules (an internal module is imported, not reached into)."""
    folder = SRC.parent.joinpath(*package.split("."))
    return (folder / f"{name}.py").exists() or (folder / name / "__init__.py").exists()


def _foreign_private_uses(path: Path) -> list[str]:
    """``path``'s uses of underscore members it does not define (``obj._name``, self and cls aside), and its
    imports of underscore names from the package's other modules."""
    tree = ast.parse(path.read_text())
    own = _own_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in own:
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trading_telemetry"):
            names = [a.name for a in node.names if _private(a.name) and not _is_module(node.module or "", a.name)]
            found += [f"{node.lineno}: import {name} from {node.module}" for name in names]
    return found


def test_no_module_uses_another_modules_private_members() -> None:
    """Every module of src/trading_telemetry, integrations included, keeps to the others' public names."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name.endswith("_pb2.py"):  # protoc's output (make proto), using the protobuf runtime's internals
            continue
        uses = _foreign_private_uses(path)
        if path.name == SDK_MODULE:  # the SDK's private API: its own guard
            uses = [use for use in uses if "import" in use]
        offenders += [f"{path.relative_to(SRC)}:{use}" for use in uses]
    assert offenders == []


def test_the_check_finds_a_foreign_private_member(tmp_path: Path) -> None:
    """The check sees a read of another object's underscore member, a write, and a private import; not a
    module's own members."""
    module = tmp_path / "m.py"
    module.write_text(
        "from trading_telemetry._sdk import _otlp_exporter\n"
        "class A:\n    def __init__(self):\n        self._mine = 1\n"
        "def f(a, metrics):\n    a._mine\n    metrics._policy.reject(1)\n    metrics._x = 2\n"
    )
    found = sorted(use.split(": ", 1)[1] for use in _foreign_private_uses(module))
    assert found == ["import _otlp_exporter from trading_telemetry._sdk", "metrics._policy", "metrics._x"]
