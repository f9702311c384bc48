"""Multiprocess mode: every process's counts summed on /metrics.

With ``TRADING_TELEMETRY_MULTIPROCESS_DIR`` set, each process writes what it records to
a file of its own per plane in that directory (``_mpfile``), as prometheus_client's
multiprocess mode does with ``PROMETHEUS_MULTIPROC_DIR``; the process serving /metrics,
whichever it is, reads every plane file there and renders the sum:

- counters, histograms and the dropped-measurements self-metric: summed over every file,
  of running and ended processes alike (an ended worker's counts keep counting);
- gauges by ``TRADING_TELEMETRY_MULTIPROCESS_GAUGE``: ``mostrecent`` (the value last set
  by any process), ``livesum``, ``livemax``, ``livemin`` or ``liveall`` (a ``pid`` label)
  over running processes. A process is running while it holds its file's lock, so no
  hook has to report a worker's end (prometheus_client's ``mark_process_dead``).

The handles here are the ordinary ones plus a view of their record: a recording also
stores the new total there, one double (a gauge, its time too). Nothing is lost when a
process is killed: what it recorded is in the file already. Handles a forked child
inherits start from zero with a view that creates the child's record at their first
recording, so a child that records nothing writes nothing. The reader takes an ended
process's file in once, keeps its totals, and closes it: a scrape reads the files of
running processes only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import operator
import os
import sys
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from trading_telemetry._checks import overflow
from trading_telemetry._drops import DROPPED_METRIC
from trading_telemetry._handles import BoundMetric, CounterHandle, GaugeHandle, HistogramHandle
from trading_telemetry._mpfile import SUFFIX, FileReader, SlotFile, plane_files
from trading_telemetry.catalog import SERVICE_LABEL, Kind, MetricSpec
from trading_telemetry.config import TelemetryConfig
from trading_telemetry.errors import ConfigError, MeasurementError

__all__ = ["PlaneFiles", "prepare_directory"]

T = TypeVar("T")
logger = logging.getLogger("trading_telemetry")
_MAX = sys.float_info.max
_DROPS = ""
"""The first element of a drop count's key: never a catalog key."""
MERGE_CHUNK = 2000
"""Records merged between two yields of the GIL."""


