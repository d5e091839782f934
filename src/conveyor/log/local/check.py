"""Finding and quarantining damage in the partitions of a local log (``conveyor stream check|repair``).

A scan walks every entry of every segment, checksums included, and tells apart:

- a *torn tail*: the last segment ends with an entry cut by the end of the file, or with zeros
  (a crash during a write, nothing acknowledged); the next append seals over it. Not damage.
- *damage*: a complete entry that fails its checksum, a bad segment header, or a segment that is
  followed by another one but ends without its seal (truncated, or a length that runs past the
  end of the file). Readers raise ``LogCorruptedError`` on it at every read.

A repair (under the partition's append lock) moves the damaged bytes to
``P-NN/quarantine/<segment>@<position>.damaged`` (with a ``.json`` describing them), seals the
segment just before the damage, and keeps the valid entries found after the damage in a new
segment, so the damaged offsets become a *gap*: readers go on past it, no offset is ever given to
other data. The number of offsets skipped is reported: the records they held are lost (in the
last segment, where no later segment tells how many entries the damaged bytes held, the gap is
as large as they could have held, at most one offset per 8 bytes).
"""

from __future__ import annotations

import json
import os
import time
import zlib
from dataclasses import asdict, dataclass, field

from conveyor.errors import LogCorruptedError
from conveyor.log.local.diskio import fsync_dir, remove_quietly, storage_error, write_all
from conveyor.log.local.locks import FileLock
from conveyor.log.local.segment import (
    ENTRY,
    HEADER,
    MAGIC,
    SEAL,
    SEAL_BYTES,
    SegmentInfo,
    entries_inside,
    header_bytes,
    list_segments,
    segment_name,
)

__all__ = [
    "DamagedRange",
    "PartitionCheck",
    "RepairedRange",
    "TornTail",
    "check_partition",
    "repair_partition",
]

QUARANTINE = "quarantine"


@dataclass(frozen=True, slots=True)
class DamagedRange:
    """A damaged stretch of one partition: offsets ``first_offset .. end_offset - 1`` cannot be read."""

    partition: int
    path: str
    """The segment file holding the damage."""
    position: int
    """File position where the damage starts."""
    first_offset: int
    """The first offset that cannot be read."""
    end_offset: int
    """The first offset readers get back to once the damage is repaired (skipped)."""
    damaged_bytes: int
    reason: str
    kept: int = 0
    """Valid entries found after the damage in the same segment, kept by a repair."""

    @property
    def lost(self) -> int:
        """Offsets a repair skips: the records they held are lost."""
        return max(0, self.end_offset - self.first_offset)


@dataclass(frozen=True, slots=True)
class TornTail:
    """The end of the last segment is an unfinished write (sealed over by the next append)."""

    partition: int
    path: str
    position: int
    offset: int


@dataclass(frozen=True, slots=True)
class RepairedRange:
    """A damaged range moved aside by a repair."""

    damage: DamagedRange
    quarantine: str
    """The file holding the damaged bytes."""


@dataclass(slots=True)
class PartitionCheck:
    """What a scan of one partition found."""

    partition: int
    segments: int = 0
    records: int = 0
    damaged: list[DamagedRange] = field(default_factory=list)
    torn: TornTail | None = None


@dataclass(slots=True)
class _Scan:
    records: int
    damage: DamagedRange | None = None
    torn: TornTail | None = None
    # valid entries after the damage: file range [start, end), count, and whether a seal ends them
    suffix: tuple[int, int, int, bool] | None = None


def _zeros(data: bytes, position: int) -> bool:
    return data.count(0, position) == len(data) - position


