"""The local backend shared by several processes: concurrent appenders, a consumer group across
processes, and ``kill -9`` of an appender or of a consumer."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor.errors import RebalanceError
from conveyor.log import LogManager, LogPartition, open_log_manager
from conveyor.log.api import LogTailer
from tests.child_process import ENV, LineCollector
from tests.log.local_child import LOG, parse_sequence_record, sequence_record

CHILD = str(Path(__file__).with_name("local_child.py"))


class Child(LineCollector):
    """A ``local_child.py`` process whose output lines are collected by a thread."""

    def __init__(self, *args: str) -> None:
        super().__init__(CHILD, *args)

    def wait_for(self, predicate: object, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if callable(predicate) and predicate(self.lines):
                return
            if self.process.poll() is not None:
                err = self.process.stderr.read() if self.process.stderr else ""
                raise AssertionError(f"child exited with {self.process.returncode}: {err}")
            time.sleep(0.01)
        raise AssertionError(f"child did not get there in {timeout}s; last lines {self.lines[-3:]}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._reader.join(5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[LogManager]:
    with open_log_manager(f"local://{tmp_path}", default_codec="bytes") as opened:
        yield opened


@pytest.fixture
def children() -> Iterator[Callable[..., Child]]:
    """Start children; any still running after the test is killed."""
    started: list[Child] = []

    def start(*args: str) -> Child:
        child = Child(*args)
        started.append(child)
        return child

    yield start
    for child in started:
        if child.process.poll() is None:
            child.kill()


def _drain(manager: LogManager, group: str) -> dict[int, list[bytes]]:
    tailer = manager.create_tailer(group, LOG)
    found: dict[int, list[bytes]] = defaultdict(list)
    while batch := tailer.read_batch(1000, timeout=0.2):
        for record in batch:
            found[record.offset.partition.partition].append(record.message)
    tailer.close()
    return found


def test_concurrent_appenders_in_three_processes(manager: LogManager, tmp_path: Path) -> None:
    manager.create_if_not_exists(LOG, 4)
    children = [
        subprocess.Popen([sys.executable, CHILD, str(tmp_path), "append", f"w{n}", "1500"], env=ENV)
        for n in range(3)
    ]
    for child in children:
        assert child.wait(120) == 0
    found = _drain(manager, "check")
    assert sum(len(v) for v in found.values()) == 4500
    assert manager.lag(LOG, "check").upper == 4500
    for records in found.values():
        per_writer: dict[str, list[int]] = defaultdict(list)
        for message in records:
            writer, index = message.decode().split(":")
            per_writer[writer].append(int(index))
        for indexes in per_writer.values():
            assert indexes == sorted(indexes)  # each writer's order is kept within a partition
    everything = sorted(m for v in found.values() for m in v)
    assert everything == sorted(f"w{n}:{i}".encode() for n in range(3) for i in range(1500))


@pytest.mark.slow
def test_killed_appender_leaves_a_readable_log(
    manager: LogManager, tmp_path: Path, children: Callable[..., Child]
) -> None:
    manager.create_if_not_exists(LOG, 1)
    child = children(str(tmp_path), "flood", "70000")
    child.wait_for(lambda lines: "flooding" in lines)
    time.sleep(0.3)
    child.kill()
    appender = manager.appender(LOG)
    after = appender.append(0, b"after the crash")
    found = _drain(manager, "check")[0]
    assert len(found) == after.offset + 1
    assert all(m == b"f" * 70000 for m in found[:-1])
    assert found[-1] == b"after the crash"


def _check_record(offset: tuple[int, int], message: bytes, seen: dict[tuple[int, int], bytes]) -> None:
    """A record read back is whole (a parent marker or an intact sequence record), dense, new."""
    if not message.startswith(b"parent:"):
        parse_sequence_record(message)  # raises on a torn or garbage record
    partition, position = offset
    assert offset not in seen, f"offset {offset} read twice"
    assert position == 0 or (partition, position - 1) in seen, f"offset {offset} skips one"
    seen[offset] = message


def _read_into(tailer: LogTailer[bytes], seen: dict[tuple[int, int], bytes], timeout: float) -> int:
    batch = tailer.read_batch(1000, timeout=timeout)
    for record in batch:
        _check_record((record.offset.partition.partition, record.offset.offset), record.message, seen)
    return len(batch)


@pytest.mark.slow
def test_appender_killed_at_random_points_loses_no_acknowledged_record(
    manager: LogManager, tmp_path: Path, children: Callable[..., Child]
) -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    manager.create_if_not_exists(LOG, 2)
    tailer = manager.create_tailer("live", LOG)  # reads while the child appends, across kills
    appender = manager.appender(LOG)
    acknowledged: dict[tuple[int, int], bytes] = {}
    seen: dict[tuple[int, int], bytes] = {}
    for run in range(20):
        child = children(str(tmp_path), "sequence", str(run))
        child.wait_for(lambda lines: "appending" in lines)
        kill_at = time.monotonic() + rng.uniform(0, 0.15)
        while time.monotonic() < kill_at:
            _read_into(tailer, seen, timeout=0.002)
        assert child.process.poll() is None, f"the child died by itself: {child.lines[-3:]}"
        child.kill()
        for line in child.lines:
            if line.startswith("appended "):
                seq, partition, offset = map(int, line.split()[1:])
                acknowledged[(partition, offset)] = sequence_record(run, seq)
        marker = f"parent:{run}".encode()
        after = appender.append(run % 2, marker)  # the log takes appends after the kill
        acknowledged[(after.partition.partition, after.offset)] = marker
        deadline = time.monotonic() + 10
        while (after.partition.partition, after.offset) not in seen and time.monotonic() < deadline:
            _read_into(tailer, seen, timeout=0.05)
        assert seen.get((after.partition.partition, after.offset)) == marker, f"seed {seed} run {run}"
    # The last marker went to one partition: the other may still hold records not read yet.
    while _read_into(tailer, seen, timeout=0.2):
        pass
    tailer.close()
    assert len(acknowledged) > 20, f"seed {seed}: the child never appended"
    for offset, message in acknowledged.items():
        assert seen.get(offset) == message, f"seed {seed}: acknowledged {offset} not read back intact"
    again: dict[tuple[int, int], bytes] = {}
    fresh = manager.create_tailer("again", LOG)
    while _read_into(fresh, again, timeout=0.2):
        pass
    fresh.close()
    assert again == seen, f"seed {seed}: a second reader from the start reads something else"


@pytest.mark.slow
def test_consumer_group_across_processes_survives_kill_9(
    manager: LogManager, tmp_path: Path, children: Callable[..., Child]
) -> None:
    manager.create_if_not_exists(LOG, 4)
    manager.appender(LOG).append_many([(p, f"{p}:{i}".encode()) for p in range(4) for i in range(300)])
    child = children(str(tmp_path), "consume", "group")
    child.wait_for(lambda lines: sum(1 for line in lines if line.startswith("offset")) >= 40)
    tailer = manager.subscribe("group", LOG)
    child.wait_for(lambda lines: "assigned 2" in lines)  # the child gives two partitions away
    read: dict[int, set[int]] = defaultdict(set)
    deadline = time.monotonic() + 10
    while len(tailer.assignments()) < 2 and time.monotonic() < deadline:
        try:  # as with Kafka, partitions are taken over during reads
            record = tailer.read(timeout=0.05)
        except RebalanceError:
            continue
        if record is not None:
            read[record.offset.partition.partition].add(record.offset.offset)
            tailer.commit(record.offset.partition)
    assert len(tailer.assignments()) == 2
    for _ in range(20):
        record = tailer.read(timeout=0.1)
        if record is not None:
            read[record.offset.partition.partition].add(record.offset.offset)
            tailer.commit(record.offset.partition)
    child.kill()
    deadline = time.monotonic() + 20
    idle_since = time.monotonic()
    while time.monotonic() < deadline:
        try:
            record = tailer.read(timeout=0.1)
        except RebalanceError:
            continue
        if record is None:
            if len(tailer.assignments()) == 4 and time.monotonic() - idle_since > 1.0:
                break
            continue
        idle_since = time.monotonic()
        read[record.offset.partition.partition].add(record.offset.offset)
        tailer.commit(record.offset.partition)
    assert len(tailer.assignments()) == 4, "the dead member's partitions were not taken over"
    child_read: dict[int, set[int]] = defaultdict(set)
    for line in child.lines:
        if line.startswith("offset "):
            partition, offset = line.split()[1].split(":")
            child_read[int(partition)].add(int(offset))
    for partition in range(4):
        # at-least-once: together they read everything (a record may be read twice, none lost)
        assert read[partition] | child_read[partition] == set(range(300)), partition
    lag = manager.lag(LOG, "group")
    assert lag.lag == 0
    assert [p for p in tailer.assignments() if isinstance(p, LogPartition)]
    tailer.close()


@pytest.mark.slow
def test_two_processes_of_two_consumers_kill_one(
    manager: LogManager, tmp_path: Path, children: Callable[..., Child]
) -> None:
    manager.create_if_not_exists(LOG, 4)
    manager.appender(LOG).append_many([(p, f"{p}:{i}".encode()) for p in range(4) for i in range(400)])
    victim = children(str(tmp_path), "consume", "group", "2")
    survivor = children(str(tmp_path), "consume", "group", "2")
    survivor.wait_for(lambda lines: sum(1 for line in lines if line.startswith("offset")) >= 100)
    victim.kill()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and manager.lag(LOG, "group").lag:
        time.sleep(0.1)
    seen: dict[int, set[int]] = defaultdict(set)
    for line in [*victim.lines, *survivor.lines]:
        if line.startswith("offset "):
            partition, offset = line.split()[1].split(":")
            seen[int(partition)].add(int(offset))
    assert manager.lag(LOG, "group").lag == 0, manager.lag_per_partition(LOG, "group")
    assert all(seen[p] == set(range(400)) for p in range(4))
