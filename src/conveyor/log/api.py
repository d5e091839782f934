"""The log contract (Nuxeo's LogManager / LogAppender / LogTailer), shared by every backend.

A *log* is a named set of partitions, each an append-only sequence of messages addressed by
offset. Appenders are thread-safe; tailers are not (one thread each), and a (group, partition) is
read by at most one tailer at a time. Consumer groups keep a committed offset per partition: the
next record to read. Messages are objects turned into bytes by a codec chosen per log.

Backends subclass :class:`LogManager`, :class:`LogAppender` and :class:`LogTailer`, implementing
the abstract ``_`` methods; validation, codecs, key routing and the tailer registry live here so
that every backend behaves the same.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from conveyor.codec.api import BytesCodec, Codec
from conveyor.errors import (
    CodecError,
    ConfigurationError,
    ConsumerGroupActiveError,
    LogClosedError,
    LogNotFoundError,
    PartitionOutOfRangeError,
    TailerAlreadyExistsError,
    UnsupportedOperationError,
)
from conveyor.log.names import Name
from conveyor.log.types import (
    LogLag,
    LogOffset,
    LogPartition,
    LogRecord,
    RebalanceListener,
    partition_for_key,
)

M = TypeVar("M")

MAX_PARTITIONS = 1024
DEFAULT_CODEC = "avro"

__all__ = ["LogAppender", "LogCapabilities", "LogManager", "LogTailer"]


@dataclass(frozen=True, slots=True)
class LogCapabilities:
    """What a backend can honour; the conformance suite reads these instead of guessing."""

    subscribe: bool = True
    """``subscribe`` with rebalancing between members of a group."""
    multi_process: bool = False
    """Several processes (or machines) can share the same logs."""
    offset_for_timestamp: bool = False
    """``LogTailer.offset_for_timestamp`` is supported."""
    delete: bool = True
    """``LogManager.delete`` removes a log."""
    dense_offsets: bool = True
    """Offsets are 0, 1, 2 ... with no gaps, so lag counts records exactly."""


GroupLike = Name | str
NameLike = Name | str
Source = NameLike | LogPartition | Iterable[LogPartition]


class LogManager(ABC):
    """Creates logs and hands out appenders and tailers. Usable as a context manager."""

    capabilities: LogCapabilities = LogCapabilities()

    def __init__(self, url: str = "", default_codec: Codec[Any] | str | None = None) -> None:
        self.url = url
        self._default_codec_spec: Codec[Any] | str = (
            default_codec if default_codec is not None else DEFAULT_CODEC
        )
        self._default_codec: Codec[Any] | None = None
        self._lock = threading.RLock()
        self._appenders: dict[Name, LogAppender[Any]] = {}
        self._tailers: dict[tuple[Name, LogPartition], LogTailer[Any]] = {}
        self._all_tailers: list[LogTailer[Any]] = []
        self._closed = False

    @property
    def default_codec(self) -> Codec[Any]:
        """The codec of appenders and tailers opened without one (``avro`` unless configured)."""
        if self._default_codec is None:
            spec = self._default_codec_spec
            if isinstance(spec, str):
                from conveyor.codec import get_codec

                self._default_codec = get_codec(spec)
            else:
                self._default_codec = spec
        return self._default_codec

    # --- abstract backend primitives -----------------------------------------------------------

    @abstractmethod
    def _create(self, name: Name, partitions: int) -> bool:
        """Create the log if absent; True when created."""

    @abstractmethod
    def _exists(self, name: Name) -> bool: ...

    @abstractmethod
    def _size(self, name: Name) -> int:
        """Partitions of an existing log."""

    @abstractmethod
    def _delete(self, name: Name) -> bool: ...

    @abstractmethod
    def _list_all(self) -> list[Name]: ...

    @abstractmethod
    def _list_consumer_groups(self, name: Name) -> list[Name]: ...

    @abstractmethod
    def _lag_per_partition(self, name: Name, group: Name) -> list[LogLag]: ...

    @abstractmethod
    def _new_appender(self, name: Name, codec: Codec[Any]) -> LogAppender[Any]: ...

    @abstractmethod
    def _new_tailer(
        self, group: Name, partitions: list[LogPartition], codec: Codec[Any]
    ) -> LogTailer[Any]: ...

    def _new_subscriber(
        self, group: Name, names: list[Name], listener: RebalanceListener | None, codec: Codec[Any]
    ) -> LogTailer[Any]:
        raise UnsupportedOperationError(f"{type(self).__name__} does not support subscribe")

    def _delete_consumer_group(self, group: Name, name: Name) -> bool:
        """Forget the group's committed offsets on the log, refusing (``ConsumerGroupActiveError``)
        while members read it; True when the group had offsets there."""
        raise UnsupportedOperationError(f"{type(self).__name__} cannot delete consumer groups")

    def _close(self) -> None:
        """Release backend resources (after appenders and tailers are closed)."""

    # --- public API ----------------------------------------------------------------------------

    def create_if_not_exists(self, name: NameLike, partitions: int) -> bool:
        """Create the log ``name`` with ``partitions`` partitions unless it exists; True when created."""
        self._check_open()
        log = Name.coerce(name)
        if (
            isinstance(partitions, bool)
            or not isinstance(partitions, int)
            or not 1 <= partitions <= MAX_PARTITIONS
        ):
            raise ConfigurationError(
                f"partitions of log {log.urn!r} must be an int between 1 and {MAX_PARTITIONS}, "
                f"got {partitions!r}"
            )
        return self._create(log, partitions)

    def exists(self, name: NameLike) -> bool:
        """True when the log exists."""
        self._check_open()
        return self._exists(Name.coerce(name))

    def size(self, name: NameLike) -> int:
        """The number of partitions of the log; ``LogNotFoundError`` when it does not exist."""
        self._check_open()
        log = Name.coerce(name)
        self._require(log)
        return self._size(log)

    def delete(self, name: NameLike) -> bool:
        """Delete the log and its committed offsets; True when something was deleted."""
        self._check_open()
        log = Name.coerce(name)
        with self._lock:
            appender = self._appenders.pop(log, None)
        if appender is not None:
            appender.close()
        return self._delete(log)

    def list_all(self) -> list[Name]:
        """Every log, sorted by urn."""
        self._check_open()
        return sorted(self._list_all(), key=lambda n: n.urn)

    def list_consumer_groups(self, name: NameLike) -> list[Name]:
        """The groups that have committed offsets on the log, sorted by urn."""
        self._check_open()
        log = Name.coerce(name)
        self._require(log)
        return sorted(self._list_consumer_groups(log), key=lambda n: n.urn)

    def delete_consumer_group(self, group: GroupLike, name: NameLike) -> bool:
        """Forget the committed offsets of ``group`` on log ``name`` (it leaves the log's consumer
        groups); True when it had some, False when the group never committed on that log.

        Refused with ``ConsumerGroupActiveError`` while the group has members reading the log (a
        subscriber, or a tailer on one of its partitions, in any process); ``LogNotFoundError``
        when the log does not exist. The records of the log are not touched.
        """
        self._check_open()
        log = Name.coerce(name)
        grp = Name.coerce(group)
        self._require(log)
        with self._lock:
            held = sorted(
                p.partition
                for (g, p), tailer in self._tailers.items()
                if g == grp and p.name == log and not tailer.closed
            )
        if held:
            raise ConsumerGroupActiveError(
                f"consumer group {grp.urn!r} has a tailer open on partition(s) {held} of log "
                f"{log.urn!r} in this process: stop its consumers first"
            )
        return self._delete_consumer_group(grp, log)

    def lag_per_partition(self, name: NameLike, group: GroupLike) -> list[LogLag]:
        """The group's lag on each partition of the log, by partition index."""
        self._check_open()
        log = Name.coerce(name)
        self._require(log)
        return self._lag_per_partition(log, Name.coerce(group))

    def lag(self, name: NameLike, group: GroupLike) -> LogLag:
        """The group's lag on the whole log."""
        return LogLag.total(self.lag_per_partition(name, group))

    def appender(self, name: NameLike, codec: Codec[Any] | str | None = None) -> LogAppender[Any]:
        """The (cached, thread-safe) appender of an existing log; one codec per log and manager."""
        self._check_open()
        log = Name.coerce(name)
        wanted = self._resolve_codec(codec)
        with self._lock:
            appender = self._appenders.get(log)
            if appender is not None and not appender.closed:
                if codec is not None and appender.codec.name != wanted.name:
                    raise ConfigurationError(
                        f"log {log.urn!r} already has an appender with codec {appender.codec.name!r}, "
                        f"cannot open one with codec {wanted.name!r}"
                    )
                return appender
            self._require(log)
            appender = self._new_appender(log, wanted)
            self._appenders[log] = appender
            return appender

    def create_tailer(
        self, group: GroupLike, source: Source, codec: Codec[Any] | str | None = None
    ) -> LogTailer[Any]:
        """A tailer of ``group`` over fixed partitions: a whole log (Name or urn), a partition or several."""
        self._check_open()
        grp = Name.coerce(group)
        partitions = self._partitions_of(source)
        if not partitions:
            raise ConfigurationError("create_tailer needs at least one partition")
        resolved = self._tailer_codec(partitions[0].name, codec)
        with self._lock:
            for partition in partitions:
                holder = self._tailers.get((grp, partition))
                if holder is not None and not holder.closed:
                    raise TailerAlreadyExistsError(
                        f"a tailer of group {grp.urn!r} is already open on partition {partition}"
                    )
            tailer = self._new_tailer(grp, partitions, resolved)
            for partition in partitions:
                self._tailers[(grp, partition)] = tailer
            self._all_tailers.append(tailer)
            return tailer

    def subscribe(
        self,
        group: GroupLike,
        names: NameLike | Iterable[NameLike],
        listener: RebalanceListener | None = None,
        codec: Codec[Any] | str | None = None,
    ) -> LogTailer[Any]:
        """A tailer whose partitions are shared out among every subscriber of ``group`` (rebalancing)."""
        self._check_open()
        if not self.capabilities.subscribe:
            raise UnsupportedOperationError(f"{type(self).__name__} does not support subscribe")
        grp = Name.coerce(group)
        logs = [Name.coerce(names)] if isinstance(names, (Name, str)) else [Name.coerce(n) for n in names]
        if not logs:
            raise ConfigurationError("subscribe needs at least one log")
        for log in logs:
            self._require(log)
        tailer = self._new_subscriber(grp, logs, listener, self._tailer_codec(logs[0], codec))
        with self._lock:
            self._all_tailers.append(tailer)
        return tailer

    def close(self) -> None:
        """Close every appender and tailer, then the backend. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            appenders = list(self._appenders.values())
            tailers = list(self._all_tailers)
            self._appenders.clear()
            self._tailers.clear()
            self._all_tailers.clear()
        for tailer in tailers:
            tailer.close()
        for appender in appenders:
            appender.close()
        self._close()

    @property
    def closed(self) -> bool:
        """True once closed."""
        return self._closed

    def __enter__(self) -> LogManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        from conveyor.registry import redact_url

        return f"{type(self).__name__}({redact_url(self.url)!r})"

    # --- helpers for subclasses ----------------------------------------------------------------

    def _release_tailer(self, tailer: LogTailer[Any]) -> None:
        with self._lock:
            for key in [k for k, t in self._tailers.items() if t is tailer]:
                del self._tailers[key]
            if tailer in self._all_tailers:
                self._all_tailers.remove(tailer)

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError(f"log manager {self!r} is closed")

    def _require(self, name: Name) -> None:
        if not self._exists(name):
            raise LogNotFoundError(f"log {name.urn!r} does not exist")

    def _resolve_codec(self, codec: Codec[Any] | str | None) -> Codec[Any]:
        if codec is None:
            return self.default_codec
        if isinstance(codec, str):
            from conveyor.codec import get_codec

            return get_codec(codec)
        return codec

    def _tailer_codec(self, name: Name, codec: Codec[Any] | str | None) -> Codec[Any]:
        # As Nuxeo: with no codec, a tailer reads with the codec of this manager's appender of the log.
        if codec is None:
            with self._lock:
                appender = self._appenders.get(name)
            if appender is not None:
                return appender.codec
        return self._resolve_codec(codec)

    def _partitions_of(self, source: Source) -> list[LogPartition]:
        if isinstance(source, (Name, str)):
            log = Name.coerce(source)
            self._require(log)
            return [LogPartition(log, i) for i in range(self._size(log))]
        items = [source] if isinstance(source, LogPartition) else list(source)
        seen: set[LogPartition] = set()
        result: list[LogPartition] = []
        for partition in items:
            if not isinstance(partition, LogPartition):
                raise ConfigurationError(f"expected a LogPartition, got {partition!r}")
            self._require(partition.name)
            self._check_partition(partition)
            if partition not in seen:
                seen.add(partition)
                result.append(partition)
        return result

    def _check_partition(self, partition: LogPartition) -> None:
        size = self._size(partition.name)
        if not 0 <= partition.partition < size:
            raise PartitionOutOfRangeError(
                f"partition {partition.partition} out of range for log {partition.name.urn!r} "
                f"with {size} partitions"
            )


class LogAppender(ABC, Generic[M]):
    """Appends messages to one log; thread-safe. Routes keys to partitions as Nuxeo does."""

    def __init__(self, manager: LogManager, name: Name, size: int, codec: Codec[M]) -> None:
        self.manager = manager
        self.name = name
        self._size = size
        self.codec = codec
        self._closed = False
        self._partitions = [LogPartition(name, i) for i in range(size)]

    @abstractmethod
    def _append_bytes(self, partition: int, key: str, data: bytes) -> int:
        """Append one encoded message; its offset."""

    def _append_bytes_many(self, items: Sequence[tuple[int, str, bytes]]) -> list[int]:
        """Append encoded messages in order; their offsets. Backends override to batch."""
        return [self._append_bytes(p, k, d) for p, k, d in items]

    @abstractmethod
    def _committed_position(self, group: Name, partition: LogPartition) -> int | None:
        """The committed position (next offset to read) of ``group`` on ``partition``, if any."""

    def size(self) -> int:
        """The number of partitions."""
        return self._size

    @property
    def closed(self) -> bool:
        """True once closed."""
        return self._closed

    def close(self) -> None:
        """Stop accepting appends. Idempotent."""
        self._closed = True

    def partition_of(self, key_or_partition: str | int) -> tuple[int, str]:
        """(partition, key) for a record key (Java hash routing) or an explicit partition index."""
        if isinstance(key_or_partition, bool):
            raise ConfigurationError(f"expected a key or a partition index, got {key_or_partition!r}")
        if isinstance(key_or_partition, int):
            if not 0 <= key_or_partition < self._size:
                raise PartitionOutOfRangeError(
                    f"partition {key_or_partition} out of range for log {self.name.urn!r} "
                    f"with {self._size} partitions"
                )
            return key_or_partition, str(key_or_partition)
        if isinstance(key_or_partition, str):
            return partition_for_key(key_or_partition, self._size), key_or_partition
        raise ConfigurationError(
            f"expected a str key or an int partition, got {type(key_or_partition).__name__}"
        )

    def append(self, key_or_partition: str | int, message: M) -> LogOffset:
        """Append ``message`` to the partition of ``key_or_partition``; the offset it was written at."""
        self._check_open()
        partition, key = self.partition_of(key_or_partition)
        data = self._encode(message)
        offset = self._append_bytes(partition, key, data)
        return LogOffset(self._partitions[partition], offset)

    def append_many(self, items: Iterable[tuple[str | int, M]]) -> list[LogOffset]:
        """Append (key or partition, message) pairs, in order, as one batch; their offsets."""
        self._check_open()
        encoded: list[tuple[int, str, bytes]] = []
        for key_or_partition, message in items:
            partition, key = self.partition_of(key_or_partition)
            encoded.append((partition, key, self._encode(message)))
        if not encoded:
            return []
        offsets = self._append_bytes_many(encoded)
        # The appender's own LogPartition objects: one tuple less per record on the hot path.
        partitions = self._partitions
        return [LogOffset(partitions[p], o) for (p, _, _), o in zip(encoded, offsets, strict=True)]

    def wait_for(self, offset: LogOffset, group: GroupLike, timeout: float) -> bool:
        """Wait until ``group`` has committed past ``offset``; False on timeout."""
        grp = Name.coerce(group)
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            committed = self._committed_position(grp, offset.partition)
            if committed is not None and committed > offset.offset:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.05)

    def _encode(self, message: M) -> bytes:
        try:
            return self.codec.encode(message)
        except CodecError:
            raise
        except Exception as exc:
            raise CodecError(
                f"codec {self.codec.name!r} cannot encode {type(message).__name__}: {exc}"
            ) from exc

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError(f"appender of log {self.name.urn!r} is closed")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name.urn!r}, partitions={self._size}, codec={self.codec.name!r})"


class LogTailer(ABC, Generic[M]):
    """Reads messages of a consumer group from assigned partitions; one thread at a time.

    ``timeout`` arguments are seconds. ``read`` returns None when nothing arrives in time.
    """

    def __init__(self, manager: LogManager, group: Name, codec: Codec[M]) -> None:
        self.manager = manager
        self.group = group
        self.codec = codec
        self._closed = False

    @abstractmethod
    def _read_bytes(self, timeout: float) -> tuple[LogOffset, bytes] | None:
        """The next encoded message of any assigned partition, or None after ``timeout``."""

    def _read_bytes_batch(self, max_records: int, timeout: float) -> list[tuple[LogOffset, bytes]]:
        """Up to ``max_records`` encoded messages; waits up to ``timeout`` only for the first."""
        first = self._read_bytes(timeout)
        if first is None:
            return []
        batch = [first]
        while len(batch) < max_records:
            item = self._read_bytes(0)
            if item is None:
                break
            batch.append(item)
        return batch

    @abstractmethod
    def assignments(self) -> list[LogPartition]:
        """The partitions currently read by this tailer."""

    @property
    def assignment_pending(self) -> bool:
        """True while the group gave this subscriber partitions it does not read yet (another
        member still holds them); safe to ask from another thread."""
        return False

    @abstractmethod
    def _commit_partition(self, partition: LogPartition) -> LogOffset:
        """Store the current position of ``partition`` as the group's committed offset."""

    def _commit_offsets(self, positions: dict[LogPartition, int]) -> None:
        """Store each position as the group's committed offset of its partition (one request
        where the backend can)."""
        raise UnsupportedOperationError(f"{type(self.manager).__name__} does not support commit_offsets")

    @abstractmethod
    def to_start(self) -> None:
        """Move every assigned partition to its first record."""

    @abstractmethod
    def to_end(self) -> None:
        """Move every assigned partition past its last record."""

    @abstractmethod
    def to_last_committed(self) -> None:
        """Move every assigned partition to the group's committed offset (or the start)."""

    @abstractmethod
    def _seek(self, offset: LogOffset) -> None: ...

    @abstractmethod
    def _reset(self, partitions: list[LogPartition]) -> None:
        """Set the group's committed offsets of ``partitions`` to their start."""

    @abstractmethod
    def _close(self) -> None: ...

    def _read_records_batch(self, max_records: int, timeout: float) -> list[LogRecord[Any]] | None:
        """As ``_read_bytes_batch``, as records whose message is the stored bytes (for the identity
        codec: one object less per record); None if the backend does not offer it."""
        return None

    def offset_for_timestamp(self, partition: LogPartition, timestamp_ms: int) -> LogOffset | None:
        """The first offset whose append time is >= ``timestamp_ms`` (backends that support it)."""
        raise UnsupportedOperationError(
            f"{type(self.manager).__name__} does not support offset_for_timestamp"
        )

    # --- public API ----------------------------------------------------------------------------

    def read(self, timeout: float = 1.0) -> LogRecord[M] | None:
        """The next record, or None if none arrives within ``timeout`` seconds."""
        self._check_open()
        item = self._read_bytes(max(0.0, timeout))
        if item is None:
            return None
        return LogRecord(self._decode(item[1], item[0]), item[0])

    def read_batch(self, max_records: int, timeout: float = 1.0) -> list[LogRecord[M]]:
        """Up to ``max_records`` records; waits up to ``timeout`` seconds for the first one."""
        self._check_open()
        if max_records < 1:
            raise ConfigurationError(f"max_records must be >= 1, got {max_records}")
        timeout = max(0.0, timeout)
        new = tuple.__new__  # the named tuple without its Python-level __new__: half the cost
        if isinstance(self.codec, BytesCodec):  # identity codec: skip a call per record
            records = self._read_records_batch(max_records, timeout)
            if records is not None:
                return records
            return [
                new(LogRecord, (data, offset))
                for offset, data in self._read_bytes_batch(max_records, timeout)
            ]
        items = self._read_bytes_batch(max_records, timeout)
        decode = self._decode
        return [new(LogRecord, (decode(data, offset), offset)) for offset, data in items]

    def commit(self, partition: LogPartition | None = None) -> LogOffset | None:
        """Commit the read position: of every assigned partition, or of ``partition`` (returned)."""
        self._check_open()
        if partition is None:
            for part in self.assignments():
                self._commit_partition(part)
            return None
        if partition not in self.assignments():
            raise ConfigurationError(f"partition {partition} is not assigned to this tailer")
        return self._commit_partition(partition)

    def commit_offsets(self, offsets: Iterable[LogOffset]) -> None:
        """Commit each offset as the group's committed offset of its partition, all at once (one
        request on Kafka): the next record to read there, whatever the read position.

        For readers that process a batch read ahead and commit only the records done.
        """
        self._check_open()
        positions: dict[LogPartition, int] = {}
        assigned: set[LogPartition] | None = None
        for partition, offset in offsets:
            if partition not in positions:
                if assigned is None:
                    assigned = set(self.assignments())
                if partition not in assigned:
                    raise ConfigurationError(f"partition {partition} is not assigned to this tailer")
            if offset < 0:
                raise ConfigurationError(f"cannot commit a negative offset: {LogOffset(partition, offset)}")
            positions[partition] = offset
        if positions:
            self._commit_offsets(positions)

    def seek(self, offset: LogOffset) -> None:
        """Move the partition of ``offset`` to it; the next read of that partition returns it."""
        self._check_open()
        if offset.partition not in self.assignments():
            raise ConfigurationError(
                f"cannot seek: partition {offset.partition} is not assigned to this tailer"
            )
        if offset.offset < 0:
            raise ConfigurationError(f"cannot seek to a negative offset: {offset}")
        self._seek(offset)

    def reset(self, partition: LogPartition | None = None) -> None:
        """Reset the group's committed offsets (of ``partition`` or of all assigned) to the start."""
        self._check_open()
        parts = self.assignments() if partition is None else [partition]
        self._reset(parts)

    def close(self) -> None:
        """Release the partitions (without committing). Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._close()
        finally:
            self.manager._release_tailer(self)

    @property
    def closed(self) -> bool:
        """True once closed."""
        return self._closed

    def __enter__(self) -> LogTailer[M]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _decode(self, data: bytes, offset: LogOffset) -> M:
        try:
            return self.codec.decode(data)
        except CodecError as exc:
            raise CodecError(f"{exc} (record at {offset})") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError(f"tailer of group {self.group.urn!r} is closed")

    def __repr__(self) -> str:
        parts = ", ".join(str(p) for p in self.assignments()) if not self._closed else "closed"
        return f"{type(self).__name__}(group={self.group.urn!r}, [{parts}])"
