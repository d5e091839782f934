"""Moving the committed position of a consumer group on a log: to the beginning, to the end, to an
offset of one partition, or to the first record at or after a time. One implementation for every
backend, below ``conveyor stream position`` and the REST API's ``consumer/position`` routes.

A move changes nothing and raises when:

- the group has never committed on the log (:class:`ConsumerGroupNotFoundError`), unless
  ``create`` (a typo would otherwise create a group that shows lag for good);
- a partition or an offset is out of range (:class:`PartitionOutOfRangeError`,
  :class:`PositionError` naming the valid range, from the first kept offset to the end);
- the group has live consumers (:class:`ConsumerGroupActiveError`): they keep their positions in
  memory and would commit over the move (on Kafka the broker refuses commits from outside the
  group). Stop them first.

Offsets by time (:func:`offset_for_timestamp`) come from the backend's own index where it has one
(Kafka's ``offsets_for_times``, the memory log's append times), else from a binary search on the
watermarks of the records (the local log keeps no append time), which needs the records to be
:class:`~conveyor.record.Record` s (their watermarks grow along a partition).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from conveyor.errors import (
    ConfigurationError,
    ConsumerGroupActiveError,
    ConsumerGroupNotFoundError,
    ConveyorError,
    LogError,
    PartitionOutOfRangeError,
    PositionError,
    TailerAlreadyExistsError,
    UnsupportedOperationError,
)
from conveyor.log.api import GroupLike, LogManager, LogTailer, NameLike
from conveyor.log.names import Name
from conveyor.log.types import LogLag, LogOffset, LogPartition

__all__ = [
    "POSITIONS",
    "RECORD_CODECS",
    "TimestampOf",
    "active_consumers",
    "check_group",
    "move_group",
    "offset_for_timestamp",
    "parse_timestamp",
    "record_timestamp",
]

POSITIONS = ("beginning", "end", "offset", "timestamp")
"""Where :func:`move_group` can move a group."""

RECORD_CODECS = ("avro", "msgpack", "json", "avroJson")
"""Codecs tried, in this order, on messages that should be Records (after the log's own)."""


def parse_timestamp(value: str) -> int:
    """Epoch milliseconds of an ISO-8601 date (UTC when it has no zone) or of a number of
    milliseconds; ``ValueError`` naming the value otherwise."""
    if value.isdigit():
        return int(value)
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"expected an ISO-8601 date (2024-01-31T12:00:00Z) or epoch milliseconds, got {value!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp() * 1000)


_PROBE_GROUP = Name.of("admin", "positions")
"""Never committed: its lag gives each partition's first kept offset and end."""


def check_group(manager: LogManager, name: NameLike, group: GroupLike, create: bool = False) -> None:
    """Raise :class:`ConsumerGroupNotFoundError` unless ``group`` has committed on log ``name``
    (or ``create``); ``LogNotFoundError`` when the log does not exist."""
    log, grp = Name.coerce(name), Name.coerce(group)
    known = manager.list_consumer_groups(log)
    if create or grp in known:
        return
    listed = ", ".join(g.urn for g in known) or "none"
    raise ConsumerGroupNotFoundError(
        f"unknown consumer group {grp.urn!r} on log {log.urn!r} (its groups: {listed}); "
        "moving it would create it"
    )


def active_consumers(manager: LogManager, name: NameLike, group: GroupLike) -> str | None:
    """Who consumes log ``name`` in ``group`` right now, in a few words; None when nobody does
    (as far as the backend can tell: a tailer on fixed partitions is seen when it holds them)."""
    log, grp = Name.coerce(name), Name.coerce(group)
    from conveyor.log.local import LocalLogManager
    from conveyor.log.memory import MemoryLogManager

    if isinstance(manager, LocalLogManager):
        from conveyor.log.local.group import live_members

        members = sorted(m for m, names in live_members(manager.root, grp).items() if log in names)
        pids = sorted({m.split("-")[1] for m in members if m.count("-") >= 2})
        if members:
            where = f" (process {', '.join(pids)})" if pids else ""
            return f"{len(members)} live subscriber(s){where}"
        return None
    if isinstance(manager, MemoryLogManager):
        with manager._store.cond:
            state = manager._store.groups.get(grp)
            count = sum(1 for m in state.members if log in m.names) if state is not None else 0
        return f"{count} subscriber(s) in this process" if count else None
    admin = getattr(manager, "admin", None)
    settings = getattr(manager, "settings", None)
    if admin is not None and settings is not None and hasattr(admin, "active_members"):  # Kafka
        count = admin.active_members(settings.group_id(grp.id))
        if count == 0:
            return None
        kafka_group = settings.group_id(grp.id)
        return f"{count if count is not None else 'some'} member(s) in Kafka group {kafka_group!r}"
    return None


def record_timestamp(data: bytes, codec: str | None = None) -> int | None:
    """The watermark time (epoch ms) of a stored :class:`~conveyor.record.Record`, None when
    ``data`` is not a Record in any record codec (``codec`` tried first)."""
    from conveyor.codec import get_codec
    from conveyor.record import Record, Watermark

    for name in (codec, *[c for c in RECORD_CODECS if c != codec]):
        if name is None:
            continue
        try:
            value = get_codec(name).decode(data)
        except (ConveyorError, ImportError, ValueError):
            continue
        if isinstance(value, Record):
            return Watermark.of_value(value.watermark).timestamp
    return None


def _admin_tailer(manager: LogManager, source: LogPartition) -> LogTailer[Any]:
    # A private group per call that never commits: reading leaves no trace.
    return manager.create_tailer(Name.of("admin", f"positions{time.monotonic_ns()}"), source, codec="bytes")


TimestampOf = Callable[[bytes, str | None], int | None]
"""The time (epoch ms) of a stored message given the log's record codec, None when it has none."""


def _search_watermarks(
    manager: LogManager,
    part: LogPartition,
    millis: int,
    first: int,
    end: int,
    codec: str | None,
    timestamp_of: TimestampOf,
) -> LogOffset | None:
    """Binary search for the first record of ``part`` whose time is >= ``millis``."""
    if first >= end:
        return None
    tailer = _admin_tailer(manager, part)
    low, high = first, end
    try:
        while low < high:
            middle = (low + high) // 2
            tailer.seek(LogOffset(part, middle))
            record = tailer.read(1.0)
            if record is None:  # nothing readable from there on (a gap up to the end)
                high = middle
                continue
            timestamp = timestamp_of(record.message, codec)
            if timestamp is None:
                raise PositionError(
                    f"cannot find an offset by time on {part}: the record at {record.offset} carries no "
                    f"time (not a Record with a watermark), and this log ({type(manager).__name__}) keeps "
                    "no append time; move to an offset instead"
                )
            if timestamp < millis:
                low = record.offset.offset + 1
            else:
                high = middle
    finally:
        tailer.close()
    return LogOffset(part, low) if low < end else None


def offset_for_timestamp(
    manager: LogManager,
    partition: LogPartition,
    timestamp_ms: int,
    codec: str | None = None,
    tailer: LogTailer[Any] | None = None,
    timestamp_of: TimestampOf = record_timestamp,
) -> LogOffset | None:
    """The first offset of ``partition`` whose record was appended (Kafka, memory) or carries a
    watermark (other logs) at or after ``timestamp_ms``; None when every record is older.

    ``codec`` is the log's record codec (tried first when reading watermarks); ``tailer`` an open
    tailer on the partition to ask, else one is opened for the call; ``timestamp_of`` reads the
    time of a message for the search (by default a Record's watermark).
    """
    if manager.capabilities.offset_for_timestamp:
        own = tailer is None
        asker = tailer if tailer is not None else _admin_tailer(manager, partition)
        try:
            return asker.offset_for_timestamp(partition, timestamp_ms)
        except UnsupportedOperationError:
            pass
        finally:
            if own:
                asker.close()
    bounds = manager.lag_per_partition(partition.name, _PROBE_GROUP)[partition.partition]
    first, end = bounds.lower_offset, bounds.upper_offset
    return _search_watermarks(manager, partition, timestamp_ms, first, end, codec, timestamp_of)


def move_group(
    manager: LogManager,
    name: NameLike,
    group: GroupLike,
    to: str,
    *,
    partition: int | None = None,
    offset: int | None = None,
    timestamp_ms: int | None = None,
    codec: str | None = None,
    create: bool = False,
    timestamp_of: TimestampOf = record_timestamp,
) -> list[LogLag]:
    """Move ``group``'s committed position on log ``name`` and return its lag per partition.

    ``to`` is one of :data:`POSITIONS`: ``beginning`` (the first record kept), ``end`` (skip
    everything), ``offset`` (``offset`` of ``partition``) or ``timestamp`` (per partition, the
    first record at or after ``timestamp_ms``, the end when there is none). With ``partition``,
    only that partition moves. ``codec`` is the log's record codec (for watermarks),
    ``timestamp_of`` reads a message's time where the log keeps no append time (by default a
    Record's watermark). Refusals, with nothing changed, are listed in the module doc.
    """
    log, grp = Name.coerce(name), Name.coerce(group)
    if to not in POSITIONS:
        raise ConfigurationError(f"position must be one of {', '.join(POSITIONS)}, got {to!r}")
    if to == "offset" and (partition is None or offset is None):
        raise ConfigurationError("a move to an offset needs a partition and an offset")
    if to == "timestamp" and timestamp_ms is None:
        raise ConfigurationError("a move to a time needs a timestamp")
    size = manager.size(log)
    if partition is not None and not 0 <= partition < size:
        raise PartitionOutOfRangeError(
            f"partition {partition} out of range for log {log.urn!r} with {size} partitions (0..{size - 1})"
        )
    check_group(manager, log, grp, create)
    busy = active_consumers(manager, log, grp)
    if busy is not None:
        raise _active(log, grp, busy)
    indexes = [partition] if partition is not None else list(range(size))
    parts = [LogPartition(log, index) for index in indexes]
    bounds = manager.lag_per_partition(log, _PROBE_GROUP)
    targets: dict[LogPartition, int] = {}
    for part in parts:
        first, end = bounds[part.partition].lower_offset, bounds[part.partition].upper_offset
        if to == "beginning":
            targets[part] = first
        elif to == "end":
            targets[part] = end
        elif to == "offset":
            assert offset is not None
            if not first <= offset <= end:
                raise PositionError(
                    f"offset {offset} out of range {first}..{end} for partition {part.partition} of log "
                    f"{log.urn!r} ({first}: its first record, {end}: its end)"
                )
            targets[part] = offset
    try:
        tailer = manager.create_tailer(grp, parts, codec="bytes")
    except TailerAlreadyExistsError as exc:
        raise _active(log, grp, f"a tailer holding its partitions ({exc})") from exc
    try:
        if to == "timestamp":
            assert timestamp_ms is not None
            for part in parts:
                found = offset_for_timestamp(manager, part, timestamp_ms, codec, tailer, timestamp_of)
                targets[part] = found.offset if found is not None else bounds[part.partition].upper_offset
        for part, target in targets.items():
            tailer.seek(LogOffset(part, target))
        try:
            tailer.commit()
        except LogError as exc:
            if "unknown member" in str(exc).lower():  # Kafka: a member joined since the check
                raise _active(log, grp, "members that joined meanwhile") from exc
            raise
    finally:
        tailer.close()
    return manager.lag_per_partition(log, grp)


def _active(log: Name, group: Name, who: str) -> ConsumerGroupActiveError:
    return ConsumerGroupActiveError(
        f"consumer group {group.urn!r} is consuming log {log.urn!r}: {who}; its position can only be "
        "moved while none of its consumers runs (stop them, e.g. the nodes processing it, then retry)"
    )
