"""Fixtures starting real servers; the servers themselves are in tests/servers.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from servers import Collector, Process, Prometheus


@pytest.fixture(scope="module")
def _started() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for server in reversed(started):
        server.stop()


@pytest.fixture(scope="module")
def prometheus_factory(tmp_path_factory: pytest.TempPathFactory, _started: list[Process]) -> Callable[..., Prometheus]:
    """Start a Prometheus: ``factory({"planes": [...], "collector": [...]}, rule_files=...)``."""

    def start(targets: Mapping[str, Sequence[str]], rule_files: Sequence[Path] = (), **kw: Any) -> Prometheus:
        server = Prometheus(tmp_path_factory.mktemp("prometheus"), targets, rule_files, **kw)
        _started.append(server)
        return server

    return start


@pytest.fixture(scope="module")
def collector_factory(tmp_path_factory: pytest.TempPathFactory, _started: list[Process]) -> Callable[[], Collector]:
    """Start our Collector build on free ports."""

    def start() -> Collector:
        server = Collector(tmp_path_factory.mktemp("collector"))
        _started.append(server)
        return server

    return start
