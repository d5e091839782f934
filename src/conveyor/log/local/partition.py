"""A partition directory: finding its end, and appending to it under a file lock.

Appenders of every process serialize on ``P-NN/.lock``. Under the lock an appender first catches
up with what other processes wrote since its last append (walking the new entry headers), repairs
a torn tail left by a killed appender (by sealing the segment in front of it: files never shrink),
rolls the segment by size or time cycle, deletes segments older than the retention, then reserves
the space of its whole batch and writes it with one ``write``.

A torn tail is an entry that runs past the end of the file with no valid entry after it, or a
tail of zeros: it was never acknowledged, its offset is given to the next record. A complete
entry that fails its checksum is *damage*: its offset (and every offset the damaged bytes might
hold) is never given to other data; appends go on in a new segment named after the first offset
past them (a gap that readers reach once ``conveyor stream repair --skip-damaged`` has
quarantined the damage).
"""

from __future__ import annotations

import enum
import logging
import os
import re
import time
import zlib
from dataclasses import dataclass

from conveyor.errors import LogCorruptedError, LogNotFoundError
from conveyor.log.local.diskio import remove_quietly, reserve, storage_error, write_all
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
    entries_inside,
    header_bytes,
    list_segments,
    segment_name,
)

__all__ = ["EndTracker", "PartitionWriter", "Walk", "partition_dir", "walk"]

logger = logging.getLogger("conveyor.log.local")

_WALK_WINDOW = 16 << 20
_RESERVE_CHUNK = 256 << 10


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
    """Zeros from here to the end of the file (space allocated, data never written: a crash)."""
    CORRUPT = "corrupt"
    """A complete entry whose checksum fails: damage, not a torn write."""


@dataclass(slots=True)
class WalkResult:
    """Where a walk stopped, how many entries it passed and why it stopped."""

    position: int
    count: int
    stop: Walk


def walk(fd: int, position: int, size: int, verify: bool) -> WalkResult:
    """Walk entry headers of a segment from ``position`` to ``size``, counting complete entries.

    With ``verify``, checksums are checked too: a failing entry followed only by zeros is a torn
    tail (``TORN``); any other failing entry stops the walk on it (``CORRUPT``).
    """
    window = Window(fd, _WALK_WINDOW)
    unpack = ENTRY.unpack_from
    crc32 = zlib.crc32
    count = 0
    try:
        while True:
            if position >= size:
                return WalkResult(position, count, Walk.END)
            if position + 8 > size:
                return WalkResult(position, count, Walk.PARTIAL)
            if position < window.start or position + 8 > window.end:
                window.remap(position, 8, size)
            buf = window.buf
            assert buf is not None
            base = window.start
            limit = window.end
            while position + 8 <= limit:
                length, crc = unpack(buf, position - base)
                if length == SEAL and crc == SEAL:
                    return WalkResult(position, count, Walk.SEALED)
                end = position + 8 + length
                if end > size:
                    return WalkResult(position, count, Walk.PARTIAL)
                if end > limit:
                    break
                if verify and crc32(buf[position - base + 8 : end - base], length + 1) != crc:
                    torn = _zeros(fd, position, size)
                    return WalkResult(position, count, Walk.TORN if torn else Walk.CORRUPT)
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
            following = segment_from(self.directory, max(self._offset, self._segment.first_offset + 1))
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


def segment_from(directory: str, offset: int) -> SegmentInfo | None:
    """The first segment whose first offset is ``offset`` or more (after a seal: offsets skipped by
    a repair, or past damage, are a gap between the sealed segment and the next)."""
    for segment in list_segments(directory):
        if segment.first_offset >= offset:
            return segment
    return None


def segment_after(directory: str, first_offset: int) -> SegmentInfo | None:
    """The first segment that starts after the segment starting at ``first_offset``, if any."""
    return segment_from(directory, first_offset + 1)


