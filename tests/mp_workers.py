"""Work done in other processes by the multiprocess tests: forked children, and the tasks
of multiprocessing pools (a module of its own, so that spawned workers can import it)."""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from collections.abc import Callable

from trading_telemetry import init_metrics_exporter

TICK_LABELS = {"source": "ibkr_rt", "symbol": "SPY"}
FRESHNESS = (0.004, 0.02, 0.3, 7.0)
"""Data freshness values a task observes: buckets far apart, and one past the last."""


def fork(work: Callable[[], None]) -> int:
    """Fork a child that runs ``work`` and exits (1 if it raised, its traceback on
    stderr), never returning into the caller's code; the child's pid."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            work()
        except BaseException:  # noqa: BLE001 - reported by the exit status
            traceback.print_exc()
            code = 1
        finally:
            sys.stderr.flush()
            os._exit(code)
    return pid


def wait_exit(pid: int, timeout: float = 30.0) -> int:
    """The exit status of child ``pid``, polled until ``timeout``; a child still running
    then is killed (by its pid) and the wait fails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"child {pid} still running after {timeout} s: killed")


def record_task(task: tuple[int, int]) -> tuple[int, int, int]:
    """A pool task: ``ticks`` ticks, ``task_id % 4 + 1`` freshness observations and one
    bad measurement on data_plane, from the environment's configuration (a spawned worker)
    or the plane it inherited (a forked one). Returns (pid, ticks, observations)."""
    task_id, ticks = task
    metrics = init_metrics_exporter("data_plane")
    for _ in range(ticks):
        metrics.inc("ticks_received", **TICK_LABELS)
    observations = task_id % 4 + 1
    for i in range(observations):
        metrics.observe("data_freshness", FRESHNESS[i], **TICK_LABELS)
    metrics.inc("ticks_received", -1, **TICK_LABELS)  # dropped: a negative increment
    return os.getpid(), ticks, observations