def _suffix(data: bytes, start: int, last: bool) -> tuple[int, int, int, bool] | None:
    """Valid entries from ``start`` on, up to a seal (or the end of the last segment); None if the
    framing does not hold to there."""
    size = len(data)
    unpack = ENTRY.unpack_from
    pos, count = start, 0
    while True:
        if pos + ENTRY.size > size:
            if not last:
                return None
            break  # the end, or a torn tail after the valid entries
        length, crc = unpack(data, pos)
        if length == SEAL and crc == SEAL:
            return (start, pos, count, True) if count else None
        end = pos + ENTRY.size + length
        if end > size:
            if not last:
                return None
            break
        if zlib.crc32(data[pos + ENTRY.size : end], length + 1) != crc:
            if last and _zeros(data, pos):
                break
            return None
        count += 1
        pos = end
    return (start, pos, count, False) if count else None


def _scan(partition: int, segment: SegmentInfo, successor: SegmentInfo | None, data: bytes) -> _Scan:
    size = len(data)
    last = successor is None

    def damage(pos: int, offset: int, reason: str, suffix: tuple[int, int, int, bool] | None = None) -> _Scan:
        if successor is not None:
            end = max(successor.first_offset, offset)
        else:  # no later segment says how many entries the damaged bytes held: as many as could fit
            end = offset + max(1, (size - pos) // ENTRY.size)
        kept = 0
        if suffix is not None:
            kept = suffix[2]
            if end - kept <= offset:  # inconsistent with the next segment: keep nothing
                suffix, kept = None, 0
        damaged_end = suffix[0] if suffix is not None else size
        found = DamagedRange(
            partition, segment.path, pos, offset, end - kept, damaged_end - pos, reason, kept
        )
        return _Scan(offset - segment.first_offset, damage=found, suffix=suffix)

    first = segment.first_offset
    if size < HEADER.size:
        return damage(0, first, f"truncated header ({size} bytes)")
    magic, header_first, _cycle = HEADER.unpack_from(data)
    if magic != MAGIC or header_first != first:
        return damage(0, first, "bad segment header")
    unpack = ENTRY.unpack_from
    pos, offset = HEADER.size, first
    while True:
        if pos == size:
            if last:
                return _Scan(offset - first)
            return damage(pos, offset, "the segment ends without its seal (truncated) but is not the last")
        if pos + ENTRY.size > size:
            if last:
                return _Scan(offset - first, torn=TornTail(partition, segment.path, pos, offset))
            return damage(pos, offset, "the segment is cut inside an entry header (truncated)")
        length, crc = unpack(data, pos)
        if length == SEAL and crc == SEAL:
            return _Scan(offset - first)
        end = pos + ENTRY.size + length
        if end > size:
            if last:
                hidden = entries_inside(data[pos:])
                if hidden is None:
                    return _Scan(offset - first, torn=TornTail(partition, segment.path, pos, offset))
                return damage(
                    pos,
                    offset,
                    f"an entry's length ({length}) runs past the end of the file but valid entries follow it",
                    _suffix(data, pos + hidden, last),
                )
            # Sealed after the damage by an appender: valid entries may lie between the two.
            sealed_end = size - ENTRY.size if data.endswith(SEAL_BYTES) else None
            hidden = entries_inside(data[pos:sealed_end]) if sealed_end is not None else None
            return damage(
                pos,
                offset,
                f"an entry of {length} bytes runs past the end of the file (truncated or bad length)",
                _suffix(data, pos + hidden, last) if hidden is not None else None,
            )
        if zlib.crc32(data[pos + ENTRY.size : end], length + 1) != crc:
            if last and _zeros(data, pos):
                return _Scan(offset - first, torn=TornTail(partition, segment.path, pos, offset))
            return damage(pos, offset, "an entry fails its checksum", _suffix(data, end, last))
        pos = end
        offset += 1


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        return None


def _scan_partition(
    partition: int, directory: str
) -> tuple[PartitionCheck, list[tuple[SegmentInfo, _Scan, bytes]]]:
    segments = list_segments(directory)
    result = PartitionCheck(partition, len(segments))
    damaged: list[tuple[SegmentInfo, _Scan, bytes]] = []
    for index, segment in enumerate(segments):
        data = _read(segment.path)
        if data is None:  # expired meanwhile
            continue
        successor = segments[index + 1] if index + 1 < len(segments) else None
        scan = _scan(partition, segment, successor, data)
        result.records += scan.records + (scan.suffix[2] if scan.suffix else 0)
        if scan.damage is not None:
            result.damaged.append(scan.damage)
            damaged.append((segment, scan, data))
        if scan.torn is not None:
            result.torn = scan.torn
    return result, damaged


def check_partition(partition: int, directory: str) -> PartitionCheck:
    """Scan every segment of the partition in ``directory`` (read only)."""
    return _scan_partition(partition, directory)[0]


def _write_file(path: str, data: bytes, what: str) -> None:
    """Write ``path`` whole (temporary file, fsync, rename): it exists complete or not at all."""
    temp = f"{path}.{os.getpid()}.repair.tmp"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, path)
    except OSError as exc:
        remove_quietly(temp)
        raise storage_error(exc, what, path) from exc


