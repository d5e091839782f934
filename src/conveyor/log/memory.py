"""``memory://``: logs in this process's memory; the reference implementation of the contract.

``memory://`` opens a private set of logs; ``memory://NAME`` opens the set named NAME, shared by
every manager of this process that opens the same URL (as two nodes in one process would share a
broker). Nothing survives the process.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from conveyor.codec.api import Codec
from conveyor.errors import ConfigurationError, ConsumerGroupActiveError, RebalanceError
from conveyor.log.api import LogAppender, LogCapabilities, LogManager, LogTailer
from conveyor.log.names import Name
from conveyor.log.types import LogLag, LogOffset, LogPartition, RebalanceListener

__all__ = ["MemoryLogManager"]


@dataclass
class _MemLog:
    partitions: list[list[bytes]]
    timestamps: list[list[int]]


@dataclass
class _Group:
    members: list[_MemorySubscriber] = field(default_factory=list)
    generation: int = 0


class _MemoryStore:
    """Logs, committed offsets and group memberships shared by the managers of one URL."""

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.RLock())
        self.logs: dict[Name, _MemLog] = {}
        self.committed: dict[tuple[Name, LogPartition], int] = {}
        self.groups: dict[Name, _Group] = {}

    def rebalance(self, group: Name) -> None:
        """Share the partitions of every log the group's members subscribed to (round robin)."""
        state = self.groups.get(group)
        if state is None:
            return
        state.generation += 1
        assignment: dict[int, list[LogPartition]] = {id(m): [] for m in state.members}
        names = sorted({n for m in state.members for n in m.names}, key=lambda n: n.urn)
        for name in names:
            log = self.logs.get(name)
            if log is None:
                continue
            members = [m for m in state.members if name in m.names]
            for index in range(len(log.partitions)):
                member = members[index % len(members)]
                assignment[id(member)].append(LogPartition(name, index))
        for member in state.members:
            member.pending = (state.generation, assignment[id(member)])
        self.cond.notify_all()


_named_stores: weakref.WeakValueDictionary[str, _MemoryStore] = weakref.WeakValueDictionary()
_named_lock = threading.Lock()


