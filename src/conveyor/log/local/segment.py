"""Segment files of a local log partition: naming, entry framing, checksums and mmap windows.

A segment is ``<first offset, 20 digits>-<cycle>.seg``: a 24-byte header (magic, first offset,
cycle) followed by entries ``[u32 length][u32 crc][payload]``. The crc is zlib's crc32 of the
payload seeded with ``length + 1``, so a changed length, or a zero-filled tail left by a crash
(length 0, crc 0), never passes as a valid entry. A segment ends with a *seal*, an entry header
whose two fields are ``0xFFFFFFFF``: the next offset continues in the first segment named after
it or a later offset (a later one is a gap: offsets skipped past damage, see ``check.py``). The
seal is always written before the next segment is created.

Files only grow (a torn tail is sealed over, never truncated), so a reader's mapping never points
past the end of its file.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ENTRY",
    "HEADER",
    "SEAL",
    "SegmentInfo",
    "Window",
    "entries_inside",
    "entry_crc",
    "frame",
    "frame_many",
    "list_segments",
    "segment_name",
]

MAGIC = b"CVYLOG01"
HEADER = struct.Struct("<8sQQ")
ENTRY = struct.Struct("<II")
SEAL = 0xFFFFFFFF
SEAL_BYTES = ENTRY.pack(SEAL, SEAL)
SUFFIX = ".seg"
GRANULARITY = mmap.ALLOCATIONGRANULARITY


def entry_crc(payload: bytes, length: int) -> int:
    """The checksum stored in the header of an entry."""
    return zlib.crc32(payload, length + 1)


def frame(payload: bytes) -> bytes:
    """One framed entry."""
    length = len(payload)
    return ENTRY.pack(length, zlib.crc32(payload, length + 1)) + payload


def frame_many(payloads: Sequence[bytes]) -> bytes:
    """Framed entries, concatenated (one write)."""
    pack = ENTRY.pack
    crc32 = zlib.crc32
    parts: list[bytes] = []
    append = parts.append
    for payload in payloads:
        length = len(payload)
        append(pack(length, crc32(payload, length + 1)))
        append(payload)
    return b"".join(parts)


_RESYNC_BYTES = 1 << 20
_RESYNC_HOPS = 1 << 21


def entries_inside(tail: bytes) -> int | None:
    """Where valid entries start inside ``tail`` and run exactly to its end, if they do.

    ``tail`` starts with an entry header whose length runs past the end of the file. A torn write
    ends the file: nothing valid follows it. Valid entries after it mean its length is damaged.
    Tails over 1 MiB, or too costly to search, are taken as torn (as the format says).
    """
    size = len(tail)
    if size > _RESYNC_BYTES + ENTRY.size:
        return None
    unpack = ENTRY.unpack_from
    hops = 0
    for start in range(ENTRY.size, size - ENTRY.size + 1):
        pos = start
        while pos + ENTRY.size <= size:
            length, _crc = unpack(tail, pos)
            pos += ENTRY.size + length
            hops += 1
        if hops > _RESYNC_HOPS:
            return None
        if pos != size:
            continue
        pos = start
        while pos < size:
            length, crc = unpack(tail, pos)
            end = pos + ENTRY.size + length
            if zlib.crc32(tail[pos + ENTRY.size : end], length + 1) != crc:
                break
            pos = end
        else:
            return start
    return None


def segment_name(first_offset: int, cycle: int) -> str:
    """The file name of the segment starting at ``first_offset`` in time cycle ``cycle``."""
    return f"{first_offset:020d}-{cycle}{SUFFIX}"


def header_bytes(first_offset: int, cycle: int) -> bytes:
    """The header of a new segment."""
    return HEADER.pack(MAGIC, first_offset, cycle)


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """A segment file found in a partition directory."""

    path: str
    first_offset: int
    cycle: int


def list_segments(directory: str) -> list[SegmentInfo]:
    """The segments of a partition directory, by first offset."""
    found: list[SegmentInfo] = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        if not name.endswith(SUFFIX):
            continue
        first, _, cycle = name[: -len(SUFFIX)].partition("-")
        if first.isdigit() and cycle.isdigit():
            found.append(SegmentInfo(os.path.join(directory, name), int(first), int(cycle)))
    found.sort(key=lambda s: s.first_offset)
    return found


def check_header(data: bytes, path: str, first_offset: int) -> None:
    """Raise ``LogCorruptedError`` unless ``data`` is the header of the segment ``path``."""
    from conveyor.errors import LogCorruptedError

    if len(data) < HEADER.size:
        raise LogCorruptedError(f"segment {path} has a truncated header", path, 0)
    magic, first, _cycle = HEADER.unpack_from(data)
    if magic != MAGIC or first != first_offset:
        raise LogCorruptedError(f"segment {path} has a bad header", path, 0)


class Window:
    """A read-only mapping of ``[start, start + len)`` of a file that only grows.

    ``buf`` is the mapping, ``start`` the file position of its first byte, ``end`` the file
    position just past its last byte. Positions handed to the methods are file positions.
    """

    __slots__ = ("buf", "end", "fd", "size_hint", "start")

    def __init__(self, fd: int, size_hint: int) -> None:
        self.fd = fd
        self.size_hint = size_hint
        self.buf: mmap.mmap | None = None
        self.start = 0
        self.end = 0

    def remap(self, position: int, needed: int, file_size: int) -> bool:
        """Map from ``position`` (at least ``needed`` bytes, if the file has them); True if mapped."""
        start = position - position % GRANULARITY
        length = min(file_size, start + max(self.size_hint, position - start + needed)) - start
        self.close()
        if length <= 0:
            return False
        self.buf = mmap.mmap(self.fd, length, access=mmap.ACCESS_READ, offset=start)
        self.start = start
        self.end = start + length
        return True

    def close(self) -> None:
        """Unmap."""
        if self.buf is not None:
            self.buf.close()
            self.buf = None
        self.start = self.end = 0