class PartitionWriter:
    """Appends framed batches to one partition; used by one thread at a time (caller locks)."""

    def __init__(
        self,
        directory: str,
        segment_bytes: int,
        retention: Retention,
        fsync: FsyncPolicy,
        label: str = "",
    ) -> None:
        self.directory = directory
        self.label = label or f"local log partition {directory}"
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
        self._verify = True
        self._reserved_end = 0  # file position up to which space is reserved in the segment
        self._reservable = True

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
        self._reserved_end = 0

    def _create(self, first_offset: int) -> SegmentInfo:
        cycle = self.retention.cycle(int(time.time() * 1000))
        path = os.path.join(self.directory, segment_name(first_offset, cycle))
        for stale in list_segments(self.directory):
            if stale.first_offset == first_offset:  # a segment holding nothing valid (see _catch_up)
                os.unlink(stale.path)
        # Written under a temporary name then renamed, so readers never see a segment without
        # its header (they list only ``.seg`` files).
        temp = f"{path}.{os.getpid()}.tmp"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                write_all(fd, header_bytes(first_offset, cycle))
                if self.fsync.always or self.fsync.records or self.fsync.interval_ms:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, path)
        except BaseException as exc:
            remove_quietly(temp)
            if isinstance(exc, OSError) and exc.filename is None:
                exc.filename = path  # the error names the segment that could not be created
            raise
        return SegmentInfo(path, first_offset, cycle)

    def _catch_up(self) -> None:
        """Bring the position up to the end of the partition (called under the file lock)."""
        if not os.path.isdir(self.directory):
            raise LogNotFoundError(f"partition directory {self.directory} is gone (log deleted?)")
        while True:
            if self._fd is None:
                segments = list_segments(self.directory)
                if not segments:
                    self._open(self._create(0))
                    continue
                try:
                    self._open(segments[-1])
                except LogCorruptedError:
                    self._skip_bad_segment(segments[-1])
                continue
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
            if result.stop is Walk.END:
                return
            if result.stop is Walk.SEALED:
                following = segment_from(self.directory, max(self._offset, self._segment.first_offset + 1))
                self._open(following if following is not None else self._create(self._offset))
                continue
            later = segment_after(self.directory, self._segment.first_offset)
            if later is not None:
                # Not the last segment: whatever stopped the walk is damage for readers to report
                # (and `stream repair` to quarantine), never a tail to seal over or append after.
                logger.error(
                    "local log segment %s is damaged at position %d (offset %d) and followed by %s: "
                    "appends go on in the last segment; run `conveyor stream check`",
                    self._segment.path,
                    self._position,
                    self._offset,
                    later.path,
                )
                self._open(later)
                continue
            if result.stop is Walk.CORRUPT:
                self._skip_damage(stat.st_size, "fails its checksum")
                continue
            if (
                result.stop is Walk.PARTIAL
                and entries_inside(os.pread(self._fd, stat.st_size - self._position, self._position))
                is not None
            ):
                self._skip_damage(stat.st_size, "runs past the end of the file but valid entries follow it")
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

    def _skip_damage(self, size: int, problem: str) -> None:
        """The entry at the current position is damaged (``problem``): seal the segment after
        the damage and go on in a new segment whose first offset no damaged byte can have held.

        Every entry takes 8 bytes or more, so the damaged bytes hold at most ``(size - position)
        // 8`` offsets: offsets stay monotonic whatever the damage did to the lengths.
        """
        assert self._fd is not None and self._segment is not None
        damaged_at, first_lost = self._position, self._offset
        resume = first_lost + (size - damaged_at) // ENTRY.size
        logger.error(
            "%s: entry at position %d of %s (offset %d) %s; offsets "
            "%d..%d are skipped and appends go on at offset %d in a new segment. Readers stop "
            "at the damage until `conveyor stream repair --skip-damaged` quarantines it",
            self.label,
            damaged_at,
            self._segment.path,
            first_lost,
            problem,
            first_lost,
            resume - 1,
            resume,
        )
        self._position = size
        self._reserve(len(SEAL_BYTES))
        write_all(self._fd, SEAL_BYTES)  # O_APPEND: after the damaged bytes, which stay as they are
        if self.fsync.always or self.fsync.records or self.fsync.interval_ms:
            os.fsync(self._fd)
        self._offset = resume
        self._open(self._create(resume))
        self._verify = False

    def _skip_bad_segment(self, segment: SegmentInfo) -> None:
        """The last segment has a bad header: go on in a new segment past every offset it can hold."""
        size = os.path.getsize(segment.path)
        resume = segment.first_offset + max(1, size // ENTRY.size)
        logger.error(
            "%s: segment %s has a bad header; appends go on at offset %d in a new segment",
            self.label,
            segment.path,
            resume,
        )
        self._open(self._create(resume))
        self._verify = False

    def _reserve(self, length: int) -> None:
        """Reserve the next ``length`` bytes of the segment, so a full disk fails the append before
        anything is written (a bigger chunk at a time, to spare a system call per append)."""
        assert self._fd is not None
        end = self._position + length
        if not self._reservable or end <= self._reserved_end:
            return
        chunk = max(length, min(_RESERVE_CHUNK, self.segment_bytes - self._position))
        try:
            done = reserve(self._fd, self._position, chunk)
        except OSError:
            if chunk == length:
                raise
            chunk = length
            done = reserve(self._fd, self._position, chunk)
        if not done:
            self._reservable = False
            return
        self._reserved_end = self._position + chunk

    def _roll(self, seal_at: int | None = None) -> None:
        """Seal the current segment, then start a new one at the current offset.

        In this order a crash in between leaves a sealed segment with no successor, which the
        next appender completes; the other order could leave an unsealed segment that readers
        would wait at forever.
        """
        assert self._fd is not None and self._segment is not None
        if seal_at is None:
            self._reserve(len(SEAL_BYTES))
            write_all(self._fd, SEAL_BYTES)
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
        """Write ``count`` framed entries (``data``) as one write; the offset of the first.

        Raises ``StorageFullError`` / ``StorageError`` (naming the partition and the file) when
        the disk is full or failing: the batch is not acknowledged, earlier ones are intact.
        """
        with self.lock:
            try:
                return self._append(data, count)
            except OSError as exc:
                # The next append opens the last segment again and walks it, checksums included:
                # whatever reached the file counts (a partial write is a torn tail it seals over).
                path = self._path_of(exc)
                self._close_segment()
                if isinstance(exc, FileNotFoundError) and not os.path.isdir(self.directory):
                    raise LogNotFoundError(
                        f"partition directory {self.directory} is gone (log deleted?)"
                    ) from exc
                raise storage_error(exc, f"appending {count} record(s) to {self.label}", path) from exc

    def _path_of(self, exc: OSError) -> str:
        """The file an error is about: a new segment (named without its temporary suffix), else
        the segment being written."""
        if isinstance(exc.filename, str):
            return re.sub(r"\.\d+\.tmp$", "", exc.filename)
        return self._segment.path if self._segment is not None else self.directory

    def _append(self, data: bytes, count: int) -> int:
        self._catch_up()
        assert self._segment is not None
        if self._position > HEADER.size and (
            self._position + len(data) > self.segment_bytes
            or (
                self.retention.cycles and self.retention.cycle(int(time.time() * 1000)) != self._segment.cycle
            )
        ):
            self._roll()
        assert self._fd is not None
        self._reserve(len(data))
        write_all(self._fd, data)
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
            try:
                self._catch_up()
            except OSError as exc:
                path = self._path_of(exc)
                self._close_segment()
                raise storage_error(exc, f"finding the end of {self.label}", path) from exc
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
