"""Multiprocess mode's one helper: empty the directory before the processes start.

With ``TRADING_TELEMETRY_MULTIPROCESS_DIR`` set, /metrics sums the files of every process
that wrote there, ended ones included, so files left by an earlier run would add that
run's counts to this one's. Empty the directory when the deployment starts (gunicorn's
``on_starting`` hook, a pool's parent before its first plane, a start script)::

    from trading_telemetry.multiprocess import clear_directory

    def on_starting(server):  # gunicorn.conf.py
        clear_directory()

A process still running keeps its file: the helper removes only ended processes' files.
"""

from __future__ import annotations

import contextlib
import os

from trading_telemetry._mpfile import SUFFIX, FileReader
from trading_telemetry.catalog import Plane
from trading_telemetry.config import TelemetryConfig

__all__ = ["clear_directory"]


def clear_directory(directory: str | None = None) -> int:
    """Remove the plane files of ended processes from ``directory`` (default:
    TRADING_TELEMETRY_MULTIPROCESS_DIR); returns how many were removed. A missing
    directory has none; other files are left alone."""
    if directory is None:
        directory = TelemetryConfig.from_env().multiprocess_dir
    if not directory or not os.path.isdir(directory):
        return 0
    removed = 0
    prefixes = tuple(f"{plane.value}-" for plane in Plane)
    for name in sorted(os.listdir(directory)):
        if not (name.startswith(prefixes) and name.endswith(SUFFIX)):
            continue
        path = os.path.join(directory, name)
        try:
            reader = FileReader(path)
        except OSError:
            continue
        try:
            if reader.live():
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed += 1
        finally:
            reader.close()
    return removed
