"""A partition directory: finding its end, and appending to it under a file lock.

Appenders of every process serialize on ``P-NN/.lock``. Under the lock an appender first catches
up with what other processes wrote since its last append (walking the new entry headers), repairs
a torn tail left by a killed appender (by sealing the segment in front of it: files never shrink),
rolls the segment by size or time cycle, deletes segments older than the retention, then writes
its whole batch with one ``write``.
"""

from __future__ import annotations

import enum
import logging
import os
import time
import zlib
from dataclasses import dataclass

from conveyor.errors import LogNotFoundError
from conveyor.log.local.locks import FileLock
from conveyor.log.local.options import FsyncPolicy, Retention
from conveyor.log.local.segment import (
    ENTRY,
    HEADER,
    SEAL,
    SEAL_BYTES,
    SegmentInfo,
    Window,
    check_header,
    header_bytes,
    list_segments,
    segment_name,
)

__all__ = ["EndTracker", "PartitionWriter", "Walk", "partition_dir", "walk"]

logger = logging.getLogger("conveyor.log.local")

_WALK_WINDOW = 16 << 20


def partition_dir(log_dir: str, partition: int) -> str:
    """The directory of partition ``partition`` of the log in ``log_dir``."""
    return os.path.join(log_dir, f"P-{partition:02d}")


class Walk(enum.Enum):
    """Why a walk over entry headers stopped."""

    END = "end"
    """At the end of the file, on an entry boundary."""
    PARTIAL = "partial"
    """An entry runs past the end of the file: being written, or torn by a crash."""
    SEALED = "sealed"
    """On the seal: the partition continues in the next segment."""
    TORN = "torn"
    """A last entry whose checksum fails (crash before its data reached the disk)."""


@dataclass(slots=True)
class WalkResult:
    """Where a walk stopped, how many entries it passed and why it stopped."""

    position: int
    count: int
    stop: Walk
    corrupt_at: int | None = None


def walk(fd: int, position: int, size: int, verify: bool) -> WalkResult:
    """Walk entry headers of a segment from ``position`` to ``size``, counting complete entries.

    With ``verify``, checksums are checked too: a failing last entry (or one followed only by
    zeros) is a torn tail; a failing entry elsewhere is remembered in ``corrupt_at`` and passed.
    """
    window = Window(fd, _WALK_WINDOW)
    unpack = ENTRY.unpack_from
    crc32 = zlib.crc32
    count = 0
    corrupt_at: int | None = None
    try:
        while True:
            if position >= size:
                return WalkResult(position, count, Walk.END, corrupt_at)
            if position + 8 > size:
                return WalkResult(position, count, Walk.PARTIAL, corrupt_at)
            if position < window.start or position + 8 > window.end:
                window.remap(position, 8, size)
            buf = window.buf
            assert buf is not None
            base = window.start
            limit = window.end
            while position + 8 <= limit:
                length, crc = unpack(buf, position - base)
                if length == SEAL and crc == SEAL:
                    return WalkResult(position, count, Walk.SEALED, corrupt_at)
                end = position + 8 + length
                if end > size:
                    return WalkResult(position, count, Walk.PARTIAL, corrupt_at)
                if end > limit:
                    break
                if verify and crc32(buf[position - base + 8 : end - base], length + 1) != crc:
                    if end == size or _zeros(fd, position, size):
                        return WalkResult(position, count, Walk.TORN, corrupt_at)
                    if corrupt_at is None:
                        corrupt_at = position
                count += 1
                position = end
            else:
                continue
            window.remap(position, 8 + length, size)
    finally:
        window.close()


def _zeros(fd: int, position: int, size: int) -> bool:
    chunk = 1 << 20
    while position < size:
        data = os.pread(fd, min(chunk, size - position), position)
        if not data or data.count(0) != len(data):
            return False
        position += len(data)
    return True


