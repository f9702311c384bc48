"""What a forked child does with the planes it inherits (``os.register_at_fork``).

A child forked after a plane started holds a copy of the parent's counts, locks that
another of the parent's threads may have held at the fork (the package's module-state
ones too, ``_globals.renew_locks()``, renewed first by ``_state``), the parent's exporters (their
connections shared with the parent) and the parent's /metrics server. Counted again by
the child, the copy would be counted twice; a held lock would block the child's first
recording forever. So the child, before its own code runs:

- starts every series from zero with new locks: it counts only what it records;
- in multiprocess mode, records into a file of its own, made at its first recording;
- builds its plane's SDK anew: new exporters and reader threads, and a resource whose
  ``service.instance.id`` ends with its pid, so that on the push path each worker is an
  instance of its own and the Collector and Prometheus sum them; the parent's SDK objects
  it inherited send nothing from the child;
- closes the parent's /metrics servers it inherited (the port stays the parent's);
- warns once when what it records is lost: the parent serves a plane's /metrics, there is
  no multiprocess directory and the plane pushes nothing.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from trading_telemetry._globals import STATE

__all__ = ["after_fork_in_child", "child_process"]

logger = logging.getLogger("trading_telemetry")

_IMPORT_PID = os.getpid()
"""The process that imported the package: a forked child's pid differs."""


def child_process() -> bool:
    """Whether this process is a worker of another: forked from a process that had
    imported the package, or started by multiprocessing (spawn, forkserver)."""
    if os.getpid() != _IMPORT_PID:  # forked from a process that had imported the package
        return True
    import multiprocessing  # here: most programs never need it

    return multiprocessing.parent_process() is not None


LOST = (
    "process %d was forked from process %d after %s started serving /metrics there; this process counts on its "
    "own, so what it records is not in that /metrics. To have every process's counts summed on one /metrics, set "
    "TRADING_TELEMETRY_MULTIPROCESS_DIR to an empty directory before the first plane starts; or serve this "
    "process's own /metrics on a port of its own; or push OTLP to a Collector (OTEL_METRICS_EXPORTER=otlp)"
)


def _new_filter_lock() -> None:
    """The exporter-log filter's lock, which a parent's thread may have held at the fork."""
    throttle = STATE.exporter_log_filter
    if throttle is not None:
        throttle.renew_lock()


def after_fork_in_child(planes: Iterable[Any], rebuild: Callable[[Any], None]) -> None:
    """The child's side of a fork, for the planes it inherited (PlaneMetrics), once
    ``_state`` renewed the module state's locks; each plane is set up for this process by
    ``rebuild``. Never raises."""
    _new_filter_lock()
    served: set[str] = set()
    server_module = sys.modules.get("trading_telemetry.metrics_server")
    if server_module is not None:
        try:
            served = server_module.forget_inherited_servers()
        except Exception:
            logger.warning("after fork: closing the parent's /metrics servers failed", exc_info=True)
    lost = []
    for metrics in planes:
        try:
            rebuild(metrics)
        except Exception:
            logger.warning("after fork: %s could not be set up for this process", metrics.plane.value, exc_info=True)
        if metrics.plane.value in served and metrics.multiprocess is None and not metrics.sdk.pushers:
            lost.append(metrics.plane.value)
    if lost:
        logger.warning(LOST, os.getpid(), os.getppid(), " and ".join(lost))
