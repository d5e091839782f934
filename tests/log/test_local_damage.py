"""Damage in local log files is never hidden, never sealed over, and can be quarantined; a full disk
is a clear, retriable error that loses nothing acknowledged (issue 14, items 4 and 5)."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conveyor.cli.main import app
from conveyor.errors import LogCorruptedError, StorageError, StorageFullError
from conveyor.log import LogPartition, Name, open_log_manager
from conveyor.log.local.manager import LocalLogManager
from conveyor.log.local.segment import ENTRY, HEADER, list_segments

LOG = Name.of("damage", "log")
P0 = LogPartition(LOG, 0)


def _open(root: Path, **options: object) -> LocalLogManager:
    manager = open_log_manager(f"local://{root}", default_codec="bytes", **options)
    assert isinstance(manager, LocalLogManager)
    return manager


def _segments(root: Path) -> list[str]:
    return [s.path for s in list_segments(str(root / LOG.id / "P-00"))]


def _fill(root: Path, payloads: list[bytes], **options: object) -> None:
    with _open(root, **options) as manager:
        manager.create_if_not_exists(LOG, 1)
        appender = manager.appender(LOG)
        for start in range(0, len(payloads), 5):  # a batch is never split across segments
            appender.append_many([(0, p) for p in payloads[start : start + 5]])


def _entries(path: str) -> list[tuple[int, int]]:
    """(position, length) of each entry of a segment, up to its seal or end."""
    data = Path(path).read_bytes()
    pos, found = HEADER.size, []
    while pos + ENTRY.size <= len(data):
        length, crc = ENTRY.unpack_from(data, pos)
        if length == 0xFFFFFFFF and crc == 0xFFFFFFFF:
            break
        found.append((pos, length))
        pos += ENTRY.size + length
    return found


def _read_until_error(manager: LocalLogManager, group: str) -> tuple[list[bytes], LogCorruptedError | None]:
    tailer = manager.create_tailer(group, P0)
    read: list[bytes] = []
    try:
        while True:
            batch = tailer.read_batch(500, timeout=0.05)
            if not batch:
                return read, None
            read.extend(r.message for r in batch)
    except LogCorruptedError as exc:
        return read, exc
    finally:
        tailer.close()


def _records(count: int) -> list[bytes]:
    return [b"record-%05d-" % i + bytes([i % 251]) * 80 for i in range(count)]


def _assert_raises_every_time(manager: LocalLogManager, path: str, position: int, offset: int) -> None:
    tailer = manager.create_tailer("every_time", P0)
    try:
        read: list[bytes] = []
        for attempt in range(3):
            try:
                while True:
                    batch = tailer.read_batch(500, timeout=0.05)
                    assert batch, f"read {attempt}: [] instead of LogCorruptedError after {len(read)} records"
                    read.extend(r.message for r in batch)
            except LogCorruptedError as exc:
                assert exc.path == path and exc.position == position
                message = str(exc)
                assert os.path.basename(path) in message
                assert f"position {position}" in message and f"offset {offset}" in message
        assert len(read) == offset
    finally:
        tailer.close()


def test_length_bit_flip_in_a_non_last_segment_raises_at_every_read(tmp_path: Path) -> None:
    payloads = _records(200)
    _fill(tmp_path, payloads, segment_bytes=4096)
    first = _segments(tmp_path)[0]
    assert len(_segments(tmp_path)) > 3
    position, length = _entries(first)[5]
    with open(first, "r+b") as file:  # a high bit of the length: the entry now runs past the file
        file.seek(position)
        file.write(struct.pack("<I", length | 1 << 20))
    with _open(tmp_path) as manager:
        _assert_raises_every_time(manager, first, position, 5)
        # appends go on, and readers still stop at the damage rather than skip it silently
        assert manager.appender(LOG).append(0, b"after").offset == 200
        read, error = _read_until_error(manager, "late")
        assert read == payloads[:5] and error is not None


def test_truncated_non_last_segment_raises_at_every_read(tmp_path: Path) -> None:
    payloads = _records(200)
    _fill(tmp_path, payloads, segment_bytes=4096)
    segments = _segments(tmp_path)
    first_count = len(_entries(segments[0]))
    second = segments[1]
    cut_at, _length = _entries(second)[3]
    os.truncate(second, cut_at + 20)  # inside the fourth entry of the second segment
    with _open(tmp_path) as manager:
        _assert_raises_every_time(manager, second, cut_at, first_count + 3)
    os.truncate(second, cut_at)  # on an entry boundary: the seal is missing
    with _open(tmp_path) as manager:
        _assert_raises_every_time(manager, second, cut_at, first_count + 3)


def test_a_damaged_partition_raises_without_stopping_the_others(tmp_path: Path) -> None:
    with _open(tmp_path, segment_bytes=4096) as manager:
        manager.create_if_not_exists(LOG, 2)
        appender = manager.appender(LOG)
        for start in range(0, 150, 5):
            for partition in (0, 1):
                appender.append_many(
                    [(partition, b"%d-%05d" % (partition, i) + b"." * 90) for i in range(start, start + 5)]
                )
    first = _segments(tmp_path)[0]
    os.truncate(first, os.path.getsize(first) - 30)
    with _open(tmp_path) as manager:
        tailer = manager.create_tailer("both", LOG)
        read: dict[int, list[bytes]] = {0: [], 1: []}
        errors = 0
        for _ in range(200):
            try:
                for record in tailer.read_batch(7, timeout=0.01):
                    read[record.offset.partition.partition].append(record.message)
            except LogCorruptedError as exc:
                assert exc.path == first
                errors += 1
        tailer.close()
        assert len(read[1]) == 150 and errors > 50
        assert read[0] == [b"0-%05d" % i + b"." * 90 for i in range(len(read[0]))] and len(read[0]) < 150


runner = CliRunner()


def _cli(config: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["stream", *args, "--config", str(config)])
    return result.exit_code, result.output


def test_bit_flip_in_the_last_entry_never_reuses_its_offset(tmp_path: Path) -> None:
    config = tmp_path / "conveyor.toml"
    config.write_text(f'[node]\nid = "damage"\ndata_dir = "{tmp_path}/data"\n', encoding="utf-8")
    root = tmp_path / "data" / "log"
    payloads = _records(10)
    with _open(root, fsync="always") as manager:
        manager.create_if_not_exists(LOG, 1)
        manager.appender(LOG).append_many([(0, p) for p in payloads])
        committed = manager.create_tailer("committed", P0)
        assert len(committed.read_batch(100, timeout=1.0)) == 10
        committed.commit()  # a group already past the entry that gets damaged
        committed.close()
    segment = _segments(root)[0]
    position, length = _entries(segment)[-1]
    with open(segment, "r+b") as file:  # one bit of the last entry's payload
        file.seek(position + ENTRY.size + 40)
        byte = file.read(1)[0]
        file.seek(position + ENTRY.size + 40)
        file.write(bytes([byte ^ 0x10]))
    gap = (ENTRY.size + length) // ENTRY.size  # offsets the damaged bytes could hold
    with _open(root, fsync="always") as manager:
        read, error = _read_until_error(manager, "fresh")
        assert read == payloads[:9] and error is not None and "offset 9" in str(error)
        new = manager.appender(LOG).append(0, b"new record")
        assert new.offset == 9 + gap > 9
        _assert_raises_every_time(manager, segment, position, 9)
        with pytest.raises(LogCorruptedError):  # the group committed past it: an error, not silence
            manager.create_tailer("committed", P0).read_batch(10, timeout=0.05)
    code, output = _cli(config, "check", LOG.urn)
    assert code != 0, output
    assert "partition 0" in output and f"offsets 9..{8 + gap}" in output and "checksum" in output
    code, output = _cli(config, "repair", LOG.urn)
    assert code != 0 and "--skip-damaged" in output  # nothing changed without the flag
    code, output = _cli(config, "repair", LOG.urn, "--skip-damaged")
    assert code == 0, output
    assert f"offsets 9..{8 + gap} damaged" in output and f"up to {gap} record(s) lost" in output
    assert list((root / LOG.id / "P-00" / "quarantine").glob("*.damaged"))
    code, output = _cli(config, "check", LOG.urn)
    assert code == 0, output
    with _open(root) as manager:
        later = manager.appender(LOG).append(0, b"after repair")
        assert later.offset == new.offset + 1
        tailer = manager.create_tailer("committed", P0)
        assert [(r.offset.offset, r.message) for r in tailer.read_batch(10, timeout=1.0)] == [
            (new.offset, b"new record"),
            (later.offset, b"after repair"),
        ]
        tailer.close()
        read, error = _read_until_error(manager, "after")
        assert error is None and read == [*payloads[:9], b"new record", b"after repair"]


def test_a_bad_length_followed_by_entries_in_the_last_segment_is_damage(tmp_path: Path) -> None:
    payloads = _records(10)
    _fill(tmp_path, payloads)
    (segment,) = _segments(tmp_path)
    position, length = _entries(segment)[3]
    with open(segment, "r+b") as file:  # runs past the end of the file, but entries follow it
        file.seek(position)
        file.write(struct.pack("<I", length | 1 << 16))
    with _open(tmp_path) as manager:
        _assert_raises_every_time(manager, segment, position, 3)
        assert manager.appender(LOG).append(0, b"new").offset >= 10  # not sealed over at offset 3
        (damage,) = manager.check(LOG)[0].damaged
        assert damage.first_offset == 3 and damage.kept == 6
        manager.repair(LOG)
        read, error = _read_until_error(manager, "after")
        assert error is None and read == [*payloads[:3], *payloads[4:], b"new"]


def test_check_names_the_log_it_cannot_check(tmp_path: Path) -> None:
    config = tmp_path / "conveyor.toml"
    config.write_text(
        f'[node]\nid = "x"\ndata_dir = "{tmp_path}"\n[log]\nurl = "memory://x"\n', encoding="utf-8"
    )
    code, output = _cli(config, "check")
    assert code == 1 and "local log" in output and "memory://x" in output
    config.write_text(f'[node]\nid = "x"\ndata_dir = "{tmp_path}"\n', encoding="utf-8")
    code, output = _cli(config, "repair", "no/such", "--skip-damaged")
    assert code == 1 and "no/such" in output and "Traceback" not in output


def test_repair_keeps_the_records_after_a_damaged_entry(tmp_path: Path) -> None:
    payloads = _records(200)
    _fill(tmp_path, payloads, segment_bytes=4096)
    first = _segments(tmp_path)[0]
    count = len(_entries(first))
    position, _length = _entries(first)[4]
    with open(first, "r+b") as file:
        file.seek(position + ENTRY.size + 3)
        file.write(b"#")
    with _open(tmp_path) as manager:
        (part,) = manager.check(LOG)
        (damage,) = part.damaged
        assert (damage.first_offset, damage.end_offset, damage.kept) == (4, 5, count - 5)
        (done,) = manager.repair(LOG)
        assert done.damage.lost == 1
        read, error = _read_until_error(manager, "g")
        assert error is None and read == payloads[:4] + payloads[5:]
        assert manager.appender(LOG).append(0, b"more").offset == 200
        assert manager.check(LOG)[0].damaged == []


def test_torn_tails_are_still_recovered_silently(tmp_path: Path) -> None:
    payloads = _records(100)
    for index, tail in enumerate([None, bytes(64)]):
        root = tmp_path / f"r{index}"
        _fill(root, payloads, segment_bytes=4096)
        last = _segments(root)[-1]
        if tail is None:  # a partial last entry
            position, _length = _entries(last)[-1]
            os.truncate(last, position + 30)
            expected = payloads[:-1]
        else:  # a zero-filled tail
            with open(last, "ab") as file:
                file.write(tail)
            expected = payloads
        with _open(root) as manager:
            assert manager.check(LOG)[0].damaged == [] and manager.check(LOG)[0].torn is not None
            read, error = _read_until_error(manager, "g")
            assert error is None and read == expected
            assert manager.appender(LOG).append(0, b"next").offset == len(expected)
            read, error = _read_until_error(manager, "h")
            assert error is None and read == [*expected, b"next"]


# (16 KiB segments, 1000-byte records): the disk fills up inside a segment;
# (4 KiB segments, 1500-byte records): a segment rolls every 2 records, so it fills up on a roll;
# without fallocate (some file systems): a write fails part-way, its end is a torn tail
@pytest.mark.parametrize(
    ("segment_bytes", "record_bytes", "fallocate"),
    [(16 << 10, 1000, True), (4096, 1500, True), (16 << 10, 1000, False)],
)
def test_disk_full_is_a_clear_error_and_loses_nothing(
    small_tmpfs: Callable[[int], Path],
    monkeypatch: pytest.MonkeyPatch,
    segment_bytes: int,
    record_bytes: int,
    fallocate: bool,
) -> None:
    if not fallocate:
        monkeypatch.setattr("conveyor.log.local.partition.reserve", lambda fd, position, length: False)
    mount = small_tmpfs(256)
    filler = mount / "filler"
    filler.write_bytes(b"f" * (64 << 10))
    root = mount / "log"
    acknowledged: list[bytes] = []
    with _open(root, segment_bytes=segment_bytes) as manager:
        manager.create_if_not_exists(LOG, 1)
        appender = manager.appender(LOG)
        error: StorageError | None = None
        for i in range(2000):
            record = b"%06d" % i + os.urandom(record_bytes)
            try:
                assert appender.append(0, record).offset == len(acknowledged)
            except StorageError as exc:
                error = exc
                break
            acknowledged.append(record)
        assert isinstance(error, StorageFullError) and error.retriable
        message = str(error)
        assert "damage/log" in message and "partition 0" in message and str(root) in message
        assert error.path is not None and error.path.startswith(str(root)) and error.path.endswith(".seg")
        tailer = manager.create_tailer("group", P0)
        assert len(tailer.read_batch(5000, timeout=1.0)) == len(acknowledged)
        try:
            tailer.commit()
        except StorageFullError as exc:  # no room for the offset file either: named, and retriable
            assert "group" in str(exc) and "damage/log" in str(exc)
        assert not list(mount.rglob("*.tmp")), list(mount.rglob("*.tmp"))
        with pytest.raises(StorageFullError):  # still full: still refused, still nothing left over
            appender.append(0, b"x" * 1000)
        assert not list(mount.rglob("*.tmp"))
        filler.unlink()
        for i in range(20):
            record = b"again-%d" % i
            assert appender.append(0, record).offset == len(acknowledged)
            acknowledged.append(record)
        assert [r.message for r in tailer.read_batch(100, timeout=1.0)] == acknowledged[-20:]
        tailer.commit()
        tailer.close()
    with _open(root) as manager:
        read, corrupted = _read_until_error(manager, "check")
        assert corrupted is None and read == acknowledged
        assert manager.check(LOG)[0].damaged == []
        assert manager.lag(LOG, "group").lag == 0


# --- the format under random damage ----------------------------------------------------------------


def _build(root: Path, payloads: list[bytes]) -> list[str]:
    _fill(root, payloads, segment_bytes=4096)
    return _segments(root)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payloads=st.lists(st.binary(max_size=400), min_size=20, max_size=80),
    which=st.integers(min_value=0),
    where=st.integers(min_value=0),
    bit=st.integers(min_value=0, max_value=7),
    truncate=st.booleans(),
)
def test_random_damage_never_gives_wrong_data_nor_reuses_offsets(
    tmp_path_factory: pytest.TempPathFactory,
    payloads: list[bytes],
    which: int,
    where: int,
    bit: int,
    truncate: bool,
) -> None:
    root = tmp_path_factory.mktemp("damage")
    segments = _build(root, payloads)
    index = which % len(segments)
    target = segments[index]
    size = os.path.getsize(target)
    position = where % size
    last_entry = _entries(segments[-1])[-1][0] if _entries(segments[-1]) else None
    if truncate:
        os.truncate(target, position)
    else:
        with open(target, "r+b") as file:
            file.seek(position)
            byte = file.read(1)[0]
            file.seek(position)
            file.write(bytes([byte ^ (1 << bit)]))
    is_last = index == len(segments) - 1
    tail = Path(target).read_bytes()[last_entry:] if last_entry is not None and is_last else b"x"
    before_last = sum(len(_entries(s)) for s in segments[:-1]) if is_last else 0
    with _open(root) as manager:
        read, error = _read_until_error(manager, "g")
        assert read == payloads[: len(read)], "wrong data returned"
        if error is None and read != payloads:
            # only the tail of the last segment may be torn (read as "not yet"), never more
            assert is_last and len(read) >= before_last
        appended = manager.appender(LOG).append(0, b"after")
        if appended.offset < len(payloads):
            # an offset is given again only where the tail was torn: a truncation of the last
            # segment, a flip in the last entry's length that makes it run past the file, or one
            # that leaves that entry all zeros (an empty record's header is nearly zero)
            torn_by_flip = (
                not truncate
                and last_entry is not None
                and (last_entry <= position < last_entry + 4 or tail.count(0) == len(tail))
            )
            assert is_last and (truncate or torn_by_flip), (appended.offset, len(payloads))
            assert appended.offset >= len(read)
        read_again, error_again = _read_until_error(manager, "g2")
        assert read_again[: len(read)] == read[: len(read_again)]
        if error is not None:  # damage keeps raising until it is repaired
            assert error_again is not None
        checked = manager.check(LOG)[0]
        assert bool(checked.damaged) == (error is not None), (checked, error)
        manager.repair(LOG)
        assert manager.check(LOG)[0].damaged == []
        final, final_error = _read_until_error(manager, "g3")
        assert final_error is None, final_error
        assert final[-1] == b"after"
        remaining = iter(payloads)  # what is left is the records, in order, some skipped
        assert all(any(record == other for other in remaining) for record in final[:-1])
