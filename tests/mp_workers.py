"""Work done in other processes by the multiprocess tests: forked children, and the tasks
of multiprocessing pools (a module of its own, so that spawned workers can import it)."""

from __future__ import annotations

import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable

from trading_telemetry import PlaneMetrics, init_metrics_exporter, reset

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


class Worker:
    """A forked worker that records what it is told, one command per line on its pipe,
    and answers each with a line: ``ticks N``, ``gauge V``; ``exit`` ends it as a clean
    exit would (its planes' last exports, then the exit)."""

    def __init__(self, metrics: PlaneMetrics) -> None:
        commands, self._commands = os.pipe()
        self._answers, answers = os.pipe()

        def serve() -> None:
            os.close(self._commands)
            reader = os.fdopen(commands, "r")
            for line in reader:
                word, _, arg = line.strip().partition(" ")
                if word == "ticks":
                    for _ in range(int(arg)):
                        metrics.inc("ticks_received", **TICK_LABELS)
                    metrics.observe("data_freshness", FRESHNESS[2], **TICK_LABELS)
                elif word == "gauge":
                    metrics.set("completeness_score", float(arg), symbol="SPY")
                elif word == "exit":
                    reset()
                    break
                os.write(answers, b"ok\n")

        self.pid = fork(serve)
        os.close(commands)
        os.close(answers)

    def ask(self, command: str, timeout: float = 20.0) -> None:
        os.write(self._commands, command.encode() + b"\n")
        ready, _, _ = select.select([self._answers], [], [], timeout)
        assert ready, f"worker {self.pid} did not answer {command!r} within {timeout} s"
        assert os.read(self._answers, 3) == b"ok\n"

    def stop(self) -> None:
        os.write(self._commands, b"exit\n")
        assert wait_exit(self.pid) == 0
        os.close(self._commands)
        os.close(self._answers)

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        assert wait_exit(self.pid) == -signal.SIGKILL
        os.close(self._commands)
        os.close(self._answers)
