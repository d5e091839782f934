"""``kafka://``: logs as Kafka topics, consumer groups as Kafka groups, Nuxeo-compatible names."""

from __future__ import annotations

import logging
import threading
from typing import Any

from confluent_kafka import KafkaException, Producer

from conveyor.codec.api import Codec
from conveyor.errors import ConsumerGroupActiveError, LogNotFoundError
from conveyor.log.api import LogAppender, LogCapabilities, LogManager, LogTailer
from conveyor.log.kafka.admin import KafkaAdmin, translate
from conveyor.log.kafka.appender import KafkaAppender
from conveyor.log.kafka.config import KafkaSettings, parse_kafka_url
from conveyor.log.kafka.tailer import KafkaSubscriber, KafkaTailer
from conveyor.log.names import Name
from conveyor.log.types import LogLag, LogPartition, RebalanceListener

__all__ = ["KafkaLogManager"]

logger = logging.getLogger("conveyor.log.kafka")

PRODUCERS = 4
"""Producers per manager. A synchronous append waits until its producer's queue is empty, so
threads appending at once through one producer wait for each other's records (three times slower
with four threads); each thread appends through one of these, given out in turn."""


class KafkaLogManager(LogManager):
    """Logs on a Kafka-protocol cluster: topic = prefix + ``Name.id``, group = prefix + group id.

    Open it with ``open_log_manager("kafka://host:9092?prefix=nuxeo-")``; see
    :mod:`conveyor.log.kafka.config` for the settings. Appends are synchronous (acknowledged by
    the broker before returning); offsets are committed synchronously; delivery to consumers is
    at-least-once.
    """

    capabilities = LogCapabilities(
        subscribe=True, multi_process=True, offset_for_timestamp=True, delete=True, dense_offsets=True
    )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings.redacted_url!r})"

    def __init__(self, settings: KafkaSettings) -> None:
        super().__init__(settings.url, settings.default_codec)
        self.settings = settings
        self.admin = KafkaAdmin(settings)
        self._producers: list[Producer] = []
        self._next_producer = 0
        self._thread_producer = threading.local()
        self._producer_lock = threading.Lock()
        # Fail fast, naming the URL, when no broker answers within the timeout.
        self.admin.topics()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> KafkaLogManager:
        """Open ``kafka://host:port[,host:port][?prefix=...&<librdkafka property>=...]``."""
        return cls(parse_kafka_url(url, options))

    def producer(self) -> Producer:
        """The producer of the calling thread: one of up to ``PRODUCERS`` shared by this manager's
        appenders (created on first use)."""
        producer: Producer | None = getattr(self._thread_producer, "producer", None)
        if producer is not None:
            return producer
        with self._producer_lock:
            index = self._next_producer % PRODUCERS
            if index == len(self._producers):
                try:
                    self._producers.append(Producer(self.settings.producer_config(logger)))
                except KafkaException as exc:
                    raise translate(exc, "creating a producer", self.settings) from exc
            self._next_producer += 1
            producer = self._producers[index]
        self._thread_producer.producer = producer
        return producer

    def _topic(self, name: Name) -> str:
        return self.settings.topic(name.id)

    # --- backend primitives --------------------------------------------------------------------

    def _create(self, name: Name, partitions: int) -> bool:
        topic = self._topic(name)
        existing = self.admin.partitions(topic)
        if existing is not None:
            if existing != partitions:
                logger.warning(
                    "log %s (topic %s) exists with %d partitions, not %d",
                    name.urn,
                    topic,
                    existing,
                    partitions,
                )
            return False
        return self.admin.create(topic, partitions)

    def _exists(self, name: Name) -> bool:
        return self.admin.partitions(self._topic(name)) is not None

    def _size(self, name: Name) -> int:
        size = self.admin.partitions(self._topic(name))
        if size is None:
            raise LogNotFoundError(f"log {name.urn!r} does not exist")
        return size

    def _delete(self, name: Name) -> bool:
        return self.admin.delete(self._topic(name))

    def _list_all(self) -> list[Name]:
        prefix = self.settings.prefix
        names = []
        for topic in self.admin.topics():
            if topic.startswith(prefix) and len(topic) > len(prefix):
                try:
                    names.append(Name.of_id(topic[len(prefix) :]))
                except ValueError:
                    continue  # a topic of ours by prefix but not a valid Nuxeo name
        return names

    def _list_consumer_groups(self, name: Name) -> list[Name]:
        prefix = self.settings.prefix
        topic = self._topic(name)
        result = []
        for group in self.admin.groups():
            if not group.startswith(prefix) or len(group) == len(prefix):
                continue
            if self.admin.committed(group, topic):
                try:
                    result.append(Name.of_id(group[len(prefix) :]))
                except ValueError:
                    continue
        return result

    def _delete_consumer_group(self, group: Name, name: Name) -> bool:
        kafka_group = self.settings.group_id(group.id)
        topic = self._topic(name)
        members = self.admin.active_members(kafka_group)
        if members != 0:
            count = "" if members is None else f"{members} "
            raise ConsumerGroupActiveError(
                f"consumer group {group.urn!r} (Kafka group {kafka_group!r}) has {count}active member(s): "
                "stop its consumers first"
            )
        committed = self.admin.all_committed(kafka_group)
        if not any(tp.topic == topic for tp in committed):
            return False
        # A Kafka group spans topics: delete it, then put back its offsets on the other topics.
        others = [tp for tp in committed if tp.topic != topic]
        if not self.admin.delete_group(kafka_group):
            return False
        if others:
            self.admin.commit_offsets(kafka_group, others)
        return True

    def _lag_per_partition(self, name: Name, group: Name) -> list[LogLag]:
        topic = self._topic(name)
        size = self._size(name)
        ends = self.admin.offsets(topic, size, latest=True)
        committed = self.admin.committed(self.settings.group_id(group.id), topic)
        starts = self.admin.offsets(topic, size, latest=False) if len(committed) < size else [0] * size
        return [LogLag.of(committed.get(p, starts[p]), ends[p]) for p in range(size)]

    def _new_appender(self, name: Name, codec: Codec[Any]) -> LogAppender[Any]:
        return KafkaAppender(self, name, self._size(name), codec)

    def _new_tailer(self, group: Name, partitions: list[LogPartition], codec: Codec[Any]) -> LogTailer[Any]:
        return KafkaTailer(self, group, codec, partitions)

    def _new_subscriber(
        self, group: Name, names: list[Name], listener: RebalanceListener | None, codec: Codec[Any]
    ) -> LogTailer[Any]:
        return KafkaSubscriber(self, group, codec, names, listener)

    def _close(self) -> None:
        with self._producer_lock:
            producers, self._producers = self._producers, []
        for producer in producers:
            producer.flush(self.settings.timeout)