class EndTracker:
    """Follows the end of a partition (next offset to be written) without locking, incrementally."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._fd: int | None = None
        self._segment: SegmentInfo | None = None
        self._position = 0
        self._offset = 0

    def _open(self, segment: SegmentInfo) -> None:
        self.close()
        self._fd = os.open(segment.path, os.O_RDONLY | os.O_CLOEXEC)
        self._segment = segment
        self._position = HEADER.size
        self._offset = segment.first_offset

    def first_offset(self) -> int:
        """The first offset still stored (older segments may have been deleted by retention)."""
        segments = list_segments(self.directory)
        return segments[0].first_offset if segments else 0

    def end_offset(self) -> int:
        """The offset the next appended record will get (torn tails are not counted)."""
        for _ in range(1000):
            if self._fd is None:
                segments = list_segments(self.directory)
                if not segments:
                    return 0
                try:
                    self._open(segments[-1])
                except FileNotFoundError:
                    continue
            assert self._fd is not None and self._segment is not None
            stat = os.fstat(self._fd)
            if stat.st_nlink == 0:  # deleted (log deleted or segment expired): start over
                self.close()
                continue
            if stat.st_size <= self._position:
                return self._offset
            result = walk(self._fd, self._position, stat.st_size, verify=False)
            self._position = result.position
            self._offset += result.count
            if result.stop is not Walk.SEALED:
                return self._offset
            following = _segment_at(self.directory, self._offset)
            if following is None:
                return self._offset
            try:
                self._open(following)
            except FileNotFoundError:
                self.close()
        return self._offset

    def close(self) -> None:
        """Close the segment file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._segment = None


