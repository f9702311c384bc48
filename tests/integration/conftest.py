"""Fixtures starting real servers; the servers themselves are in tests/servers.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from servers import Collector, Jaeger, Process, Prometheus

P = TypeVar("P", bound=Process)


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
def collector_factory(tmp_path_factory: pytest.TempPathFactory, _started: list[Process]) -> Callable[..., Collector]:
    """Start our Collector build on free ports: ``factory()`` with otel_collector/config.yaml,
    ``factory(config=..., env={...})`` with another configuration (the gateway)."""

    def start(config: Path | None = None, env: Mapping[str, str] | None = None) -> Collector:
        server = Collector(tmp_path_factory.mktemp("collector"), config, env)
        _started.append(server)
        return server

    return start


@pytest.fixture(scope="module")
def thanos_factory(tmp_path_factory: pytest.TempPathFactory, _started: list[Process]) -> Callable[..., Any]:
    """Start a server of the scale-out path on free ports, stopped with the module:
    ``factory(ThanosReceive)``, ``factory(ThanosQuery, endpoints=[...])``,
    ``factory(PrometheusReplica, replica="a", targets={...})``, ``factory(Alertmanager, env={})``."""

    def start(kind: Callable[..., P], **kw: Any) -> P:
        server = kind(tmp_path_factory.mktemp(getattr(kind, "__name__", "server").lower()), **kw)
        _started.append(server)
        return server

    return start


@pytest.fixture(scope="module")
def jaeger_factory(tmp_path_factory: pytest.TempPathFactory, _started: list[Process]) -> Callable[..., Jaeger]:
    """Start Jaeger v2 (jaeger/config.yaml: OTLP in, memory storage, query API) on free ports."""

    def start() -> Jaeger:
        server = Jaeger(tmp_path_factory.mktemp("jaeger"))
        _started.append(server)
        return server

    return start
