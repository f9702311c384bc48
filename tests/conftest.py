from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from trading_telemetry import reset


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    """Every test starts and ends with the package as at import: no plane, no configuration read, the built-in
    catalog, nothing warned about or cached."""
    reset()
    yield
    reset()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI=true a skipped test fails the run: real components must be there."""
    if os.environ.get("CI") != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and reporter.stats.get("skipped"):
        reporter.write_line("CI=true: skipped tests count as failures", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