class MemoryLogManager(LogManager):
    """Logs in process memory (see module doc)."""

    capabilities = LogCapabilities(subscribe=True, multi_process=False, offset_for_timestamp=True)

    def __init__(
        self,
        url: str = "memory://",
        store_name: str | None = None,
        default_codec: Codec[Any] | str | None = None,
    ) -> None:
        super().__init__(url, default_codec)
        if store_name:
            with _named_lock:
                store = _named_stores.get(store_name)
                if store is None:
                    store = _MemoryStore()
                    _named_stores[store_name] = store
        else:
            store = _MemoryStore()
        self._store = store

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryLogManager:
        """Open ``memory://[NAME][?codec=...]``."""
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"codec"}
        if unknown:
            raise ConfigurationError(f"unknown option(s) {sorted(unknown)} in log URL {url!r}")
        name = (parts.netloc + parts.path).strip("/") or None
        codec = options.pop("default_codec", None) or query.get("codec")
        if options:
            raise ConfigurationError(f"unknown option(s) {sorted(options)} for memory log manager")
        return cls(url, name, codec)

    # --- backend primitives --------------------------------------------------------------------

    def _create(self, name: Name, partitions: int) -> bool:
        with self._store.cond:
            if name in self._store.logs:
                return False
            self._store.logs[name] = _MemLog([[] for _ in range(partitions)], [[] for _ in range(partitions)])
            for group, state in self._store.groups.items():
                if any(name in m.names for m in state.members):
                    self._store.rebalance(group)
            return True

    def _exists(self, name: Name) -> bool:
        return name in self._store.logs

    def _size(self, name: Name) -> int:
        return len(self._store.logs[name].partitions)

    def _delete(self, name: Name) -> bool:
        with self._store.cond:
            if self._store.logs.pop(name, None) is None:
                return False
            for key in [k for k in self._store.committed if k[1].name == name]:
                del self._store.committed[key]
            return True

    def _list_all(self) -> list[Name]:
        return list(self._store.logs)

    def _list_consumer_groups(self, name: Name) -> list[Name]:
        return list({group for group, part in self._store.committed if part.name == name})

    def _delete_consumer_group(self, group: Name, name: Name) -> bool:
        with self._store.cond:
            state = self._store.groups.get(group)
            members = [m for m in state.members if name in m.names] if state is not None else []
            if members:
                raise ConsumerGroupActiveError(
                    f"consumer group {group.urn!r} has {len(members)} member(s) subscribed to log "
                    f"{name.urn!r}: stop its consumers first"
                )
            keys = [k for k in self._store.committed if k[0] == group and k[1].name == name]
            for key in keys:
                del self._store.committed[key]
            return bool(keys)

    def _lag_per_partition(self, name: Name, group: Name) -> list[LogLag]:
        with self._store.cond:
            log = self._store.logs[name]
            return [
                LogLag.of(self._store.committed.get((group, LogPartition(name, i)), 0), len(records))
                for i, records in enumerate(log.partitions)
            ]

    def _new_appender(self, name: Name, codec: Codec[Any]) -> LogAppender[Any]:
        return _MemoryAppender(self, name, self._size(name), codec)

    def _new_tailer(self, group: Name, partitions: list[LogPartition], codec: Codec[Any]) -> LogTailer[Any]:
        return _MemoryTailer(self, group, codec, partitions)

    def _new_subscriber(
        self, group: Name, names: list[Name], listener: RebalanceListener | None, codec: Codec[Any]
    ) -> LogTailer[Any]:
        return _MemorySubscriber(self, group, codec, names, listener)


class _MemoryAppender(LogAppender[Any]):
    manager: MemoryLogManager

    def _append_bytes(self, partition: int, key: str, data: bytes) -> int:
        return self._append_bytes_many([(partition, key, data)])[0]

    def _append_bytes_many(self, items: Sequence[tuple[int, str, bytes]]) -> list[int]:
        store = self.manager._store
        now = int(time.time() * 1000)
        with store.cond:
            log = store.logs.get(self.name)
            if log is None:
                from conveyor.errors import LogNotFoundError

                raise LogNotFoundError(f"log {self.name.urn!r} does not exist (deleted?)")
            offsets = []
            for partition, _key, data in items:
                offsets.append(len(log.partitions[partition]))
                log.partitions[partition].append(data)
                log.timestamps[partition].append(now)
            store.cond.notify_all()
        return offsets

    def _committed_position(self, group: Name, partition: LogPartition) -> int | None:
        return self.manager._store.committed.get((group, partition))


