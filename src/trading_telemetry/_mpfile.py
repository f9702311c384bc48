"""One process's file of one plane in the multiprocess directory, and its reader.

The layout follows prometheus_client's ``MmapedDict`` (a used-bytes header, then records
of a length-prefixed key and its values, 8-byte aligned), with one record per series
holding all of that series' values (a histogram's buckets and sum together)::

    magic "ttm1" (4 bytes) | bytes used (uint32)
    record: key length (uint32) | value count (uint32) | key (JSON, padded to 8) | doubles

The writer maps the file shared and hands out a memoryview of each record's doubles: a
recording stores a double (no system call, no key lookup). A record is written whole
before the used-bytes header grows over it, so a reader never parses half a record.
Space is reserved with ``posix_fallocate`` before it is mapped (Linux): a full tmpfs makes
the reservation fail (reported, recording goes on in memory) instead of a SIGBUS on a store.

The writer holds an exclusive ``flock`` on its file for as long as its process lives; a
reader that can take a shared lock knows the process has ended, however it ended.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import mmap
import os
import struct
from collections.abc import Iterator
from typing import Any

__all__ = ["SUFFIX", "FileReader", "Record", "SlotFile", "plane_files"]

MAGIC = b"ttm1"
HEADER = 8
INITIAL_BYTES = mmap.PAGESIZE
SUFFIX = ".mmap"
_RECORD = struct.Struct("=II")
_USED = struct.Struct("=I")
_MAX_BYTES = 1 << 31  # the header's uint32 (and far beyond any catalog's series)

Record = tuple[Any, int, int]
"""(key decoded from JSON, offset of its first double, number of doubles)."""


def _reserve(fd: int, size: int) -> None:
    """Make the file ``size`` bytes, its blocks allocated where the system can (Linux):
    then a full file system fails here, not as a SIGBUS on a store into the mapping."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        fallocate(fd, 0, size)
    else:  # macOS: no reservation
        os.ftruncate(fd, size)


def _padded(key_length: int) -> int:
    return (_RECORD.size + key_length + 7) // 8 * 8


class SlotFile:
    """This process's file: records appended under the caller's lock, values written in place."""

    def __init__(self, path: str) -> None:
        # Made under a name readers skip, then renamed: a reader never sees the file
        # before it is locked (it would take it for an ended process's) and has its header.
        directory, name = os.path.split(path)
        making = os.path.join(directory, f".{name}.new")
        fd = os.open(making, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        lock = -1
        try:
            # The lock is taken through a descriptor of its own: mmap keeps a duplicate of
            # the one it maps, which a forked child would inherit, and the lock with it.
            lock = os.open(making, os.O_RDONLY | os.O_CLOEXEC)
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held while this process lives
            _reserve(fd, INITIAL_BYTES)
            self._map = mmap.mmap(fd, INITIAL_BYTES)
            self._map[0:4] = MAGIC
            _USED.pack_into(self._map, 4, HEADER)
            os.rename(making, path)
        except BaseException:
            for opened in (fd, lock):
                if opened >= 0:
                    os.close(opened)
            with contextlib.suppress(OSError):
                os.unlink(making)
            raise
        self.path = path
        self._fd = fd
        self._lock = lock
        self._capacity = INITIAL_BYTES
        self._doubles: memoryview[float] = memoryview(self._map).cast("d")
        self._used = HEADER

    def add(self, key: bytes, count: int) -> memoryview[float]:
        """A new record of ``count`` doubles (zero) under ``key``: the view to write them."""
        start = self._used
        values = start + _padded(len(key))
        end = values + 8 * count
        if end > self._capacity:
            self._grow(end)
        _RECORD.pack_into(self._map, start, len(key), count)
        self._map[start + _RECORD.size : start + _RECORD.size + len(key)] = key
        self._used = end
        _USED.pack_into(self._map, 4, end)  # published once the record is whole
        return self._doubles[values // 8 : end // 8]

    def _grow(self, needed: int) -> None:
        capacity = self._capacity
        while capacity < needed:
            capacity *= 2
        if capacity > _MAX_BYTES:
            raise OSError(f"{self.path}: more than {_MAX_BYTES} bytes of series")
        _reserve(self._fd, capacity)
        # A new, larger mapping; the views handed out keep the old one alive, and both
        # map the same pages of the file.
        self._map = mmap.mmap(self._fd, capacity)
        self._doubles = memoryview(self._map).cast("d")
        self._capacity = capacity

    def disown(self) -> None:
        """In a forked child, or when the plane stops: close the descriptors (in a child,
        the parent's lock stays the parent's). The mapping stays: views into it may exist."""
        for fd in (self._lock, self._fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._lock = -1


class FileReader:
    """Reads a plane file: its records' keys once, their values at every call."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._map: mmap.mmap | None = None
        self._size = 0
        self._parsed = HEADER
        self.records: list[Record] = []
        self.bad = 0
        """Records that could not be read (not JSON): left out."""

    def refresh(self) -> None:
        """Read the records added since the last call."""
        size = os.fstat(self._fd).st_size
        if size < HEADER:
            return
        if size != self._size:
            old, self._map = self._map, mmap.mmap(self._fd, size, access=mmap.ACCESS_READ)
            self._size = size
            if old is not None:
                old.close()
        data = self._map
        assert data is not None
        if data[0:4] != MAGIC:
            return
        used = min(_USED.unpack_from(data, 4)[0], self._size)
        at = self._parsed
        while at + _RECORD.size <= used:
            key_length, count = _RECORD.unpack_from(data, at)
            values = at + _padded(key_length)
            end = values + 8 * count
            if end > used:
                break
            try:
                key = json.loads(bytes(data[at + _RECORD.size : at + _RECORD.size + key_length]))
            except ValueError:
                self.bad += 1
            else:
                self.records.append((key, values, count))
            at = end
        self._parsed = at

    def values(self, offset: int, count: int) -> tuple[float, ...]:
        """The doubles of a record, as they are now."""
        assert self._map is not None
        return struct.unpack_from(f"={count}d", self._map, offset)

    def live(self) -> bool:
        """Whether the writing process still runs (it holds its lock)."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        return False

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = -1


def plane_files(directory: str, plane: str) -> Iterator[str]:
    """The paths of ``plane``'s files in ``directory``."""
    prefix = plane + "-"
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(prefix) and entry.name.endswith(SUFFIX):
                yield entry.path
