"""Two processes run the same topology on the same log; one is killed with SIGKILL mid-stream and
the other takes over its partitions, resumes at the committed offsets and finishes."""

from __future__ import annotations

import signal
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor.log import LogManager, Name, open_log_manager
from conveyor.record import Record
from tests.child_process import LineCollector
from tests.stream.processor_child import (
    CHECKPOINT_EVERY,
    CODEC,
    DOUBLE,
    IN,
    INC,
    MID,
    OUT,
    PARTITIONS,
)

CHILD = str(Path(__file__).with_name("processor_child.py"))
N = 3000
KILL_AFTER = 300
"""Records the victim's last step must have processed before it is killed."""
TIMEOUT_S = 120.0


class Child(LineCollector):
    """A processor process whose output lines are collected by a thread."""

    def __init__(self, url: str) -> None:
        super().__init__(CHILD, url)

    def processed(self, computation: str) -> int:
        """The last count of records of ``computation`` the child reported."""
        counts = [int(line.split()[2]) for line in self.lines if line.startswith(f"processed {computation} ")]
        return max(counts, default=0)

    def wait_for(self, check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"child exited with {self.process.returncode}: {self.stderr()}")
            time.sleep(0.01)
        raise AssertionError(f"child: no {what} within {timeout}s; last lines {self.lines[-3:]}")

    def stderr(self) -> str:
        return self.process.stderr.read() if self.process.stderr else ""

    def end(self, sig: signal.Signals) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(30)
        self._reader.join(5)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(params=["local", pytest.param("kafka", marks=[pytest.mark.kafka, pytest.mark.slow])])
def url(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> str:
    """Fresh storage on the backend under test, shared by every process."""
    if request.param == "local":
        return f"local://{tmp_path}/log"
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    # A dead member's partitions move after the session timeout: keep it short.
    return f"kafka://{bootstrap}?prefix={unique}-&session.timeout.ms=6000"


@pytest.fixture
def children() -> Iterator[Callable[[str], Child]]:
    """Start processor processes; any still running after the test is killed."""
    started: list[Child] = []

    def start(url: str) -> Child:
        child = Child(url)
        started.append(child)
        return child

    yield start
    for child in started:
        child.close()


class OutputReader:
    """Reads ``proc/out`` from the start, incrementally; keeps every value seen per key."""

    def __init__(self, manager: LogManager) -> None:
        self.tailer = manager.create_tailer(Name.of("test", "out"), OUT)
        self.tailer.to_start()
        self.values: defaultdict[str, list[bytes]] = defaultdict(list)
        self.total = 0

    def poll(self) -> None:
        while batch := self.tailer.read_batch(1000, 0.05):
            for item in batch:
                record: Record = item.message
                self.values[record.key].append(record.data)
                self.total += 1


def committed(manager: LogManager) -> bool:
    """True when both computations have committed all their input."""
    return manager.lag(IN, Name.of_urn(DOUBLE)).lag == 0 and manager.lag(MID, Name.of_urn(INC)).lag == 0


def test_kill_9_survivor_takes_over_and_finishes(url: str, children: Callable[[str], Child]) -> None:
    with open_log_manager(url, default_codec=CODEC) as manager:
        for stream in (IN, MID, OUT):
            manager.create_if_not_exists(stream, PARTITIONS)
        victim, survivor = children(url), children(url)
        for child in (victim, survivor):
            child.wait_for(lambda c=child: "ready" in c.lines, "ready")  # type: ignore[misc]
        keys = [f"k{i}" for i in range(N)]
        manager.appender(IN).append_many([(key, Record(key, str(i).encode())) for i, key in enumerate(keys)])

        victim.wait_for(lambda: victim.processed(INC) >= KILL_AFTER, f"{KILL_AFTER} records processed")
        assert victim.end(signal.SIGKILL) == -signal.SIGKILL
        left = manager.lag(IN, Name.of_urn(DOUBLE)).lag
        assert left > 0, "the kill landed after the end of the stream"
        output = OutputReader(manager)

        def finished() -> bool:
            output.poll()
            return len(output.values) == N and committed(manager)

        survivor.wait_for(finished, "end of the stream", TIMEOUT_S)
        assert survivor.end(signal.SIGTERM) == 0, survivor.stderr()
        output.poll()
        output.tailer.close()

    # At least once: every input is in the output.
    assert sorted(output.values) == sorted(keys)
    # Exactly once by key: duplicates (re-deliveries) carry the same value, the right one.
    assert {key: set(values) for key, values in output.values.items()} == {
        key: {str(2 * i + 1).encode()} for i, key in enumerate(keys)
    }
    # The survivor resumed at the committed offsets, not from the start: only what the victim
    # had not committed yet (at most one checkpoint per step) was processed twice.
    duplicates = output.total - N
    assert 0 <= duplicates <= 4 * CHECKPOINT_EVERY, f"{duplicates} duplicates"
    # The survivor did take over: it processed more than its half of the input.
    assert survivor.processed(DOUBLE) > N // 2 - 50
