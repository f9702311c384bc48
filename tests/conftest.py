from __future__ import annotations

from collections.abc import Iterator

import pytest

from trading_telemetry import reset


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    """Every test starts with no plane initialised and no configuration read."""
    reset()
    yield
    reset()
