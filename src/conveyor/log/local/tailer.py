"""Tailers of a local log: fixed partitions (``create_tailer``) or a group subscription.

A tailer holds, for each partition it reads, the lock file ``groups/<group>/P-NN.lock`` of the
log: one reader per (group, partition) across every process of the machine. Waiting for data is
polling the segment size with a short sleep that doubles from 50 µs up to ``poll_max_ms``, and up
to ``poll_idle_ms`` once the tailer has found nothing for 0.2 s.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from conveyor.codec.api import Codec
from conveyor.errors import LogCorruptedError, RebalanceError, TailerAlreadyExistsError
from conveyor.log.api import LogTailer
from conveyor.log.local.group import Membership, assign
from conveyor.log.local.locks import FileLock
from conveyor.log.local.reader import PartitionReader
from conveyor.log.names import Name
from conveyor.log.types import LogOffset, LogPartition, LogRecord, RebalanceListener

if TYPE_CHECKING:
    from conveyor.log.local.manager import LocalLogManager

__all__ = ["LocalSubscriber", "LocalTailer"]

_FIRST_SLEEP = 0.00005
_REBALANCE_CHECK = 0.05
_IDLE_AFTER = 0.2


class LocalTailer(LogTailer[Any]):
    """Reads assigned partitions round robin (see module doc)."""

    manager: LocalLogManager

    def __init__(
        self, manager: LocalLogManager, group: Name, codec: Codec[Any], partitions: list[LogPartition]
    ) -> None:
        super().__init__(manager, group, codec)
        self._poll_max = manager.options.poll_max_ms / 1000.0
        self._poll_idle = max(self._poll_max, manager.options.poll_idle_ms / 1000.0)
        self._idle_since = 0.0
        self._readers: dict[LogPartition, PartitionReader] = {}
        self._locks: dict[LogPartition, FileLock] = {}
        self._order: list[PartitionReader] = []
        self._next = 0
        try:
            for partition in partitions:
                if not self._take(partition):
                    raise TailerAlreadyExistsError(
                        f"a tailer of group {group.urn!r} is already open on partition {partition} "
                        "(in another process or manager)"
                    )
        except BaseException:
            self._drop(list(self._readers))
            raise
        self.to_last_committed()

    # --- partition ownership -------------------------------------------------------------------

    def _take(self, partition: LogPartition) -> bool:
        """Lock ``partition`` for this group and open a reader on it; False if held elsewhere."""
        log_dir = self.manager.log_dir(partition.name)
        group_dir = os.path.join(log_dir, "groups", self.group.id)
        try:
            os.makedirs(group_dir, exist_ok=True)
        except FileNotFoundError:
            return False
        lock = FileLock(os.path.join(group_dir, f"P-{partition.partition:02d}.lock"))
        try:
            taken = lock.try_acquire()
        except FileNotFoundError:  # log deleted meanwhile
            taken = False
        if not taken:
            lock.close()
            return False
        self._locks[partition] = lock
        self._readers[partition] = PartitionReader(
            self.manager.partition_dir(partition), partition, self.manager.options.window_bytes
        )
        self._order = list(self._readers.values())
        return True

    def _drop(self, partitions: list[LogPartition]) -> None:
        for partition in partitions:
            reader = self._readers.pop(partition, None)
            if reader is not None:
                reader.close()
            lock = self._locks.pop(partition, None)
            if lock is not None:
                lock.close()
        self._order = list(self._readers.values())
        self._next = 0

    def assignments(self) -> list[LogPartition]:
        return list(self._readers)

    # --- reading -------------------------------------------------------------------------------

    def _before_read(self) -> None:
        """Hook for subscribers: follow the group's membership."""

    def _poll(self, out: list[Any], limit: int, as_records: bool) -> None:
        order = self._order
        count = len(order)
        if not count:
            return
        start = self._next
        for i in range(count):
            reader = order[(start + i) % count]
            try:
                if reader.read(out, limit - len(out), as_records) and len(out) >= limit:
                    self._next = (start + i + 1) % count
                    return
            except LogCorruptedError:
                # The next read starts after the damaged partition, so the others keep flowing;
                # records already read are returned first, the damage raises again when its
                # partition comes first in the rotation.
                self._next = (start + i + 1) % count
                if out:
                    return
                raise
        self._next = (start + 1) % count

    def _wait(self, limit: int, timeout: float, as_records: bool = False) -> list[Any]:
        """Pairs (offset, payload), or LogRecords of the payload ``as_records``, as they arrive."""
        out: list[Any] = []
        deadline = 0.0
        delay = _FIRST_SLEEP
        while True:
            self._before_read()
            self._poll(out, limit, as_records)
            if out or self._closed:
                self._idle_since = 0.0
                return out
            now = time.monotonic()
            if not deadline:
                if timeout <= 0:
                    return out
                deadline = now + timeout
                if not self._idle_since:
                    self._idle_since = now
            remaining = deadline - now
            if remaining <= 0:
                return out
            # Idle tailers back off further: many idle threads polling every millisecond would
            # starve the busy ones of the GIL. The idle state lasts across calls.
            idle = now - self._idle_since > _IDLE_AFTER
            cap = self._poll_idle if idle else self._poll_max
            time.sleep(min(cap if idle else delay, remaining))
            delay = min(delay * 2, cap)

    def _read_bytes(self, timeout: float) -> tuple[LogOffset, bytes] | None:
        items = self._wait(1, timeout)
        return items[0] if items else None

    def _read_bytes_batch(self, max_records: int, timeout: float) -> list[tuple[LogOffset, bytes]]:
        return self._wait(max_records, timeout)

    def _read_records_batch(self, max_records: int, timeout: float) -> list[LogRecord[Any]]:
        return self._wait(max_records, timeout, as_records=True)

    # --- positions -----------------------------------------------------------------------------

    def _commit_partition(self, partition: LogPartition) -> LogOffset:
        position = self._readers[partition].next_offset
        self.manager.offsets(partition.name).put(self.group, partition.partition, position)
        return LogOffset(partition, position)

    def _commit_offsets(self, positions: dict[LogPartition, int]) -> None:
        for partition, position in positions.items():
            self.manager.offsets(partition.name).put(self.group, partition.partition, position)

    def to_start(self) -> None:
        for partition, reader in self._readers.items():
            reader.position(self.manager.first_offset(partition))

    def to_end(self) -> None:
        for partition, reader in self._readers.items():
            reader.position(self.manager.end_offset(partition))

    def to_last_committed(self) -> None:
        for partition, reader in self._readers.items():
            committed = self.manager.offsets(partition.name).get(self.group, partition.partition)
            reader.position(committed if committed is not None else 0)

    def _seek(self, offset: LogOffset) -> None:
        self._readers[offset.partition].position(offset.offset)

    def _reset(self, partitions: list[LogPartition]) -> None:
        for partition in partitions:
            first = self.manager.first_offset(partition)
            self.manager.offsets(partition.name).put(self.group, partition.partition, first)
            reader = self._readers.get(partition)
            if reader is not None:
                reader.position(first)

    def _close(self) -> None:
        self._drop(list(self._readers))