def _repair_one(directory: str, segment: SegmentInfo, scan: _Scan, data: bytes, label: str) -> RepairedRange:
    damage = scan.damage
    assert damage is not None
    quarantine_dir = os.path.join(directory, QUARANTINE)
    os.makedirs(quarantine_dir, exist_ok=True)
    base = os.path.join(quarantine_dir, f"{os.path.basename(segment.path)}@{damage.position}")
    what = f"repairing {label}"
    # 1. the damaged bytes, aside (nothing is deleted: they stay for inspection)
    end = scan.suffix[0] if scan.suffix is not None else len(data)
    _write_file(base + ".damaged", data[damage.position : end], what)
    description = {**asdict(damage), "lost": damage.lost, "repaired_at_ms": int(time.time() * 1000)}
    _write_file(base + ".json", json.dumps(description, indent=2).encode(), what)
    # 2. the entries after the damage (or, at the end of the partition, an empty segment) start at
    # the first offset past the gap, so that no appender ever gives a skipped offset again
    existing = {s.first_offset for s in list_segments(directory)}
    if damage.end_offset not in existing:  # (present when a repair was interrupted after it)
        successor_exists = any(first > segment.first_offset for first in existing)
        path = os.path.join(directory, segment_name(damage.end_offset, segment.cycle))
        header = header_bytes(damage.end_offset, segment.cycle)
        if scan.suffix is not None:
            start, stop, _count, sealed = scan.suffix
            _write_file(
                path, header + data[start:stop] + (SEAL_BYTES if sealed or successor_exists else b""), what
            )
        elif not successor_exists:
            _write_file(path, header, what)
    # 3. the damaged segment, sealed just before the damage (replaced whole: open readers see
    # their file unlinked and find their offset again)
    prefix = data[: damage.position] if damage.position >= HEADER.size else b""
    if not prefix:
        prefix = header_bytes(segment.first_offset, segment.cycle)
    _write_file(segment.path, prefix + SEAL_BYTES, what)
    fsync_dir(directory)
    return RepairedRange(damage, base + ".damaged")


def repair_partition(partition: int, directory: str, label: str = "") -> list[RepairedRange]:
    """Quarantine every damaged range of the partition in ``directory`` (see module doc).

    Holds the partition's append lock meanwhile: appenders of every process wait.
    """
    label = label or f"local log partition {directory}"
    repaired: list[RepairedRange] = []
    lock = FileLock(os.path.join(directory, ".lock"))
    done: set[tuple[str, int]] = set()
    try:
        with lock:
            while True:
                damaged = _scan_partition(partition, directory)[1]
                if not damaged:
                    break
                segment, scan, data = damaged[0]
                assert scan.damage is not None
                where = (scan.damage.path, scan.damage.position)
                if where in done:
                    raise LogCorruptedError(
                        f"{label}: the damage at position {where[1]} of {where[0]} is still there after "
                        "its repair; move the partition's files aside and restore them from a copy",
                        where[0],
                        where[1],
                    )
                done.add(where)
                repaired.append(_repair_one(directory, segment, scan, data, label))
    finally:
        lock.close()
    return repaired
