"""Which end of the dependency ranges a venv holds (make test-ranges).

    python .ci/ends.py .ci/lowest.txt

Prints, for every range pyproject.toml declares (the runtime's, the extras', the tests'
oracle), the installed version; fails if one is missing or outside its range, or if a
package the given file pins is not installed at that version (a constraint on a package
nothing requires installs nothing, so a pin alone proves no end).
"""

from __future__ import annotations

import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def ranges() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        declared += [Requirement(r) for r in extra]
    return [r for r in declared if canonicalize_name(r.name) != "trading-telemetry" and not _pinned(r)]


def _pinned(requirement: Requirement) -> bool:
    return any(s.operator == "==" for s in requirement.specifier)


def installed(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def main(pins_file: str) -> int:
    problems = []
    for requirement in ranges():
        found = installed(requirement.name)
        print(f"  {requirement.name:<40} {found or 'not installed':<12} ({requirement.specifier})")
        if found is None or not requirement.specifier.contains(found, prereleases=True):
            problems.append(f"{requirement.name} {found or 'not installed'}: outside {requirement.specifier}")
    for line in Path(pins_file).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        pin = Requirement(line)
        if pin.marker is not None and not pin.marker.evaluate():
            continue
        found = installed(pin.name)
        if found is None or not pin.specifier.contains(found, prereleases=True):
            problems.append(f"{pin.name} {found or 'not installed'}: {pins_file} pins {pin.specifier}")
    for problem in problems:
        print(f"{pins_file}: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
