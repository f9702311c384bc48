#!/usr/bin/env bash
# One supported Python version's venv and unit tests (make test-pythons):
#   .ci/python.sh install 3.12   build (or reuse) .venv-py/3.12-HASH with the locked set
#   .ci/python.sh test 3.12      run tests/unit in it
# HASH is that of pyproject.toml and constraints.txt, as for make's .venv: the venv is
# rebuilt when they change and reused otherwise. The interpreter is pyenv's newest build
# of the version, else pythonX.Y on PATH; none is a failure, never a skip.
# NautilusTrader (the nautilus extra) and grafana-foundation-sdk (dashboards) publish
# nothing for Python 3.10: there they are not installed, and the test files that import
# them, and the tests named after them, are left out (not skipped: CI fails on a skip).
set -euo pipefail
cd "$(dirname "$0")/.."
action=$1
version=$2
lock=$(cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
venv=.venv-py/$version-$lock

interpreter() {
    local root candidate
    root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    for candidate in $(ls -d "$root/versions/$version".*/bin/python"$version" 2>/dev/null | sort -rV) \
        "$(command -v "python$version" || true)"; do
        if [ -n "$candidate" ] && "$candidate" -c 'import sys' >/dev/null 2>&1; then
            echo "$candidate"
            return
        fi
    done
    echo "test-pythons: no Python $version here (pyenv install $version, or put python$version on PATH)" >&2
    return 1
}

old_python() {  # whether the version is one of those the 3.11-only packages leave out
    [ "$(printf '%s\n' "$version" 3.11 | sort -V | head -1)" != 3.11 ]
}

case $action in
install)
    python=$(interpreter)
    if [ -f "$venv/.installed" ]; then
        exit 0
    fi
    rm -rf .venv-py/"$version"-*
    "$python" -m venv "$venv"
    extras=dev,nautilus
    if old_python; then extras=dev; fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[$extras]"
    touch "$venv/.installed"
    ;;
test)
    [ -f "$venv/.installed" ] || { echo "test-pythons: $venv is not installed" >&2; exit 1; }
    args=()
    if old_python; then
        for file in $(grep -lE '^(from|import) (nautilus_trader|grafana_foundation_sdk|trading_telemetry\.(integrations\.nautilus|_dashboards))' tests/unit/*.py); do
            args+=("--ignore=$file")
        done
        args+=(-k "not nautilus and not dashboards")
    fi
    echo "== Python $("$venv/bin/python" -c 'import platform; print(platform.python_version())'): pytest tests/unit ${args[*]}"
    "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/unit "${args[@]}"
    ;;
*)
    echo "usage: $0 install|test VERSION" >&2
    exit 2
    ;;
esac