def _segment_at(directory: str, first_offset: int) -> SegmentInfo | None:
    for segment in list_segments(directory):
        if segment.first_offset == first_offset:
            return segment
    return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class PartitionWriter:
    """Appends framed batches to one partition; used by one thread at a time (caller locks)."""

    def __init__(
        self,
        directory: str,
        segment_bytes: int,
        retention: Retention,
        fsync: FsyncPolicy,
    ) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.retention = retention
        self.fsync = fsync
        self.lock = FileLock(os.path.join(directory, ".lock"))
        self._fd: int | None = None
        self._segment: SegmentInfo | None = None
        self._position = 0
        self._offset = 0
        self._unsynced = 0
        self._last_sync = time.monotonic()

    # --- catching up ---------------------------------------------------------------------------

    def _open(self, segment: SegmentInfo) -> None:
        self._close_segment()
        fd = os.open(segment.path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        try:
            check_header(os.pread(fd, HEADER.size, 0), segment.path, segment.first_offset)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._segment = segment
        self._position = HEADER.size
        self._offset = segment.first_offset
        self._verify = True

    def _create(self, first_offset: int) -> SegmentInfo:
        cycle = self.retention.cycle(int(time.time() * 1000))
        path = os.path.join(self.directory, segment_name(first_offset, cycle))
        for stale in list_segments(self.directory):
            if stale.first_offset == first_offset:  # a segment holding nothing valid (see _catch_up)
                os.unlink(stale.path)
        # Written under a temporary name then renamed, so readers never see a segment without
        # its header (they list only ``.seg`` files).
        temp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            _write_all(fd, header_bytes(first_offset, cycle))
            if self.fsync.always or self.fsync.records or self.fsync.interval_ms:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, path)
        return SegmentInfo(path, first_offset, cycle)

    def _catch_up(self) -> None:
        """Bring the position up to the end of the partition (called under the file lock)."""
        if not os.path.isdir(self.directory):
            raise LogNotFoundError(f"partition directory {self.directory} is gone (log deleted?)")
        while True:
            if self._fd is None:
                segments = list_segments(self.directory)
                self._open(segments[-1] if segments else self._create(0))
            assert self._fd is not None and self._segment is not None
            stat = os.fstat(self._fd)
            if stat.st_nlink == 0:
                self._close_segment()
                if not os.path.isdir(self.directory):
                    raise LogNotFoundError(f"partition directory {self.directory} is gone (log deleted?)")
                continue
            if stat.st_size == self._position:
                self._verify = False
                return
            result = walk(self._fd, self._position, stat.st_size, verify=self._verify)
            self._verify = False
            self._position = result.position
            self._offset += result.count
            if result.corrupt_at is not None:
                logger.error(
                    "segment %s is corrupted at position %d (readers will stop there)",
                    self._segment.path,
                    result.corrupt_at,
                )
            if result.stop is Walk.END:
                return
            if result.stop is Walk.SEALED:
                following = _segment_at(self.directory, self._offset)
                self._open(following if following is not None else self._create(self._offset))
                continue
            # A torn tail: the appender that wrote it died (we hold the lock).
            logger.warning(
                "repairing torn entry at %s position %d (offset %d)",
                self._segment.path,
                self._position,
                self._offset,
            )
            if self._offset == self._segment.first_offset:
                # Nothing valid in this segment: the next one would have the same first offset
                # (and name), so replace it whole; readers notice their file was unlinked.
                self._open(self._create(self._offset))
                self._verify = False
            else:
                self._roll(seal_at=self._position)

    def _roll(self, seal_at: int | None = None) -> None:
        """Seal the current segment, then start a new one at the current offset.

        In this order a crash in between leaves a sealed segment with no successor, which the
        next appender completes; the other order could leave an unsealed segment that readers
        would wait at forever.
        """
        assert self._fd is not None and self._segment is not None
        if seal_at is None:
            _write_all(self._fd, SEAL_BYTES)
        else:
            # pwrite on an O_APPEND descriptor appends on Linux: write through a plain one.
            _pwrite_in_place(self._segment.path, seal_at)
        if self.fsync.always or self.fsync.records or self.fsync.interval_ms:
            os.fsync(self._fd)
        self._open(self._create(self._offset))
        self._verify = False
        self._expire()

    def _expire(self) -> None:
        if not self.retention.cycles:
            return
        oldest_kept = self.retention.cycle(int(time.time() * 1000)) - self.retention.cycles + 1
        segments = list_segments(self.directory)
        for segment in segments[:-1]:
            if segment.cycle < oldest_kept and segment != self._segment:
                try:
                    os.unlink(segment.path)
                except FileNotFoundError:
                    pass

    # --- appending -----------------------------------------------------------------------------

    def append(self, data: bytes, count: int) -> int:
        """Write ``count`` framed entries (``data``) as one write; the offset of the first."""
        with self.lock:
            self._catch_up()
            assert self._segment is not None
            if self._position > HEADER.size and (
                self._position + len(data) > self.segment_bytes
                or (
                    self.retention.cycles
                    and self.retention.cycle(int(time.time() * 1000)) != self._segment.cycle
                )
            ):
                self._roll()
            assert self._fd is not None
            _write_all(self._fd, data)
            first = self._offset
            self._position += len(data)
            self._offset += count
            self._maybe_sync(count)
            return first

    def _maybe_sync(self, count: int) -> None:
        policy = self.fsync
        if policy.always:
            os.fdatasync(self._fd)  # type: ignore[arg-type]
            return
        if not (policy.records or policy.interval_ms):
            return
        self._unsynced += count
        now = time.monotonic()
        if (policy.records and self._unsynced >= policy.records) or (
            policy.interval_ms and (now - self._last_sync) * 1000 >= policy.interval_ms
        ):
            os.fdatasync(self._fd)  # type: ignore[arg-type]
            self._unsynced = 0
            self._last_sync = now

    def end_offset(self) -> int:
        """The next offset (catching up with other processes)."""
        with self.lock:
            self._catch_up()
            return self._offset

    def _close_segment(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._segment = None

    def close(self) -> None:
        """Flush (per the fsync policy) and close files."""
        if self._fd is not None and self._unsynced:
            os.fdatasync(self._fd)
        self._close_segment()
        self.lock.close()


def _pwrite_in_place(path: str, position: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.pwrite(fd, SEAL_BYTES, position)
    finally:
        os.close(fd)
