"""The local backend's files: segments, rolling, retention, checksums, torn tails, bad metadata."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.errors import ConfigurationError, LogCorruptedError, RecordTooLargeError
from conveyor.log import LogOffset, LogPartition, Name, open_log_manager
from conveyor.log.local.manager import LocalLogManager
from conveyor.log.local.segment import HEADER, frame, list_segments

LOG = Name.of("files", "log")


def _open(root: Path, **options: object) -> LocalLogManager:
    manager = open_log_manager(f"local://{root}", default_codec="bytes", **options)
    assert isinstance(manager, LocalLogManager)
    return manager


def _read_all(manager: LocalLogManager, group: str = "reader", partition: int = 0) -> list[bytes]:
    tailer = manager.create_tailer(group, LogPartition(LOG, partition))
    try:
        out: list[bytes] = []
        while True:
            batch = tailer.read_batch(1000, timeout=0.05)
            if not batch:
                return out
            out.extend(r.message for r in batch)
    finally:
        tailer.close()


def _segments(root: Path, partition: int = 0) -> list[str]:
    return [s.path for s in list_segments(str(root / LOG.id / f"P-{partition:02d}"))]


def test_layout_and_metadata(tmp_path: Path) -> None:
    with _open(tmp_path) as manager:
        assert manager.create_if_not_exists(LOG, 3)
        assert not manager.create_if_not_exists(LOG, 5)
        assert manager.size(LOG) == 3
        manager.appender(LOG).append(0, b"x")
    assert sorted(p.name for p in (tmp_path / LOG.id).iterdir()) == ["P-00", "P-01", "P-02", "log.json"]
    with _open(tmp_path) as reopened:
        assert reopened.list_all() == [LOG]
        assert reopened.size(LOG) == 3
        assert _read_all(reopened) == [b"x"]


def test_segments_roll_by_size_and_reads_cross_them(tmp_path: Path) -> None:
    payloads = [os.urandom(100) + i.to_bytes(4, "big") for i in range(500)]
    with _open(tmp_path, segment_bytes=4096) as manager:
        manager.create_if_not_exists(LOG, 1)
        appender = manager.appender(LOG)
        offsets = [appender.append(0, p).offset for p in payloads[:250]]
        offsets += [o.offset for o in appender.append_many([(0, p) for p in payloads[250:]])]
        assert offsets == list(range(500))
        assert len(_segments(tmp_path)) > 5  # a batch is never split across segments
        assert _read_all(manager) == payloads
        tailer = manager.create_tailer("seeker", LogPartition(LOG, 0))
        tailer.seek(LogOffset(LogPartition(LOG, 0), 321))
        record = tailer.read(timeout=1)
        assert record is not None and record.offset.offset == 321 and record.message == payloads[321]
        tailer.close()


def test_retention_deletes_old_cycles(tmp_path: Path) -> None:
    with _open(tmp_path, retention="1s") as manager:
        manager.create_if_not_exists(LOG, 1)
        appender = manager.appender(LOG)
        appender.append(0, b"old")
        time.sleep(1.1)
        appender.append(0, b"new cycle")
        time.sleep(1.1)
        appender.append(0, b"newest")
        names = [os.path.basename(p) for p in _segments(tmp_path)]
        assert len(names) <= 2, names
        assert manager.first_offset(LogPartition(LOG, 0)) >= 1
        assert _read_all(manager)[-1] == b"newest"
        assert b"old" not in _read_all(manager, "another")
        assert manager.lag(LOG, "fresh").lag <= 2


def test_record_too_large_is_refused_and_log_intact(tmp_path: Path) -> None:
    with _open(tmp_path, max_record_bytes=1024) as manager:
        manager.create_if_not_exists(LOG, 1)
        appender = manager.appender(LOG)
        appender.append(0, b"ok")
        with pytest.raises(RecordTooLargeError, match="max_record_bytes=1024"):
            appender.append(0, b"x" * 2000)
        with pytest.raises(RecordTooLargeError):
            appender.append_many([(0, b"fine"), (0, b"y" * 5000)])
        assert appender.append(0, b"after").offset == 1
        assert _read_all(manager) == [b"ok", b"after"]


def test_flipped_byte_is_reported_with_its_file(tmp_path: Path) -> None:
    with _open(tmp_path) as manager:
        manager.create_if_not_exists(LOG, 1)
        manager.appender(LOG).append_many([(0, b"a" * 50), (0, b"b" * 50), (0, b"c" * 50)])
    segment = _segments(tmp_path)[0]
    with open(segment, "r+b") as file:  # a payload byte of the second entry
        file.seek(HEADER.size + 8 + 50 + 8 + 10)
        file.write(b"X")
    with _open(tmp_path) as manager:
        tailer = manager.create_tailer("g", LOG)
        first = tailer.read(timeout=0.5)
        assert first is not None and first.message == b"a" * 50
        with pytest.raises(LogCorruptedError, match=os.path.basename(segment)) as info:
            tailer.read(timeout=0.5)
        assert "offset 1" in str(info.value)
        tailer.close()


def test_torn_tail_is_sealed_by_the_next_appender(tmp_path: Path) -> None:
    with _open(tmp_path) as manager:
        manager.create_if_not_exists(LOG, 1)
        manager.appender(LOG).append(0, b"complete")
    segment = _segments(tmp_path)[0]
    with open(segment, "ab") as file:  # an appender killed in the middle of its write
        file.write(frame(b"z" * 100)[:40])
    with _open(tmp_path) as manager:
        assert _read_all(manager) == [b"complete"]  # a partial entry reads as "not yet"
        assert manager.appender(LOG).append(0, b"next").offset == 1
        assert _read_all(manager, "other") == [b"complete", b"next"]
        assert len(_segments(tmp_path)) == 2


def test_zero_filled_tail_is_not_corruption(tmp_path: Path) -> None:
    with _open(tmp_path) as manager:
        manager.create_if_not_exists(LOG, 1)
        manager.appender(LOG).append(0, b"one")
    with open(_segments(tmp_path)[0], "ab") as file:  # preallocated, never written (power loss)
        file.write(bytes(64))
    with _open(tmp_path) as manager:
        assert _read_all(manager) == [b"one"]
        assert manager.appender(LOG).append(0, b"two").offset == 1
        assert _read_all(manager, "again") == [b"one", b"two"]


def test_garbage_metadata_is_a_clear_error(tmp_path: Path) -> None:
    with _open(tmp_path) as manager:
        manager.create_if_not_exists(LOG, 2)
    (tmp_path / LOG.id / "log.json").write_bytes(b"\x00garbage{")
    with _open(tmp_path) as manager, pytest.raises(LogCorruptedError, match=r"log\.json"):
        manager.size(LOG)


def test_bad_urls_and_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="retention"):
        open_log_manager(f"local://{tmp_path}?retention=forever")
    with pytest.raises(ConfigurationError, match="bogus"):
        open_log_manager(f"local://{tmp_path}?bogus=1")
    with pytest.raises(ConfigurationError, match="segment_bytes"):
        open_log_manager(f"local://{tmp_path}", segment_bytes=10)
    with pytest.raises(ConfigurationError, match="fsync"):
        open_log_manager(f"local://{tmp_path}?fsync=sometimes")
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigurationError, match="file"):
        open_log_manager(f"local://{blocker}/log")


def test_fsync_policies_keep_data(tmp_path: Path) -> None:
    for index, policy in enumerate(["always", "10", "5ms"]):
        root = tmp_path / f"r{index}"
        with _open(root, fsync=policy) as manager:
            manager.create_if_not_exists(LOG, 1)
            manager.appender(LOG).append_many([(0, bytes([i])) for i in range(25)])
        with _open(root) as manager:
            assert _read_all(manager) == [bytes([i]) for i in range(25)]


def test_delete_while_appender_open_is_a_clear_error(tmp_path: Path) -> None:
    with _open(tmp_path) as manager, _open(tmp_path) as other:
        manager.create_if_not_exists(LOG, 1)
        appender = manager.appender(LOG)
        appender.append(0, b"x")
        assert other.delete(LOG)
        assert not manager.exists(LOG)
        with pytest.raises(Exception, match=r"deleted|does not exist|gone"):
            appender.append(0, b"y")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=40),
    cut=st.integers(min_value=0, max_value=20_000),
)
def test_any_truncation_reads_a_prefix(
    tmp_path_factory: pytest.TempPathFactory, payloads: list[bytes], cut: int
) -> None:
    root = tmp_path_factory.mktemp("trunc")
    with _open(root, segment_bytes=4096) as manager:
        manager.create_if_not_exists(LOG, 1)
        manager.appender(LOG).append_many([(0, p) for p in payloads])
    last = _segments(root)[-1]
    size = os.path.getsize(last)
    os.truncate(last, max(HEADER.size, size - cut % max(1, size - HEADER.size + 1)))
    with _open(root) as manager:
        read = _read_all(manager)
        assert read == payloads[: len(read)]
        appended = manager.appender(LOG).append(0, b"after")
        assert appended.offset == len(read)
        assert _read_all(manager, "again") == [*read, b"after"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payloads=st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=20),
    where=st.integers(min_value=0),
    value=st.integers(min_value=1, max_value=255),
)
def test_any_flipped_byte_never_returns_wrong_data(
    tmp_path_factory: pytest.TempPathFactory, payloads: list[bytes], where: int, value: int
) -> None:
    root = tmp_path_factory.mktemp("flip")
    with _open(root) as manager:
        manager.create_if_not_exists(LOG, 1)
        manager.appender(LOG).append_many([(0, p) for p in payloads])
    segment = _segments(root)[0]
    size = os.path.getsize(segment)
    position = HEADER.size + where % (size - HEADER.size)
    with open(segment, "r+b") as file:
        file.seek(position)
        original = file.read(1)[0]
        file.seek(position)
        file.write(bytes([original ^ value]))
    with _open(root) as manager:
        try:
            read = _read_all(manager)
        except LogCorruptedError:
            return
        assert read == payloads[: len(read)]


def test_torn_first_entry_of_a_segment_is_replaced_and_open_readers_follow(tmp_path: Path) -> None:
    with _open(tmp_path) as manager:
        manager.create_if_not_exists(LOG, 1)
        manager.appender(LOG).append(0, b"a" * 300)
    segment = _segments(tmp_path)[0]
    os.truncate(segment, HEADER.size + 100)  # the only entry is torn: nothing valid in the file
    with _open(tmp_path) as manager, _open(tmp_path) as writer:
        reader = manager.create_tailer("early", LOG)
        assert reader.read(timeout=0.05) is None  # waits at the torn entry
        assert writer.appender(LOG).append(0, b"fresh").offset == 0
        record = reader.read(timeout=2)
        assert record is not None and (record.offset.offset, record.message) == (0, b"fresh")
        reader.close()
        assert _read_all(writer, "late") == [b"fresh"]


def test_tailer_on_a_long_empty_partition_sees_the_first_segment(tmp_path: Path) -> None:
    # An idle tailer stops listing a settled, empty partition directory: a new segment must
    # still be found, whether the directory settled before the first look or after it.
    with _open(tmp_path) as manager:
        manager.create_if_not_exists(LOG, 2)
        tailer = manager.create_tailer("idle", [LogPartition(LOG, 0), LogPartition(LOG, 1)])
        try:
            assert tailer.read_batch(10, timeout=0.01) == []  # directories still fresh
            time.sleep(0.15)
            assert tailer.read_batch(10, timeout=0.05) == []  # settled: cached as empty
            manager.appender(LOG).append(1, b"first")
            assert [r.message for r in tailer.read_batch(10, timeout=1.0)] == [b"first"]
            manager.appender(LOG).append(0, b"second")
            assert [r.message for r in tailer.read_batch(10, timeout=1.0)] == [b"second"]
        finally:
            tailer.close()