def prepare_directory(config: TelemetryConfig) -> str:
    """The configured directory, created if missing; a set-up mistake raises at once."""
    directory = config.multiprocess_dir
    variable = "TRADING_TELEMETRY_MULTIPROCESS_DIR"
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        raise ConfigError(variable, directory, f"cannot create the directory: {error.strerror}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(variable, directory, "the directory is not writable by this process")
    return os.path.abspath(directory)


def slot_count(s: MetricSpec) -> int:
    """Doubles per series: a counter's total; a gauge's value and time; a histogram's
    bucket counts and sum."""
    if s.kind is Kind.COUNTER:
        return 1
    if s.kind is Kind.GAUGE:
        return 2
    return len(s.buckets or ()) + 2


class _Unattached:
    """The view of a handle with no record in this process yet: the first store makes
    the record (with the handle's state, the stored value included) and goes there."""

    __slots__ = ("_files", "_handle", "_view")

    def __init__(self, files: PlaneFiles, handle: BoundMetric) -> None:
        self._files = files
        self._handle = handle
        self._view: memoryview[float] | None = None

    def __setitem__(self, index: int, value: float) -> None:
        view = self._view
        if view is None:
            view = self._view = self._files.attach(self._handle)
        view[index] = value


# The handles of multiprocess mode: the ordinary fast paths, plus the store of the new
# state in the record (``_mv``). Kept in step with _handles by test_multiprocess.


class FileCounterHandle(CounterHandle):
    __slots__ = ("_mv",)
    _mv: memoryview[float]

    def record_state(self) -> list[float]:
        """The handle's record: its total (read unlocked: at its first store, under the
        handle's lock, or when the store makes it, before any other thread has it)."""
        return [float(self.value)]

    def inc(self, value: float = 1) -> None:
        try:
            if (value.__class__ is int or value.__class__ is float) and 0 <= value <= _MAX:
                with self._lock:
                    total = self.value + value
                    if total <= _MAX:
                        self.value = total
                        self._mv[0] = total
                        return
                self._policy.reject(overflow(self.spec, value, "counter's total"))
                return
        except MeasurementError:
            raise
        except Exception:  # noqa: BLE001 - a hostile value: judged by _checked
            pass
        self._checked(value)

    def record_unchecked(self, value: float) -> None:
        with self._lock:
            total = self.value + value
            if total <= _MAX:
                self.value = total
                self._mv[0] = total
                return
        self._policy.reject(overflow(self.spec, value, "counter's total"))


class FileGaugeHandle(GaugeHandle):
    __slots__ = ("_mv",)
    _mv: memoryview[float]

    def record_state(self) -> list[float]:
        """The handle's record: its value and when it was set (0, 0: never)."""
        value = self.value
        return [0.0, 0.0] if value is None else [float(value), time.time()]

    def set(self, value: float) -> None:
        try:
            if (value.__class__ is float or value.__class__ is int) and self._low <= value <= self._high:
                self.value = value
                view = self._mv
                view[0] = value
                view[1] = time.time()
                return
        except Exception:  # noqa: BLE001 - a hostile value: judged by _checked
            pass
        self._checked(value)

    def record_unchecked(self, value: float) -> None:
        self.value = value
        view = self._mv
        view[0] = value
        view[1] = time.time()


class FileHistogramHandle(HistogramHandle):
    __slots__ = ("_mv",)
    _mv: memoryview[float]

    def record_state(self) -> list[float]:
        """The handle's record: its bucket counts and sum (read unlocked: the first store
        makes the record with the handle's lock held)."""
        return [*map(float, self._counts), float(self._sum)]

    def record_unchecked(self, value: float) -> None:
        index = bisect_left(self._bounds, value)
        with self._lock:
            total = self._sum + value
            finite = -_MAX <= total <= _MAX
            if finite:
                counts = self._counts
                count = counts[index] + 1
                counts[index] = count
                self._sum = total
                if value < self._min:
                    self._min = value
                if value > self._max:
                    self._max = value
                view = self._mv
                view[index] = count
                view[-1] = total
        if not finite:
            self._policy.reject(overflow(self.spec, value, "histogram's sum"))
            return
        if self._exemplars is not None and (self._every or _recording()):
            with contextlib.suppress(Exception):  # an exemplar is a nicety, never a failure
                self._exemplars(value, self.attributes)


def _recording() -> bool:
    from opentelemetry.trace import get_current_span

    return get_current_span().is_recording()


HANDLES: dict[Kind, type[BoundMetric]] = {
    Kind.COUNTER: FileCounterHandle,
    Kind.GAUGE: FileGaugeHandle,
    Kind.HISTOGRAM: FileHistogramHandle,
}


class Merged:
    """One series summed over the files: what the exposition reads from a handle. Made
    anew at every merge; its rendered label string is kept across merges."""

    __slots__ = ("_id", "_items", "_texts", "counts", "stamp", "sum", "value")

    def __init__(self, ident: Any, items: list[tuple[str, str]], texts: dict[Any, Any]) -> None:
        self._id = ident
        self._items = items
        self._texts = texts
        self.value: float | None = None
        self.counts: list[Any] = []  # floats while summed, ints once merged
        self.sum = 0.0
        self.stamp = 0.0

    def label_text(self, render: Callable[[list[tuple[str, str]]], T]) -> T:
        """The series' labels as ``render`` writes them, kept across merges (``BoundMetric.label_text``)."""
        text = self._texts.get(self._id)
        if text is None:
            text = self._texts[self._id] = render(self._items)
        return text

    def label_items(self) -> list[tuple[str, str]]:
        return self._items

    def copy(self) -> Merged:
        copied = Merged(self._id, self._items, self._texts)
        copied.value, copied.counts, copied.sum, copied.stamp = self.value, list(self.counts), self.sum, self.stamp
        return copied

    def snapshot(self) -> tuple[list[Any], float, float, float]:
        return self.counts, self.sum, math.inf, -math.inf


Series = dict[str, dict[Any, Merged]]
Drops = dict[tuple[str, str], float]


class MergedSeries:
    """The summed series, read as the plane's store is (``_series.SeriesReader``)."""

    __slots__ = ("_series",)

    def __init__(self, series: Series) -> None:
        self._series = series

    def series(self, key: str) -> Mapping[Any, Merged]:
        return self._series.get(key, {})


class SummedCell:
    """One series of every process's sum, as the SDK's views read it: the same object from
    one collection to the next (the views keep it), its numbers replaced at each merge."""

    __slots__ = ("_items", "counts", "sum", "value")

    retired = False  # retire() is refused in multiprocess mode

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items
        self.value: float | None = None
        self.counts: list[int] = []
        self.sum = 0.0

    @property
    def attributes(self) -> dict[str, str]:
        return dict(self._items)

    def snapshot(self) -> tuple[list[int], float, float, float]:
        return list(self.counts), self.sum, math.inf, -math.inf  # min and max unknown: the files keep neither


class SummedSeries:
    """Every process's sum, for the SDK's views of a process that pushes it
    (TRADING_TELEMETRY_MULTIPROCESS_PUSH=sum): ``refresh()`` merges the files, and returns
    the series seen for the first time, to be registered with the SDK's readers."""

    def __init__(self, files: PlaneFiles, specs: Mapping[str, MetricSpec]) -> None:
        self._files = files
        self._cells: dict[str, dict[Any, SummedCell]] = {key: {} for key in specs}
        self._gauges = [key for key, s in specs.items() if s.kind is Kind.GAUGE]
        self._lock = threading.Lock()  # two readers may collect at once
        self.drops: Mapping[Any, float] = {}
        """The drop self-metric's counts at the last refresh, every process's."""

    def series(self, key: str) -> Mapping[Any, SummedCell]:
        return self._cells[key]

    def refresh(self) -> list[tuple[str, SummedCell]]:
        with self._lock:
            return self._refresh()

    def _refresh(self) -> list[tuple[str, SummedCell]]:
        merged, self_metrics = self._files.merged()
        for key in self._gauges:  # a gauge of processes that all ended (live* modes) is gone: not exported
            for gone in self._cells[key].values():
                gone.value = None
        new: list[tuple[str, SummedCell]] = []
        for key, cells in self._cells.items():
            for labels, summed in merged.series(key).items():
                cell = cells.get(labels)
                if cell is None:
                    cell = cells[labels] = SummedCell(summed.label_items())
                    new.append((key, cell))
                cell.value, cell.counts, cell.sum = summed.value, list(summed.counts), summed.sum
        self.drops = self_metrics.get(DROPPED_METRIC, {})
        return new


class PlaneFiles:
    """A plane's files in the directory: this process's (written), everyone's (read)."""

    def __init__(self, directory: str, plane: str, specs: Mapping[str, MetricSpec], gauge_mode: str) -> None:
        self.directory = directory
        self.plane = plane
        self._specs = specs
        self._gauge_mode = gauge_mode
        self._lock = threading.Lock()
        self._file: SlotFile | None = None
        self._drop_views: dict[tuple[str, str], memoryview[float]] = {}
        self.failed: str | None = None
        """Why this process's counts cannot be written (they stay in memory), or None."""
        self._readers: dict[str, FileReader] = {}  # the files of running processes
        self._ended = _Totals(specs)  # the ended processes' files, summed
        self._absorbed: set[str] = set()  # their paths
        self._prepared: dict[str, list[tuple[Any, ...] | None]] = {}  # each running file's records, checked
        self._histograms = [s.key for s in specs.values() if s.kind is Kind.HISTOGRAM]
        self._items: dict[Any, list[tuple[str, str]]] = {}  # a series' labels, by (key, labels, pid)
        self._texts: dict[Any, Any] = {}  # its rendered label string
        self._read_lock = threading.Lock()
        self.left_out = 0
        """Records of another catalog (an unknown key, other buckets): not summed."""

    # Writing: this process's file.

    def attach(self, handle: BoundMetric) -> memoryview[float]:
        """Give ``handle`` (a handle of this module) its record in this process's file,
        holding its current state, and return the record. Never raises: when the file
        cannot be written, a view in memory (logged once)."""
        s = handle.spec
        state = handle.record_state()  # type: ignore[attr-defined]
        view = self._record(json.dumps([s.key, list(handle.key)], separators=(",", ":")), len(state))
        for i, number in enumerate(state):
            view[i] = number
        handle._mv = view  # type: ignore[attr-defined]
        return view

    def detach(self, handle: BoundMetric) -> None:
        """In a forked child: ``handle``'s record is made at its first store in this process."""
        handle._mv = _Unattached(self, handle)  # type: ignore[attr-defined]

    def count_drop(self, counted: tuple[str, str], total: int) -> None:
        """The drop self-metric's count ``counted`` is now ``total`` (called under the
        policy's lock). Never raises."""
        try:
            view = self._drop_views.get(counted)
            if view is None:
                view = self._drop_views[counted] = self._record(json.dumps([_DROPS, *counted]), 1)
            view[0] = total
        except Exception:  # noqa: BLE001 - never raise on the recording path
            pass

    def _record(self, key: str, count: int) -> memoryview[float]:
        with self._lock:
            try:
                if self._file is None:
                    if self.failed is not None:
                        raise OSError(self.failed)
                    name = f"{self.plane}-{os.getpid()}-{time.time_ns():x}{SUFFIX}"
                    self._file = SlotFile(os.path.join(self.directory, name))
                return self._file.add(key.encode(), count)
            except Exception as error:  # noqa: BLE001 - a full or removed directory: counted in memory
                if self.failed is None:
                    self.failed = f"{type(error).__name__}: {error}"
                    logger.error(
                        "%s: cannot write to the multiprocess directory %s (%s): what process %d records is "
                        "kept in memory and missing from the /metrics sum",
                        self.plane, self.directory, self.failed, os.getpid(),
                    )  # fmt: skip
                return memoryview(bytearray(8 * count)).cast("d")

    def after_fork(self) -> None:
        """In a forked child: the parent's file is the parent's; the child's is made at
        its first recording."""
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        if self._file is not None:
            self._file.disown()
        self._file = None
        self._drop_views = {}
        self.failed = None

    def close(self) -> None:
        """The plane stops: this process's file is released (it reads as ended), the
        readers closed."""
        with self._lock:
            if self._file is not None:
                self._file.disown()
            self.failed = "the plane was shut down"
        with self._read_lock:
            for reader in self._readers.values():
                reader.close()
            self._readers.clear()

    def state(self) -> dict[str, Any]:
        """What /health says of the directory, as of the last scrape."""
        return {
            "directory": self.directory,
            "running_process_files": len(self._readers),
            "ended_process_files": len(self._absorbed),
            "records_left_out": self.left_out,
            "write_failure": self.failed,
        }

    # Reading: every process's file. The file of an ended process no longer changes: it
    # is read one last time, added into the ended processes' totals kept here, and closed,
    # so that a scrape reads the files of running processes only, and descriptors are
    # held for those only.

    def merged(self) -> tuple[MergedSeries, Mapping[str, Mapping[Any, float]]]:
        """Every series summed over the plane's files, and the drop self-metric's counts
        (by its key, as the exposition takes self-metric values)."""
        with self._read_lock:
            live: list[tuple[FileReader, str]] = []
            for path, reader in self._scan():
                pid = os.path.basename(path).split("-")[1]
                try:
                    running = reader.live()
                    reader.refresh()  # after the liveness check: an ended file is read whole
                except OSError:
                    continue
                if running:
                    live.append((reader, pid))
                else:
                    self._absorb(path, reader, pid)
            totals = self._ended.copy()
            for reader, pid in live:
                self._add_file(totals, reader, True, pid)
            for key in self._histograms:  # bucket counts as ints, rendered as a handle's are
                for cell in totals.series[key].values():
                    cell.counts = list(map(int, cell.counts))
            return MergedSeries(totals.series), {DROPPED_METRIC: totals.drops}

    def _absorb(self, path: str, reader: FileReader, pid: str) -> None:
        self._add_file(self._ended, reader, False, pid)
        reader.close()
        del self._readers[path]
        self._prepared.pop(path, None)
        self._absorbed.add(path)

    def _scan(self) -> list[tuple[str, FileReader]]:
        try:
            paths = set(plane_files(self.directory, self.plane)) - self._absorbed
        except OSError:
            paths = set()
        for path in list(self._readers):
            if path not in paths:  # removed (the directory emptied): no longer read
                self._readers.pop(path).close()
                self._prepared.pop(path, None)
        for path in sorted(paths - self._readers.keys()):
            try:
                self._readers[path] = FileReader(path)
            except OSError:
                continue
        return list(self._readers.items())

    def _add_file(self, totals: _Totals, reader: FileReader, live: bool, pid: str) -> None:
        """Add a file's records to ``totals``, yielding the GIL every MERGE_CHUNK records."""
        prepared = self._prepared.setdefault(reader.path, [])
        for key, _, count in reader.records[len(prepared) :]:  # new records: checked once
            prepared.append(self._prepare(key, count))
        for n, (record, (_, offset, count)) in enumerate(zip(prepared, reader.records, strict=True)):
            if n % MERGE_CHUNK == MERGE_CHUNK - 1:
                time.sleep(0)  # give the GIL to the trading threads
            if record is not None:
                self._add(totals, record, reader.values(offset, count), live, pid)

    def _prepare(self, key: Any, count: int) -> tuple[Any, ...] | None:
        """What a record is: ``(None, (metric, reason))`` for a drop count, ``(spec,
        labels)`` for a series of this catalog; None, counted in ``left_out``, for
        anything else (another catalog's key or buckets, a damaged key)."""
        if isinstance(key, list) and len(key) == 3 and key[0] == _DROPS and count == 1:
            return None, (str(key[1]), str(key[2]))
        s = self._specs.get(key[0]) if isinstance(key, list) and key and isinstance(key[0], str) else None
        labels = tuple(key[1]) if s is not None and len(key) == 2 and isinstance(key[1], list) else None
        if (
            s is None
            or labels is None
            or len(labels) != len(s.labels)
            or not all(type(v) is str for v in labels)
            or count != slot_count(s)
        ):
            self.left_out += 1
            return None
        return s, labels

    def _add(self, totals: _Totals, record: tuple[Any, ...], values: tuple[float, ...], live: bool, pid: str) -> None:
        s, labels = record
        if s is None:
            totals.drops[labels] = totals.drops.get(labels, 0.0) + values[0]
            return
        if s.kind is Kind.GAUGE:
            self._add_gauge(totals.series[s.key], s, labels, values, live, pid)
            return
        cells = totals.series[s.key]
        cell = cells.get(labels)
        if cell is None:
            cell = cells[labels] = self._cell(s, labels)
            if s.kind is Kind.HISTOGRAM:
                cell.counts = list(values[:-1])
                cell.sum = values[-1]
            else:
                cell.value = values[0]
        elif s.kind is Kind.HISTOGRAM:
            cell.counts = list(map(operator.add, cell.counts, values[:-1]))
            cell.sum += values[-1]
        else:
            cell.value = (cell.value or 0.0) + values[0]

    def _add_gauge(
        self, cells: dict[Any, Merged], s: MetricSpec, labels: tuple[str, ...], values: tuple[float, ...], live: bool,
        pid: str,
    ) -> None:  # fmt: skip
        value, stamp = values
        mode = self._gauge_mode
        if stamp == 0 or not (live or mode == "mostrecent"):
            return  # never set; or a mode over running processes, and an ended one
        key: Any = (labels, pid) if mode == "liveall" else labels
        cell = cells.get(key)
        if cell is None:
            cell = cells[key] = self._cell(s, labels, pid if mode == "liveall" else None)
            cell.value, cell.stamp = value, stamp
        elif mode == "mostrecent":
            if stamp > cell.stamp:
                cell.value, cell.stamp = value, stamp
        else:
            current = value if cell.value is None else cell.value
            if mode == "livesum":
                cell.value = current + value
            elif mode == "livemax":
                cell.value = max(current, value)
            elif mode == "livemin":
                cell.value = min(current, value)

    def _cell(self, s: MetricSpec, labels: tuple[str, ...], pid: str | None = None) -> Merged:
        ident = (s.key, labels, pid)
        items = self._items.get(ident)
        if items is None:
            items = [*zip(s.labels, labels, strict=True), (SERVICE_LABEL, self.plane)]
            if pid is not None:
                items.append(("pid", pid))
            self._items[ident] = items
        return Merged(ident, items, self._texts)


class _Totals:
    """Series and drop counts summed so far."""

    __slots__ = ("drops", "series")

    def __init__(self, keys: Iterable[str]) -> None:
        self.series: Series = {key: {} for key in keys}
        self.drops: Drops = {}

    def copy(self) -> _Totals:
        copied = _Totals(self.series)
        copied.drops = dict(self.drops)
        for key, cells in self.series.items():
            copied.series[key] = {labels: cell.copy() for labels, cell in cells.items()}
        return copied
