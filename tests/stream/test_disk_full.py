"""A computation whose local log's disk fills up waits and resumes once space is back (issue 14 item 5)."""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.errors import StorageError
from conveyor.log import open_log_manager
from conveyor.record import Record
from conveyor.stream import Settings, StreamProcessor, Topology
from tests.stream.computations import Upper
from tests.stream.conftest import wait_until

IN, OUT = "demo/full", "demo/fullout"


def fill(path: Path) -> None:
    """Write ``path`` until the disk holding it is full."""
    chunk = b"\0" * 4096
    with open(path, "wb", buffering=0) as file:
        try:
            while True:
                file.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    try:  # the last pages too
        with open(path, "ab", buffering=0) as file:
            while True:
                file.write(b"\0")
    except OSError:
        pass


@pytest.mark.slow
def test_a_computation_resumes_once_its_full_disk_has_space_again(
    small_tmpfs: Callable[[int], Path], caplog: pytest.LogCaptureFixture
) -> None:
    disk = small_tmpfs(1024)
    manager = open_log_manager(f"local://{disk}/log", default_codec="json", segment_bytes=256 << 10)
    topology = Topology.builder().add_computation(Upper, [f"i1:{IN}", f"o1:{OUT}"]).build()
    settings = Settings(concurrency=1, partitions=1, subscribe=True)
    processor = StreamProcessor(manager, topology, settings, name="full")
    caplog.set_level(logging.INFO, logger="conveyor.stream")
    processor.start()
    try:
        assert processor.wait_for_assignments(30)
        appender = manager.appender(IN)
        acknowledged = []
        for i in range(5):
            appender.append(f"k{i}", Record(f"k{i}", b"before"))
            acknowledged.append(f"K{i}")
        wait_until(lambda: processor.lag(Upper().name) == 0, 30, "the first records committed")

        filler = disk / "filler"
        fill(filler)
        # Appends go into the segments' reserved space while it lasts; commits need a new file.
        for i in range(5, 200):
            try:
                appender.append(f"k{i}", Record(f"k{i}", b"during"))
            except StorageError:
                break
            acknowledged.append(f"K{i}")
        assert len(acknowledged) > 5

        def failed() -> list[str]:
            return [
                r.getMessage()
                for r in caplog.records
                if r.levelno >= logging.ERROR and "full" in r.getMessage()
            ]

        wait_until(failed, 30, "the computation to hit the full disk")
        time.sleep(2)  # it keeps trying meanwhile: joining the group again fails too
        filler.unlink()

        seen: set[str] = set()
        with manager.create_tailer("test/check", OUT) as tailer:

            def processed() -> bool:
                seen.update(item.message.key for item in tailer.read_batch(1000, 0.1))
                return set(acknowledged) <= seen

            wait_until(processed, 60, "every acknowledged record processed")
        wait_until(lambda: processor.lag(Upper().name) == 0, 30, "every record committed")
        assert not processor.is_terminated()
        assert processor.status()[Upper().name].state == "running"
        assert not [r for r in caplog.records if "terminated on failure" in r.getMessage()]
        assert len(failed()) <= 2, failed()  # reported once (then at most every minute), not at each attempt
        assert [r for r in caplog.records if "resumed after" in r.getMessage()]
    finally:
        assert processor.stop(20)
        manager.close()


def test_a_computation_started_on_a_full_disk_joins_its_group_once_there_is_space(
    small_tmpfs: Callable[[int], Path], caplog: pytest.LogCaptureFixture
) -> None:
    disk = small_tmpfs(1024)
    manager = open_log_manager(f"local://{disk}/log", default_codec="json", segment_bytes=256 << 10)
    manager.create_if_not_exists(IN, 1)
    manager.create_if_not_exists(OUT, 1)
    appender = manager.appender(IN)
    for i in range(20):
        appender.append(f"k{i}", Record(f"k{i}", b"waiting"))
    filler = disk / "filler"
    fill(filler)
    topology = Topology.builder().add_computation(Upper, [f"i1:{IN}", f"o1:{OUT}"]).build()
    processor = StreamProcessor(manager, topology, Settings(subscribe=True), name="full")
    caplog.set_level(logging.INFO, logger="conveyor.stream")
    processor.start()
    try:
        wait_until(
            lambda: [
                r for r in caplog.records if r.levelno >= logging.ERROR and "joining group" in r.getMessage()
            ],
            30,
            "the group join to fail on the full disk",
        )
        filler.unlink()
        wait_until(lambda: processor.lag(Upper().name) == 0, 60, "every record committed")
        with manager.create_tailer("test/check", OUT) as tailer:
            keys = {item.message.key for item in tailer.read_batch(1000, 1.0)}
        assert keys == {f"K{i}" for i in range(20)}
        assert not processor.is_terminated()
    finally:
        assert processor.stop(20)
        manager.close()