class _MemoryTailer(LogTailer[Any]):
    manager: MemoryLogManager

    def __init__(
        self, manager: MemoryLogManager, group: Name, codec: Codec[Any], partitions: list[LogPartition]
    ) -> None:
        super().__init__(manager, group, codec)
        self._store = manager._store
        self._partitions: list[LogPartition] = list(partitions)
        self._positions: dict[LogPartition, int] = {}
        self._next = 0
        self.to_last_committed()

    def assignments(self) -> list[LogPartition]:
        return list(self._partitions)

    def _records(self, partition: LogPartition) -> list[bytes]:
        log = self._store.logs.get(partition.name)
        return log.partitions[partition.partition] if log is not None else []

    def _poll_once(self) -> tuple[LogOffset, bytes] | None:
        count = len(self._partitions)
        for i in range(count):
            partition = self._partitions[(self._next + i) % count]
            records = self._records(partition)
            position = self._positions[partition]
            if position < len(records):
                self._positions[partition] = position + 1
                self._next = (self._next + i + 1) % count
                return LogOffset(partition, position), records[position]
        return None

    def _before_read(self) -> None:
        """Hook for subscribers: apply a pending rebalance."""

    def _read_bytes(self, timeout: float) -> tuple[LogOffset, bytes] | None:
        deadline = time.monotonic() + timeout
        with self._store.cond:
            while True:
                self._before_read()
                if self._partitions:
                    item = self._poll_once()
                    if item is not None:
                        return item
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return None
                self._store.cond.wait(remaining)

    def _commit_partition(self, partition: LogPartition) -> LogOffset:
        with self._store.cond:
            position = self._positions[partition]
            self._store.committed[(self.group, partition)] = position
        return LogOffset(partition, position)

    def _commit_offsets(self, positions: dict[LogPartition, int]) -> None:
        with self._store.cond:
            for partition, position in positions.items():
                self._store.committed[(self.group, partition)] = position

    def to_start(self) -> None:
        for partition in self._partitions:
            self._positions[partition] = 0

    def to_end(self) -> None:
        with self._store.cond:
            for partition in self._partitions:
                self._positions[partition] = len(self._records(partition))

    def to_last_committed(self) -> None:
        with self._store.cond:
            for partition in self._partitions:
                self._positions[partition] = self._store.committed.get((self.group, partition), 0)

    def _seek(self, offset: LogOffset) -> None:
        self._positions[offset.partition] = offset.offset

    def _reset(self, partitions: list[LogPartition]) -> None:
        with self._store.cond:
            for partition in partitions:
                self._store.committed[(self.group, partition)] = 0
                if partition in self._positions:
                    self._positions[partition] = 0

    def offset_for_timestamp(self, partition: LogPartition, timestamp_ms: int) -> LogOffset | None:
        log = self._store.logs.get(partition.name)
        if log is None:
            return None
        for index, ts in enumerate(log.timestamps[partition.partition]):
            if ts >= timestamp_ms:
                return LogOffset(partition, index)
        return None

    def _close(self) -> None:
        with self._store.cond:
            self._store.cond.notify_all()


class _MemorySubscriber(_MemoryTailer):
    """A tailer whose partitions come from the group's rebalancing (see ``_MemoryStore.rebalance``)."""

    def __init__(
        self,
        manager: MemoryLogManager,
        group: Name,
        codec: Codec[Any],
        names: list[Name],
        listener: RebalanceListener | None,
    ) -> None:
        self.names = list(names)
        self.listener = listener
        self.pending: tuple[int, list[LogPartition]] | None = None
        self._generation = -1
        super().__init__(manager, group, codec, [])
        with self._store.cond:
            state = self._store.groups.setdefault(group, _Group())
            state.members.append(self)
            self._store.rebalance(group)
            self._apply_pending(initial=True)

    def _apply_pending(self, initial: bool = False) -> None:
        pending, self.pending = self.pending, None
        if pending is None:
            return
        generation, partitions = pending
        if generation == self._generation:
            return
        revoked = [p for p in self._partitions if p not in partitions]
        assigned = [p for p in partitions if p not in self._partitions]
        self._generation = generation
        if self.listener is not None and revoked:
            self.listener.on_partitions_revoked(revoked)
        self._partitions = list(partitions)
        self._positions = {}
        self._next = 0
        self.to_last_committed()
        if self.listener is not None and assigned:
            self.listener.on_partitions_assigned(assigned)
        if not initial and (revoked or assigned):
            raise RebalanceError(
                f"group {self.group.urn!r} rebalanced: revoked {[str(p) for p in revoked]}, "
                f"assigned {[str(p) for p in assigned]}"
            )

    def _before_read(self) -> None:
        if self.pending is not None:
            self._apply_pending()

    def _close(self) -> None:
        with self._store.cond:
            state = self._store.groups.get(self.group)
            if state is not None and self in state.members:
                state.members.remove(self)
                if state.members:
                    self._store.rebalance(self.group)
                else:
                    del self._store.groups[self.group]
            self._store.cond.notify_all()
