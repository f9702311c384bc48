"""Fixtures starting real servers; the servers themselves are in tests/servers.py."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from servers import Prometheus


@pytest.fixture(scope="module")
def prometheus_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    started: list[Prometheus] = []

    def start(targets: Sequence[str], rule_files: Sequence[Path] = ()) -> Prometheus:
        server = Prometheus(tmp_path_factory.mktemp("prometheus"), targets, rule_files)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()
