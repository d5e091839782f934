"""The appender of a local log: frames records and hands each partition's batch to its writer."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from conveyor.codec.api import Codec
from conveyor.errors import RecordTooLargeError
from conveyor.log.api import LogAppender
from conveyor.log.local.partition import PartitionWriter
from conveyor.log.local.segment import frame, frame_many
from conveyor.log.names import Name
from conveyor.log.types import LogPartition

if TYPE_CHECKING:
    from conveyor.log.local.manager import LocalLogManager

__all__ = ["LocalAppender"]


class LocalAppender(LogAppender[Any]):
    """Thread-safe; processes serialize on each partition's lock file."""

    manager: LocalLogManager

    def __init__(self, manager: LocalLogManager, name: Name, size: int, codec: Codec[Any]) -> None:
        super().__init__(manager, name, size, codec)
        retention = manager.retention_of(name)
        options = manager.options
        self._max = options.max_record_bytes
        self._writers = [
            PartitionWriter(
                manager.partition_dir(LogPartition(name, i)),
                options.segment_bytes,
                retention,
                options.fsync,
                label=f"local log {name.urn!r} partition {i}",
            )
            for i in range(size)
        ]
        self._mutexes = [threading.Lock() for _ in range(size)]

    def _too_large(self, partition: int, data: bytes) -> RecordTooLargeError:
        return RecordTooLargeError(
            f"record of {len(data)} bytes for log {self.name.urn!r} partition {partition} exceeds "
            f"max_record_bytes={self._max}"
        )

    def _append_bytes(self, partition: int, key: str, data: bytes) -> int:
        if len(data) > self._max:
            raise self._too_large(partition, data)
        framed = frame(data)
        with self._mutexes[partition]:
            self._check_open()
            return self._writers[partition].append(framed, 1)

    def _append_bytes_many(self, items: Sequence[tuple[int, str, bytes]]) -> list[int]:
        limit = self._max
        by_partition: dict[int, list[bytes]] = {}
        order: list[int] = []
        for partition, _key, data in items:
            if len(data) > limit:
                raise self._too_large(partition, data)
            batch = by_partition.get(partition)
            if batch is None:
                batch = by_partition[partition] = []
            batch.append(data)
            order.append(partition)
        firsts: dict[int, int] = {}
        for partition, batch in by_partition.items():
            framed = frame_many(batch)
            with self._mutexes[partition]:
                self._check_open()
                firsts[partition] = self._writers[partition].append(framed, len(batch))
        offsets: list[int] = []
        for partition in order:
            offsets.append(firsts[partition])
            firsts[partition] += 1
        return offsets

    def _committed_position(self, group: Name, partition: LogPartition) -> int | None:
        return self.manager.offsets(partition.name).get(group, partition.partition)

    def close(self) -> None:
        """Stop accepting appends and close the partition files."""
        super().close()
        for mutex, writer in zip(self._mutexes, self._writers, strict=True):
            with mutex:
                writer.close()
