"""Appending to a Kafka topic: synchronous, each append waits for the broker's acknowledgement."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException, Message

from conveyor.codec.api import Codec
from conveyor.errors import BackendUnavailableError
from conveyor.log.api import LogAppender
from conveyor.log.kafka.admin import translate
from conveyor.log.names import Name
from conveyor.log.types import LogPartition

if TYPE_CHECKING:
    from conveyor.log.kafka.manager import KafkaLogManager

__all__ = ["KafkaAppender"]


class _Batch:
    """Delivery reports of one batch: the offset or error of each message, by index.

    One callback serves the whole batch (a callable per message costs twice as much): reports of
    a partition come in the order its messages were produced, so each report is matched to the
    oldest pending message of its partition, after checking that key and value are that
    message's (else the pending message that has them: a retry reordered the partition).
    """

    __slots__ = ("errors", "items", "offsets", "pending", "queues")

    def __init__(self, items: Sequence[tuple[int, str, bytes]]) -> None:
        self.items = items
        self.offsets: list[int] = [-1] * len(items)
        self.errors: list[KafkaError] = []
        self.pending = len(items)
        self.queues: dict[int, deque[int]] = {}

    def delivered(self, error: KafkaError | None, message: Message) -> None:
        self.pending -= 1
        queue = self.queues[message.partition()]  # type: ignore[index]
        index = queue.popleft()
        _, key, data = self.items[index]
        if message.value() != data or message.key() != key.encode():
            index = self._find(queue, index, message)
        if error is not None:
            self.errors.append(error)
        else:
            self.offsets[index] = message.offset()  # type: ignore[assignment]

    def _find(self, queue: deque[int], first: int, message: Message) -> int:
        value, key = message.value(), message.key()
        for position, index in enumerate(queue):
            _, k, data = self.items[index]
            if data == value and k.encode() == key:
                del queue[position]
                queue.appendleft(first)
                return index
        return first  # not found (cannot happen): keep the produce order


class KafkaAppender(LogAppender[Any]):
    """Appends to topic prefix + ``name.id``; the Kafka key is the record key (or the partition)."""

    manager: KafkaLogManager

    def __init__(self, manager: KafkaLogManager, name: Name, size: int, codec: Codec[Any]) -> None:
        super().__init__(manager, name, size, codec)
        self.topic = manager.settings.topic(name.id)

    def _append_bytes(self, partition: int, key: str, data: bytes) -> int:
        return self._append_bytes_many([(partition, key, data)])[0]

    def _append_bytes_many(self, items: Sequence[tuple[int, str, bytes]]) -> list[int]:
        settings = self.manager.settings
        deadline = time.monotonic() + settings.timeout
        batch = _Batch(items)
        producer = self.manager.producer()
        produce = producer.produce
        topic = self.topic
        callback = batch.delivered
        queues = batch.queues
        try:
            for index, (partition, key, data) in enumerate(items):
                queue = queues.get(partition)
                if queue is None:
                    queue = queues[partition] = deque()
                queue.append(index)
                while True:
                    try:
                        produce(topic, data, key.encode(), partition, callback)
                        break
                    except BufferError:
                        # The local queue is full: let librdkafka send, then retry.
                        producer.poll(0.01)
                        self._check_deadline(deadline, batch)
            # flush() sends at once, without waiting for linger.ms, and serves delivery reports.
            while batch.pending:
                producer.flush(min(0.1, max(0.0, deadline - time.monotonic())))
                if batch.pending:
                    self._check_deadline(deadline, batch)
        except KafkaException as exc:
            raise translate(exc, f"appending to {topic!r}", settings) from exc
        if batch.errors:
            error = batch.errors[0]
            raise translate(KafkaException(error), f"appending to {topic!r}", settings)
        return batch.offsets

    def _check_deadline(self, deadline: float, batch: _Batch) -> None:
        if time.monotonic() > deadline:
            raise BackendUnavailableError(
                f"Kafka log {self.manager.settings.redacted_url!r}: {batch.pending} record(s) to "
                f"{self.topic!r} not acknowledged within {self.manager.settings.timeout}s"
            )

    def _committed_position(self, group: Name, partition: LogPartition) -> int | None:
        manager = self.manager
        committed = manager.admin.committed(
            manager.settings.group_id(group.id), self.topic, [partition.partition]
        )
        return committed.get(partition.partition)
