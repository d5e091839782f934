"""Reading Kafka topics: tailers on fixed partitions (assign) and subscribers (group rebalancing).

The tailer keeps the position of each partition (the next offset to read) itself, so that
``commit`` stores exactly what was read (Nuxeo: last read + 1) and a ``seek`` moves one partition
only. Positions are absolute offsets resolved when a partition is assigned: the group's committed
offset, else the partition's first offset.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from conveyor.codec.api import Codec
from conveyor.errors import RebalanceError
from conveyor.log.api import LogTailer
from conveyor.log.kafka.admin import translate
from conveyor.log.names import Name
from conveyor.log.types import LogOffset, LogPartition, RebalanceListener

if TYPE_CHECKING:
    from conveyor.log.kafka.manager import KafkaLogManager

__all__ = ["KafkaSubscriber", "KafkaTailer"]

_BATCH = 500  # records taken from librdkafka per call; read() hands them out one by one


class KafkaTailer(LogTailer[Any]):
    """A tailer of a group over fixed partitions (Kafka ``assign``; no group membership)."""

    manager: KafkaLogManager

    def __init__(
        self, manager: KafkaLogManager, group: Name, codec: Codec[Any], partitions: list[LogPartition]
    ) -> None:
        super().__init__(manager, group, codec)
        self._settings = manager.settings
        self._group_id = self._settings.group_id(group.id)
        self._by_topic: dict[str, Name] = {}
        self._partitions: list[LogPartition] = []
        # Next offset to read, by (topic, partition): tuples keep the per-record path cheap.
        self._positions: dict[tuple[str, int], int] = {}
        self._log_partitions: dict[tuple[str, int], LogPartition] = {}
        self._buffer: deque[Message] = deque()
        self._assign_pending = False
        self._consumer = self._new_consumer()
        if partitions:
            try:
                self._partitions = list(partitions)
                self._remember(partitions)
                self._set_positions(self._last_committed(partitions))
                self._assign()
            except BaseException:
                self._consumer.close()
                raise

    def _new_consumer(self) -> Consumer:
        from conveyor.log.kafka.admin import logger

        try:
            return Consumer(self._settings.consumer_config(self._group_id, logger))
        except KafkaException as exc:
            raise translate(exc, f"creating a consumer of group {self._group_id!r}", self._settings) from exc

    def _remember(self, partitions: list[LogPartition]) -> None:
        for partition in partitions:
            self._by_topic[self._settings.topic(partition.name.id)] = partition.name

    def _key(self, partition: LogPartition) -> tuple[str, int]:
        key = (self._settings.topic(partition.name.id), partition.partition)
        self._log_partitions[key] = partition
        return key

    def _set_positions(self, positions: dict[LogPartition, int]) -> None:
        for partition, offset in positions.items():
            self._positions[self._key(partition)] = offset

    def _position(self, partition: LogPartition) -> int:
        return self._positions[self._key(partition)]

    def _tp(self, partition: LogPartition, offset: int | None = None) -> TopicPartition:
        topic = self._settings.topic(partition.name.id)
        if offset is None:
            return TopicPartition(topic, partition.partition)
        return TopicPartition(topic, partition.partition, offset)

    def _run(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KafkaException as exc:
            raise translate(exc, what, self._settings) from exc

    # --- positions -----------------------------------------------------------------------------

    def _last_committed(self, partitions: list[LogPartition]) -> dict[LogPartition, int]:
        """Committed offset of each partition, else its first offset."""
        committed = self._run(
            f"reading committed offsets of group {self._group_id!r}",
            self._consumer.committed,
            [self._tp(p) for p in partitions],
            timeout=self._settings.timeout,
        )
        result: dict[LogPartition, int] = {}
        for partition, tp in zip(partitions, committed, strict=True):
            result[partition] = tp.offset if tp.offset >= 0 else self._watermark(partition, low=True)
        return result

    def _watermark(self, partition: LogPartition, low: bool) -> int:
        lo, hi = self._run(
            f"reading offsets of {partition}",
            self._consumer.get_watermark_offsets,
            self._tp(partition),
            timeout=self._settings.timeout,
            cached=False,
        )
        return int(lo if low else hi)

    def _assign(self) -> None:
        """(Re)start fetching every assigned partition at its tracked position, at the next read."""
        # Deferred to the read: a fetch started here and replaced by a seek (create_tailer then
        # to_start) long-polls the broker for fetch.wait.max.ms (500 ms), and the offset lookups
        # of the seek wait behind it on the same connection.
        self._buffer.clear()
        self._assign_pending = True

    def _assign_now(self) -> None:
        self._assign_pending = False
        self._run(
            "assigning partitions",
            self._consumer.assign,
            [self._tp(p, self._position(p)) for p in self._partitions],
        )

    def assignments(self) -> list[LogPartition]:
        return list(self._partitions)

    # --- reading -------------------------------------------------------------------------------

    def _take(self, timeout: float, max_records: int) -> list[Message]:
        """Messages from librdkafka (buffered), skipping errors that are not fatal."""
        if not self._buffer:
            if self._assign_pending:
                self._assign_now()
            consumer = self._consumer
            wanted = max(max_records, _BATCH)
            # consume() waits until it has ``wanted`` records or the timeout: take what is there,
            # else block in poll() only until the first record arrives.
            messages = self._run("reading", consumer.consume, wanted, 0)
            if not messages and timeout > 0:
                first = self._run("reading", consumer.poll, timeout)
                if first is not None:
                    messages = [first, *self._run("reading", consumer.consume, wanted - 1, 0)]
            self._after_poll()
            for message in messages:
                error = message.error()
                if error is None:
                    self._buffer.append(message)
                elif error.fatal():
                    raise translate(KafkaException(error), "reading", self._settings)
        buffer = self._buffer
        if max_records >= len(buffer):
            taken = list(buffer)
            buffer.clear()
            return taken
        popleft = buffer.popleft
        return [popleft() for _ in range(max_records)]

    def _reset_seen(self, key: tuple[str, int], expected: int, offset: int) -> None:
        from conveyor.log.kafka.admin import logger

        logger.warning(
            "group %s: partition %s-%d restarted at offset %d instead of %d (position out of range: "
            "auto.offset.reset); records may be read again",
            self.group.urn,
            key[0],
            key[1],
            offset,
            expected,
        )

    def _after_poll(self) -> None:
        """Hook for subscribers: report a rebalance that happened during the poll."""

    def _read_bytes(self, timeout: float) -> tuple[LogOffset, bytes] | None:
        batch = self._read_bytes_batch(1, timeout)
        return batch[0] if batch else None

    def _read_bytes_batch(self, max_records: int, timeout: float) -> list[tuple[LogOffset, bytes]]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            result = []
            messages = self._take(remaining, max_records)  # may run rebalance callbacks
            positions = self._positions
            partitions = self._log_partitions
            for message in messages:
                # Messages without an error always carry topic, partition and offset.
                key: tuple[str, int] = (message.topic(), message.partition())  # type: ignore[assignment]
                position = positions.get(key)
                offset: int = message.offset()  # type: ignore[assignment]
                if position is None:
                    continue  # of a partition no longer ours
                if offset < position:
                    # assign() purges what was fetched before, so only an offset reset by the
                    # broker (auto.offset.reset: position out of range) goes back: follow it.
                    self._reset_seen(key, position, offset)
                positions[key] = offset + 1
                value = message.value()
                result.append((LogOffset(partitions[key], offset), value if value is not None else b""))
            if result or time.monotonic() >= deadline or self._closed:
                return result

    # --- commit and moves ----------------------------------------------------------------------

    def _commit_partition(self, partition: LogPartition) -> LogOffset:
        position = self._position(partition)
        self._run(
            f"committing {partition}",
            self._consumer.commit,
            offsets=[self._tp(partition, position)],
            asynchronous=False,
        )
        return LogOffset(partition, position)

    def _commit_offsets(self, positions: dict[LogPartition, int]) -> None:
        self._run(
            f"committing {len(positions)} partition(s)",
            self._consumer.commit,
            offsets=[self._tp(p, o) for p, o in positions.items()],
            asynchronous=False,
        )

    def commit(self, partition: LogPartition | None = None) -> LogOffset | None:
        """Commit the read position of every assigned partition (in one request), or of ``partition``."""
        if partition is not None:
            return super().commit(partition)
        self._check_open()
        if self._partitions:
            self._commit_offsets({p: self._position(p) for p in self._partitions})
        return None

    def to_start(self) -> None:
        for partition in self._partitions:
            self._positions[self._key(partition)] = self._watermark(partition, low=True)
        self._assign()

    def to_end(self) -> None:
        for partition in self._partitions:
            self._positions[self._key(partition)] = self._watermark(partition, low=False)
        self._assign()

    def to_last_committed(self) -> None:
        self._set_positions(self._last_committed(self._partitions))
        self._assign()

    def _seek(self, offset: LogOffset) -> None:
        self._positions[self._key(offset.partition)] = offset.offset
        self._assign()

    def _reset(self, partitions: list[LogPartition]) -> None:
        starts = {p: self._watermark(p, low=True) for p in partitions}
        self._run(
            "resetting committed offsets",
            self._consumer.commit,
            offsets=[self._tp(p, o) for p, o in starts.items()],
            asynchronous=False,
        )
        moved = False
        for partition, start in starts.items():
            if partition in self._partitions:
                self._positions[self._key(partition)] = start
                moved = True
        if moved:
            self._assign()

    def offset_for_timestamp(self, partition: LogPartition, timestamp_ms: int) -> LogOffset | None:
        """The first offset whose timestamp (CreateTime or LogAppendTime) is >= ``timestamp_ms``."""
        self._check_open()
        found = self._run(
            "looking up offsets by time",
            self._consumer.offsets_for_times,
            [self._tp(partition, timestamp_ms)],
            timeout=self._settings.timeout,
        )
        offset = found[0].offset if found else -1
        return LogOffset(partition, offset) if offset >= 0 else None

    def _close(self) -> None:
        self._buffer.clear()
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError):
            pass  # closing a consumer whose broker is gone: nothing left to release


class KafkaSubscriber(KafkaTailer):
    """A tailer whose partitions come from Kafka group rebalancing (``subscribe``).

    Rebalance callbacks run inside ``read``: the listener is told, and ``read`` then raises
    ``RebalanceError`` (except for the first assignment), as Nuxeo's tailer throws.
    """

    def __init__(
        self,
        manager: KafkaLogManager,
        group: Name,
        codec: Codec[Any],
        names: list[Name],
        listener: RebalanceListener | None,
    ) -> None:
        super().__init__(manager, group, codec, [])
        self.names = list(names)
        self.listener = listener
        self._assigned_once = False
        self._rebalanced: str | None = None
        topics = [self._settings.topic(n.id) for n in names]
        for name, topic in zip(names, topics, strict=True):
            self._by_topic[topic] = name
        self._run(
            "subscribing",
            self._consumer.subscribe,
            topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    @property
    def joined(self) -> bool:
        """True once the group gave this member its first assignment (an empty one included).

        Kafka joins the group inside ``read`` (seconds after ``subscribe`` on some brokers), so
        ``assignments()`` is empty until then.
        """
        return self._assigned_once

    def _partitions_of(self, tps: list[TopicPartition]) -> list[LogPartition]:
        return [
            LogPartition(self._by_topic[tp.topic], tp.partition) for tp in tps if tp.topic in self._by_topic
        ]

    def _on_assign(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        if self._closed:
            return  # a last rebalance while leaving the group: nothing to set up
        assigned = self._partitions_of(tps)
        self._partitions = sorted(assigned)
        self._positions.clear()
        if assigned:
            self._set_positions(self._last_committed(self._partitions))
        self._assign()
        if self._assigned_once:
            self._rebalanced = f"assigned {[str(p) for p in assigned]}"
        self._assigned_once = True
        if self.listener is not None and assigned:
            self.listener.on_partitions_assigned(assigned)

    def _on_revoke(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        revoked = self._partitions_of(tps)
        self._drop(revoked)
        if self.listener is not None and revoked:
            self.listener.on_partitions_revoked(revoked)

    def _on_lost(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        lost = self._partitions_of(tps)
        self._drop(lost)
        if self.listener is not None and lost:
            self.listener.on_partitions_lost(lost)

    def _drop(self, partitions: list[LogPartition]) -> None:
        self._partitions = [p for p in self._partitions if p not in partitions]
        for partition in partitions:
            self._positions.pop(self._key(partition), None)
        self._buffer.clear()
        if self._closed:
            return  # leaving the group: librdkafka releases the partitions itself
        self._rebalanced = f"revoked {[str(p) for p in partitions]}"
        self._run("releasing partitions", self._consumer.unassign)

    def _assign(self) -> None:
        # At once: librdkafka expects the assignment to be set inside the rebalance callback.
        self._buffer.clear()
        self._assign_now()

    def _after_poll(self) -> None:
        if self._rebalanced is not None:
            what, self._rebalanced = self._rebalanced, None
            # Records fetched in this poll are dropped: fetch again from the tracked positions.
            self._assign()
            raise RebalanceError(f"group {self.group.urn!r} rebalanced: {what}")