class LocalSubscriber(LocalTailer):
    """A tailer whose partitions follow the group's live members (see ``group.py``)."""

    def __init__(
        self,
        manager: LocalLogManager,
        group: Name,
        codec: Codec[Any],
        names: list[Name],
        listener: RebalanceListener | None,
    ) -> None:
        super().__init__(manager, group, codec, [])
        self.names = list(names)
        self.listener = listener
        self._membership = Membership(manager.options.root, group, self.names)
        self._last_check = 0.0
        self._pending = False
        self._rebalance(initial=True)

    def _rebalance(self, initial: bool = False) -> None:
        self._last_check = time.monotonic()
        members = self._membership.members()
        sizes: dict[Name, int] = {}
        for name in {n for names in members.values() for n in names}:
            size = self.manager.size_if_exists(name)
            if size is not None:
                sizes[name] = size
        desired = assign(members, sizes).get(self._membership.member_id, [])
        wanted = set(desired)
        revoked = [p for p in self._readers if p not in wanted]
        if revoked:
            if self.listener is not None:
                self.listener.on_partitions_revoked(revoked)
            self._drop(revoked)
        assigned = [p for p in desired if p not in self._readers and self._take(p)]
        self._pending = len(self._readers) < len(desired)
        # As after an (eager) Kafka rebalance, every partition restarts from its committed offset,
        # the ones kept included: what was read and not committed is read again, never skipped.
        for partition in self._readers if (revoked or assigned) else ():
            committed = self.manager.offsets(partition.name).get(self.group, partition.partition)
            self._readers[partition].position(committed if committed is not None else 0)
        if assigned and self.listener is not None:
            self.listener.on_partitions_assigned(assigned)
        if not initial and (revoked or assigned):
            raise RebalanceError(
                f"group {self.group.urn!r} rebalanced: revoked {[str(p) for p in revoked]}, "
                f"assigned {[str(p) for p in assigned]}"
            )

    @property
    def assignment_pending(self) -> bool:
        return self._pending

    def _before_read(self) -> None:
        interval = _REBALANCE_CHECK / 10 if self._pending else _REBALANCE_CHECK
        if time.monotonic() - self._last_check >= interval:
            self._rebalance()

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            self._membership.close()
