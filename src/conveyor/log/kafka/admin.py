"""Topics, offsets and consumer groups through the Kafka admin client, with errors translated."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any, TypeVar

from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec  # type: ignore[attr-defined]

from conveyor.errors import (
    BackendUnavailableError,
    ConsumerGroupActiveError,
    ConveyorError,
    LogError,
    LogNotFoundError,
)
from conveyor.log.kafka.config import KafkaSettings

__all__ = ["KafkaAdmin", "translate"]

T = TypeVar("T")
logger = logging.getLogger("conveyor.log.kafka")

# Errors that mean "the broker cannot be reached or answered in time", worth retrying.
_UNAVAILABLE = {
    KafkaError._TRANSPORT,
    KafkaError._TIMED_OUT,
    KafkaError._MSG_TIMED_OUT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._RESOLVE,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NETWORK_EXCEPTION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError.BROKER_NOT_AVAILABLE,
}
# A broker that cannot say (UNKNOWN) still refuses to delete a group with members (NON_EMPTY_GROUP)
_NO_MEMBERS = {ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD, ConsumerGroupState.UNKNOWN}
_UNKNOWN_TOPIC = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION}


def kafka_error_of(exc: BaseException) -> KafkaError | None:
    """The KafkaError carried by a confluent-kafka exception, if any."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def translate(exc: BaseException, what: str, settings: KafkaSettings) -> ConveyorError:
    """A Conveyor error for a driver exception raised while doing ``what``."""
    if isinstance(exc, ConveyorError):
        return exc
    error = kafka_error_of(exc)
    text = error.str() if error is not None else str(exc) or type(exc).__name__
    message = f"Kafka log {settings.redacted_url!r}: {what}: {text}"
    if error is not None and error.code() in _UNKNOWN_TOPIC:
        return LogNotFoundError(f"{message} (log deleted?)")
    if error is None or error.code() in _UNAVAILABLE or error.retriable():
        return BackendUnavailableError(message)
    return LogError(message)


class KafkaAdmin:
    """The admin operations a log manager needs, bounded by the settings' timeout."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.timeout = settings.timeout
        self.client = AdminClient(settings.admin_config(logger))

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (KafkaException, TimeoutError, OSError) as exc:
            raise translate(exc, what, self.settings) from exc
        except Exception as exc:
            if type(exc).__module__.startswith("concurrent.futures"):
                raise translate(exc, what, self.settings) from exc
            raise

    def _result(self, future: Future[T]) -> T:
        return future.result(self.timeout)

    # --- topics --------------------------------------------------------------------------------

    def topics(self) -> dict[str, int]:
        """Every topic of the cluster (internal ones excluded) with its partition count."""

        def run() -> dict[str, int]:
            metadata = self.client.list_topics(timeout=self.timeout)
            return {
                name: len(topic.partitions)
                for name, topic in metadata.topics.items()
                if topic.error is None and not name.startswith("__")
            }

        return self._call("listing topics", run)

    def partitions(self, topic: str) -> int | None:
        """The partition count of ``topic``, None when it does not exist."""
        return self.topics().get(topic)

    def ready(self, topic: str, partitions: int) -> bool:
        """True when every partition of ``topic`` has a leader."""
        metadata = self._call("reading metadata", lambda: self.client.list_topics(timeout=self.timeout))
        info = metadata.topics.get(topic)
        if info is None or info.error is not None or len(info.partitions) < partitions:
            return False
        return all(p.leader >= 0 and p.error is None for p in info.partitions.values())

    def create(self, topic: str, partitions: int) -> bool:
        """Create ``topic``; False when it already exists. Waits until its partitions have leaders."""
        new = NewTopic(topic, num_partitions=partitions, replication_factor=self.settings.replication_factor)

        def run() -> bool:
            try:
                self._result(self.client.create_topics([new], operation_timeout=self.timeout)[topic])
            except KafkaException as exc:
                error = kafka_error_of(exc)
                if error is not None and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    return False
                raise
            return True

        created = self._call(f"creating topic {topic!r}", run)
        self._wait(lambda: self.ready(topic, partitions), f"topic {topic!r} to have leaders")
        return created

    def delete(self, topic: str) -> bool:
        """Delete ``topic``; False when it does not exist. Waits until metadata no longer shows it."""

        def run() -> bool:
            try:
                self._result(self.client.delete_topics([topic], operation_timeout=self.timeout)[topic])
            except KafkaException as exc:
                error = kafka_error_of(exc)
                if error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    return False
                raise
            return True

        deleted = self._call(f"deleting topic {topic!r}", run)
        self._wait(lambda: self.partitions(topic) is None, f"topic {topic!r} to disappear")
        return deleted

    def _wait(self, check: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.timeout
        delay = 0.01
        while not check():
            if time.monotonic() > deadline:
                raise BackendUnavailableError(
                    f"Kafka log {self.settings.redacted_url!r}: "
                    f"timed out after {self.timeout}s waiting for {what}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    # --- offsets and groups --------------------------------------------------------------------

    def offsets(self, topic: str, partitions: int, latest: bool) -> list[int]:
        """The end (``latest``) or start offset of each partition of ``topic``."""
        spec = OffsetSpec.latest() if latest else OffsetSpec.earliest()  # type: ignore[no-untyped-call]
        request = {TopicPartition(topic, p): spec for p in range(partitions)}

        def run() -> list[int]:
            futures = self.client.list_offsets(request, request_timeout=self.timeout)
            result = [0] * partitions
            for tp, future in futures.items():
                result[tp.partition] = max(0, self._result(future).offset)
            return result

        return self._call(f"listing offsets of {topic!r}", run)

    def committed(self, group: str, topic: str, partitions: Iterable[int] | None = None) -> dict[int, int]:
        """Committed offsets of the Kafka group ``group`` on ``topic`` (partition -> offset)."""
        wanted = None if partitions is None else [TopicPartition(topic, p) for p in partitions]
        request = [ConsumerGroupTopicPartitions(group, wanted)]

        def run() -> dict[int, int]:
            futures = self.client.list_consumer_group_offsets(request, request_timeout=self.timeout)
            result: dict[int, int] = {}
            for future in futures.values():
                answer: Any = self._result(future)
                for tp in answer.topic_partitions or []:
                    if tp.topic == topic and tp.error is None and tp.offset >= 0:
                        result[tp.partition] = tp.offset
            return result

        return self._call(f"reading committed offsets of group {group!r}", run)

    def all_committed(self, group: str) -> list[TopicPartition]:
        """Every committed offset of the Kafka group ``group``, on every topic."""

        def run() -> list[TopicPartition]:
            request = [ConsumerGroupTopicPartitions(group)]
            futures = self.client.list_consumer_group_offsets(request, request_timeout=self.timeout)
            found: list[TopicPartition] = []
            for future in futures.values():
                answer: Any = self._result(future)
                found += [tp for tp in answer.topic_partitions or [] if tp.error is None and tp.offset >= 0]
            return found

        return self._call(f"reading committed offsets of group {group!r}", run)

    def active_members(self, group: str) -> int | None:
        """Members of the Kafka group ``group`` (None: the broker names none but says the group is
        not empty, as tansu does for a stable group); 0 when it has none."""

        def run() -> int | None:
            futures = self.client.describe_consumer_groups([group], request_timeout=self.timeout)
            answer: Any = self._result(futures[group])
            if answer.members:
                return len(answer.members)
            if answer.state in _NO_MEMBERS:
                return 0
            return None

        return self._call(f"describing group {group!r}", run)

    def delete_group(self, group: str) -> bool:
        """Delete the Kafka group ``group`` with its offsets; False when it does not exist.
        ``ConsumerGroupActiveError`` when the broker says it has members."""

        def run() -> bool:
            try:
                self._result(self.client.delete_consumer_groups([group], request_timeout=self.timeout)[group])
            except KafkaException as exc:
                error = kafka_error_of(exc)
                if error is not None and error.code() == KafkaError.GROUP_ID_NOT_FOUND:
                    return False
                if error is not None and error.code() == KafkaError.NON_EMPTY_GROUP:
                    raise ConsumerGroupActiveError(
                        f"Kafka group {group!r} has members: stop its consumers first"
                    ) from exc
                raise
            return True

        return self._call(f"deleting group {group!r}", run)

    def commit_offsets(self, group: str, offsets: list[TopicPartition]) -> None:
        """Set committed offsets of the (empty) Kafka group ``group``, as a consumer commits them
        (some Kafka-protocol brokers do not implement the admin call for it)."""

        def run() -> None:
            consumer = Consumer(self.settings.consumer_config(group, logger))
            try:
                consumer.commit(
                    offsets=[TopicPartition(tp.topic, tp.partition, tp.offset) for tp in offsets],
                    asynchronous=False,
                )
            finally:
                consumer.close()

        self._call(f"setting committed offsets of group {group!r}", run)

    def groups(self) -> list[str]:
        """Every consumer group id of the cluster."""

        def run() -> list[str]:
            answer: Any = self._result(self.client.list_consumer_groups(request_timeout=self.timeout))
            return [g.group_id for g in answer.valid]

        return self._call("listing consumer groups", run)
