"""``LogManager.delete_consumer_group``: a group without members loses its committed offsets on one
log (and leaves its consumer groups); a group with members is refused, its offsets kept."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.errors import ConsumerGroupActiveError, LogNotFoundError
from conveyor.log import LogManager, LogTailer, Name, open_log_manager
from tests.services import kafka_log_url

BACKENDS = ["memory", "local", pytest.param("kafka", marks=pytest.mark.kafka)]
LOG = Name.of("groups", "input")
OTHER_LOG = Name.of("groups", "other")
STALE = Name.of("groups", "stale")
KEPT = Name.of("groups", "kept")
TIMEOUT = 60.0


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> str:
    if request.param == "memory":
        return f"memory://{unique}"
    if request.param == "local":
        return f"local://{tmp_path}/log"
    return kafka_log_url(request.getfixturevalue("kafka_bootstrap"), unique)


@pytest.fixture
def manager(url: str) -> Iterator[LogManager]:
    with open_log_manager(url, default_codec="bytes") as opened:
        for name in (LOG, OTHER_LOG):
            opened.create_if_not_exists(name, 2)
            appender = opened.appender(name)
            for i in range(10):
                appender.append(i % 2, f"record {i}".encode())
        yield opened


def consume(manager: LogManager, group: Name, name: Name, records: int) -> None:
    """Read ``records`` records of ``name`` as ``group`` and commit them."""
    with manager.create_tailer(group, name) as tailer:
        for _ in range(records):
            assert tailer.read(10.0) is not None
        tailer.commit()


def joined(manager: LogManager, group: Name, name: Name) -> LogTailer[bytes]:
    """A subscriber of ``group`` on ``name`` once it has its partitions."""
    tailer = manager.subscribe(group, name)
    deadline = time.monotonic() + TIMEOUT
    while not tailer.assignments():
        assert time.monotonic() < deadline, "the subscriber never got its partitions"
        tailer.read(0.2)
    return tailer


def delete_when_empty(manager: LogManager, group: Name, name: Name) -> bool:
    """Delete ``group`` once the backend sees its last member gone (Kafka notices a leave late)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            return manager.delete_consumer_group(group, name)
        except ConsumerGroupActiveError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_delete_group_without_members(manager: LogManager) -> None:
    consume(manager, STALE, LOG, 4)
    consume(manager, KEPT, LOG, 2)
    assert manager.list_consumer_groups(LOG) == [KEPT, STALE]
    assert manager.lag(LOG, STALE).lag == 6

    assert manager.delete_consumer_group(STALE, LOG) is True

    assert manager.list_consumer_groups(LOG) == [KEPT]
    assert manager.lag(LOG, STALE).lag == 10  # back to "never committed": the whole log
    assert manager.lag(LOG, KEPT).lag == 8  # another group is untouched
    assert manager.delete_consumer_group(STALE, LOG) is False  # nothing left to delete
    assert manager.delete_consumer_group("groups/never", LOG) is False
    # the records are all still there
    with manager.create_tailer("groups/check", LOG) as tailer:
        read = 0
        while read < 10 and (batch := tailer.read_batch(100, 5.0)):
            read += len(batch)
        assert read == 10


def test_delete_group_on_one_log_keeps_its_offsets_on_another(manager: LogManager) -> None:
    consume(manager, STALE, LOG, 4)
    consume(manager, STALE, OTHER_LOG, 3)

    assert manager.delete_consumer_group(STALE, LOG) is True

    assert manager.list_consumer_groups(LOG) == []
    assert manager.list_consumer_groups(OTHER_LOG) == [STALE]
    assert manager.lag(OTHER_LOG, STALE).lag == 7


def test_delete_group_with_a_subscribed_member_is_refused(manager: LogManager) -> None:
    consume(manager, STALE, LOG, 4)
    member = joined(manager, STALE, LOG)
    try:
        with pytest.raises(ConsumerGroupActiveError, match="stop its consumers first"):
            manager.delete_consumer_group(STALE, LOG)
        assert manager.list_consumer_groups(LOG) == [STALE]
        assert manager.lag(LOG, STALE).lag == 6
    finally:
        member.close()

    assert delete_when_empty(manager, STALE, LOG) is True
    assert manager.list_consumer_groups(LOG) == []


def test_delete_group_with_an_open_tailer_is_refused(manager: LogManager) -> None:
    consume(manager, STALE, LOG, 4)
    tailer = manager.create_tailer(STALE, LOG)
    try:
        with pytest.raises(ConsumerGroupActiveError, match="stop its consumers first"):
            manager.delete_consumer_group(STALE, LOG)
        assert manager.lag(LOG, STALE).lag == 6
    finally:
        tailer.close()
    assert manager.delete_consumer_group(STALE, LOG) is True


def test_delete_group_of_an_unknown_log(manager: LogManager) -> None:
    with pytest.raises(LogNotFoundError):
        manager.delete_consumer_group(STALE, "groups/missing")


def test_local_tailer_of_another_manager_is_a_member(tmp_path: Path) -> None:
    """On the local log a tailer of another process (here another manager) holds the partition."""
    url = f"local://{tmp_path}/log"
    with (
        open_log_manager(url, default_codec="bytes") as first,
        open_log_manager(url, default_codec="bytes") as other,
    ):
        first.create_if_not_exists(LOG, 2)
        first.appender(LOG).append(0, b"one")
        consume(first, STALE, LOG, 1)
        tailer = other.create_tailer(STALE, LOG)
        try:
            with pytest.raises(ConsumerGroupActiveError, match="partition 0"):
                first.delete_consumer_group(STALE, LOG)
            assert first.list_consumer_groups(LOG) == [STALE]
        finally:
            tailer.close()
        assert first.delete_consumer_group(STALE, LOG) is True
        assert other.list_consumer_groups(LOG) == []
