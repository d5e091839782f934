"""Reading one partition: a position (segment, file position, offset) and an mmap window over it.

A reader never passes damage silently. At the end of what a segment holds it waits for more, as
long as the segment is the last one; once a later segment exists, the segment must end with its
seal (written before the next segment is created), so an entry cut by the end of the file, or a
missing seal, is damage and raises ``LogCorruptedError``, at every read, until a repair.
"""

from __future__ import annotations

import os
import time
import zlib
from typing import Any

from conveyor.errors import LogCorruptedError
from conveyor.log.local.locks import try_lock_file
from conveyor.log.local.partition import _zeros, segment_after
from conveyor.log.local.segment import (
    ENTRY,
    HEADER,
    SEAL,
    SegmentInfo,
    Window,
    check_header,
    entries_inside,
    list_segments,
)
from conveyor.log.types import LogOffset, LogPartition, LogRecord

__all__ = ["PartitionReader"]

# A directory whose mtime is this old (ns) gets a different one with its next entry (timestamps
# are coarse, a tick at most): an unchanged mtime then means no segment was added.
_SETTLED_NS = 100_000_000


class PartitionReader:
    """Reads entries of one partition in order, from a position set by :meth:`position`."""

    def __init__(self, directory: str, partition: LogPartition, window_bytes: int) -> None:
        self.directory = directory
        self.partition = partition
        self.window_bytes = window_bytes
        self._fd: int | None = None
        self._segment: SegmentInfo | None = None
        self._window: Window | None = None
        self._pos = 0
        self._offset = 0
        self._target = 0
        self._size = 0
        # mtime of the directory when it was last found without segments (None: look again)
        self._empty_mtime: int | None = None
        # mtime of the directory when the open segment was last found to be the last one
        self._last_mtime: int | None = None
        # (position, file size) of the last look for valid entries hidden behind a bad length,
        # and the error found then (None: none)
        self._hidden_key: tuple[int, int] | None = None
        self._hidden_error: LogCorruptedError | None = None

    @property
    def next_offset(self) -> int:
        """The offset the next read returns (the position to commit)."""
        return max(self._offset, self._target)

    def position(self, offset: int) -> None:
        """Move so that the next entry read is ``offset`` (or the first one kept, if older)."""
        self._close_segment()
        self._offset = 0
        self._target = offset

    def _open_for(self, offset: int) -> bool:
        # A partition nobody wrote to yet is polled by every idle tailer: one stat instead of a
        # listdir while its directory is unchanged.
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except FileNotFoundError:
            return False
        if mtime == self._empty_mtime:
            return False
        segments = list_segments(self.directory)
        if not segments:
            settled = time.time_ns() - mtime > _SETTLED_NS
            self._empty_mtime = mtime if settled else None
            return False
        self._empty_mtime = None
        chosen = segments[0]
        for segment in segments:
            if segment.first_offset <= offset:
                chosen = segment
            else:
                break
        try:
            self._open(chosen)
        except FileNotFoundError:  # expired meanwhile: look again
            return self._open_for(offset)
        return True

    def _open(self, segment: SegmentInfo) -> None:
        self._close_segment()
        fd = os.open(segment.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            check_header(os.pread(fd, HEADER.size, 0), segment.path, segment.first_offset)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._segment = segment
        self._window = Window(fd, self.window_bytes)
        self._pos = HEADER.size
        self._offset = segment.first_offset
        self._size = 0
        self._target = max(self._target, self._offset)
        self._last_mtime = None

    def _refill(self, needed: int) -> bool:
        """Map from the current position with at least ``needed`` bytes; False if not there yet."""
        assert self._fd is not None and self._window is not None
        end = self._pos + needed
        if end > self._size:
            stat = os.fstat(self._fd)
            self._size = stat.st_size
            if end > self._size:
                if stat.st_nlink == 0:
                    # Replaced (a torn segment or damage repaired) or expired: find the offset again.
                    self._target = max(self._target, self._offset)
                    self._close_segment()
                else:
                    self._check_end()
                return False
        self._window.remap(self._pos, needed, self._size)
        return True

    def _later_segment(self) -> SegmentInfo | None:
        """A segment after the open one, if there is one (a stat while the directory is unchanged)."""
        assert self._segment is not None
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except FileNotFoundError:
            return None
        if mtime == self._last_mtime:
            return None
        later = segment_after(self.directory, self._segment.first_offset)
        if later is None:
            self._last_mtime = mtime if time.time_ns() - mtime > _SETTLED_NS else None
        return later

    def _check_end(self) -> None:
        """No complete entry at the position: nothing yet, unless a later segment exists."""
        assert self._fd is not None and self._segment is not None
        later = self._later_segment()
        if later is None:
            if self._pos + ENTRY.size <= self._size:  # a header whose entry runs past the end
                self._check_hidden()
            return
        # The seal is written before the next segment is created: read the header again now.
        header = os.pread(self._fd, ENTRY.size, self._pos)
        size = os.fstat(self._fd).st_size
        if len(header) == ENTRY.size:
            length, crc = ENTRY.unpack(header)
            if (length == SEAL and crc == SEAL) or self._pos + ENTRY.size + length <= size:
                return  # read on the next call
            problem = f"its entry at position {self._pos} runs past the end of the file ({size} bytes)"
        else:
            problem = f"it ends at position {self._pos} without the seal that closes a segment"
        last = later.first_offset - 1
        unreadable = f"offsets {self._offset}..{last}" if last > self._offset else f"offset {self._offset}"
        raise LogCorruptedError(
            f"log partition {self.partition} is damaged: segment {self._segment.path} is followed by "
            f"{later.path} but {problem} (offset {self._offset}); {unreadable} cannot be read. See "
            "`conveyor stream check` and "
            "`conveyor stream repair --skip-damaged`",
            self._segment.path,
            self._pos,
        )

    def _next_segment(self) -> bool:
        assert self._segment is not None
        segments = list_segments(self.directory)
        # past a gap (offsets skipped by a repair), never back to this segment if it holds none
        lowest = max(self._offset, self._segment.first_offset + 1)
        following = [s for s in segments if s.first_offset >= lowest]
        if not following:
            return False
        try:
            self._open(following[0])
        except FileNotFoundError:
            return False
        return True

    def read(self, out: list[Any], limit: int, as_records: bool = False) -> int:
        """Append up to ``limit`` (offset, payload) pairs to ``out``, or ``LogRecord(payload,
        offset)`` with ``as_records``; how many were appended.

        Raises ``LogCorruptedError`` when the next entry is damaged (entries before it are
        returned first; the position stays on the damage, so every later read raises again).
        """
        before = len(out)
        try:
            return self._read(out, limit, as_records)
        except LogCorruptedError:
            if len(out) > before:
                return len(out) - before
            raise

    def _read(self, out: list[Any], limit: int, as_records: bool) -> int:
        count = 0
        unpack = ENTRY.unpack_from
        crc32 = zlib.crc32
        append = out.append
        # tuple.__new__ builds the named tuple without the Python-level __new__ of NamedTuple:
        # the same object, at half the cost, once per record.
        new = tuple.__new__
        partition = self.partition
        while count < limit:
            if self._fd is None and not self._open_for(self._target):
                return count
            if self._target > self._offset:
                if not self._skip():
                    return count
                continue
            window = self._window
            assert window is not None
            pos = self._pos
            if (pos + 8 > window.end or pos < window.start) and not self._refill(8):
                return count
            buf = window.buf
            assert buf is not None
            base = window.start
            at = pos - base  # positions in the mapping, not in the file, inside the loop
            last = window.end - base
            last_header = last - 8
            first = offset = self._offset
            stop = offset + limit - count
            length = crc = 0
            stalled = False
            while offset < stop and at <= last_header:
                length, crc = unpack(buf, at)
                start = at + 8
                end = start + length
                if end > last:
                    stalled = True
                    break
                data = buf[start:end]
                if crc32(data, length + 1) != crc:
                    count += offset - first
                    self._pos, self._offset = base + at, offset
                    if count:
                        return count
                    self._corrupted(base + at)
                    return 0
                if as_records:
                    append(new(LogRecord, (data, new(LogOffset, (partition, offset)))))
                else:
                    append((new(LogOffset, (partition, offset)), data))
                offset += 1
                at = end
            count += offset - first
            pos = base + at
            self._pos, self._offset = pos, offset
            self._target = max(self._target, offset)
            if count >= limit:
                return count
            if stalled and length == SEAL and crc == SEAL:
                if not self._next_segment():
                    return count
                continue
            if not self._refill(8 + length if stalled else 8):
                return count
        return count

    def _check_hidden(self) -> None:
        """In the last segment, an entry that runs past the end of the file is a write in progress
        or torn, unless valid entries follow it: then its length is damaged."""
        assert self._fd is not None and self._segment is not None
        size = os.fstat(self._fd).st_size
        key = (self._pos, size)
        if key != self._hidden_key:
            self._hidden_key, self._hidden_error = key, None
            header = os.pread(self._fd, ENTRY.size, self._pos)
            if len(header) < ENTRY.size:
                return
            length, crc = ENTRY.unpack(header)
            if (length == SEAL and crc == SEAL) or self._pos + ENTRY.size + length <= size:
                return
            start = entries_inside(os.pread(self._fd, size - self._pos, self._pos))
            if start is None:
                return
            if self._writing(size):
                self._hidden_key = None  # look again once the appender is done
                return
            self._hidden_error = LogCorruptedError(
                f"log partition {self.partition} is corrupted: entry at position {self._pos} of "
                f"{self._segment.path} (offset {self._offset}) has a length ({length}) that runs past "
                f"the end of the file, but valid entries follow it at position {self._pos + start}. See "
                "`conveyor stream check` and `conveyor stream repair --skip-damaged`",
                self._segment.path,
                self._pos,
            )
        if self._hidden_error is not None:
            raise LogCorruptedError(
                str(self._hidden_error), self._hidden_error.path, self._hidden_error.position
            )

    def _writing(self, size: int) -> bool:
        """Whether an appender may be writing the tail right now (it holds the partition's lock),
        or wrote more since ``size`` was read: what looked like valid entries behind an entry
        that runs past the end of the file may then be the part of its payload written so far."""
        assert self._fd is not None
        path = os.path.join(self.directory, ".lock")
        fd = try_lock_file(path)
        if fd is None:
            return os.path.exists(path)
        try:
            return os.fstat(self._fd).st_size != size
        finally:
            os.close(fd)

    def _corrupted(self, pos: int) -> None:
        """A checksum failed at ``pos``: a zero-filled tail of the last segment (crash, not yet
        repaired) reads as "nothing yet"; anything else is corruption."""
        assert self._fd is not None and self._segment is not None
        stat = os.fstat(self._fd)
        if stat.st_nlink == 0:  # replaced by a repair meanwhile: find the offset again
            self._target = max(self._target, self._offset)
            self._close_segment()
            return
        # In this order, an appender sealing over the zeros and starting the next segment
        # meanwhile is seen as its seal, never as damage.
        zeros = _zeros(self._fd, pos, stat.st_size)
        later = self._later_segment() if zeros else None
        header = os.pread(self._fd, ENTRY.size, pos)
        if header == b"\xff" * ENTRY.size or (zeros and later is None):
            return
        raise LogCorruptedError(
            f"log partition {self.partition} is corrupted: entry at position {pos} of "
            f"{self._segment.path} (offset {self._offset}) fails its checksum. See "
            "`conveyor stream check` and `conveyor stream repair --skip-damaged`",
            self._segment.path,
            pos,
        )

    def _skip(self) -> bool:
        """Pass entries up to the target offset; False when more data is needed.

        Checksums are verified: a damaged length would otherwise shift every offset after it.
        """
        unpack = ENTRY.unpack_from
        crc32 = zlib.crc32
        while self._offset < self._target:
            window = self._window
            if window is None:  # closed: the segment was replaced
                return False
            pos = self._pos
            if (pos + 8 > window.end or pos < window.start) and not self._refill(8):
                return False
            buf = window.buf
            assert buf is not None
            base = window.start
            length, crc = unpack(buf, pos - base)
            if length == SEAL and crc == SEAL:
                if not self._next_segment():
                    return False
                continue
            end = pos + 8 + length
            if end > window.end:
                if not self._refill(8 + length):
                    return False
                continue
            if crc32(buf[pos - base + 8 : end - base], length + 1) != crc:
                self._corrupted(pos)
                return False
            self._pos = end
            self._offset += 1
        return True

    def _close_segment(self) -> None:
        if self._window is not None:
            self._window.close()
            self._window = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._segment = None

    def close(self) -> None:
        """Unmap and close."""
        self._close_segment()
