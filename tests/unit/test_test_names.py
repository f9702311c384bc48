"""Test modules have unique basenames: pytest imports them by basename, and two with one name stop the run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def test_no_two_test_modules_share_a_name() -> None:
    """Every tests/**/test_*.py basename is unique."""
    names = Counter(p.name for p in (Path(__file__).parents[1]).rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []
