"""Which end of the dependency ranges a venv holds (make test-ranges).

    python .ci/ends.py .ci/lowest.txt
    python .ci/ends.py .ci/highest.txt --newest

Prints, for every range pyproject.toml declares (the runtime's, the extras', the tests'
oracle), the installed version; fails if one is missing or outside its range, or if a
package the given file pins is not installed at that version (a constraint on a package
nothing requires installs nothing, so a pin alone proves no end). With ``--newest``, each
range the file does not pin must also hold the newest minor release line in it that the
package index serves (`pip index versions`): pip's backtracking can settle on an older set
that installs together, which would prove no upper end. Within that line a patch release
may be held back, by a package pinning another's exact release.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

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


def newest(requirement: Requirement) -> Version | None:
    """The newest release in the requirement's range that the package index serves."""
    done = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "--pre", requirement.name],
                          capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("Available versions:")]
    served = [Version(v.strip()) for v in line.split(":", 1)[1].split(",")]
    return max((v for v in served if requirement.specifier.contains(v, prereleases=True)), default=None)


def main(pins_file: str, check_newest: bool) -> int:
    pins = []
    for line in Path(pins_file).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            pins.append(Requirement(line))
    pinned = {canonicalize_name(p.name) for p in pins}
    problems = []
    for requirement in ranges():
        found = installed(requirement.name)
        print(f"  {requirement.name:<40} {found or 'not installed':<12} ({requirement.specifier})")
        if found is None or not requirement.specifier.contains(found, prereleases=True):
            problems.append(f"{requirement.name} {found or 'not installed'}: outside {requirement.specifier}")
        elif check_newest and canonicalize_name(requirement.name) not in pinned:
            top = newest(requirement)
            if top is not None and Version(found).release[:2] != top.release[:2]:
                problems.append(f"{requirement.name} {found}: the newest release in range is {top}")
    for pin in pins:
        if pin.marker is not None and not pin.marker.evaluate():
            continue
        found = installed(pin.name)
        if found is None or not pin.specifier.contains(found, prereleases=True):
            problems.append(f"{pin.name} {found or 'not installed'}: {pins_file} pins {pin.specifier}")
    for problem in problems:
        print(f"{pins_file}: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], "--newest" in sys.argv[2:]))
