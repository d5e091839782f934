"""A process none of whose subscribed threads of a computation holds a partition for
``no_assignment_warning_s`` says so, once (issue 14); idle threads next to a busy one are normal."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from conveyor.errors import ConfigurationError
from conveyor.log import LogManager, open_log_manager
from conveyor.stream import Settings, StreamProcessor, Topology
from tests.stream.computations import Upper
from tests.stream.conftest import OpenManager, wait_until


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "reads nothing here" in r.getMessage()
    ]


# Not on Kafka: a group join takes seconds there, longer than the 0.3 s delay of the test, so
# every process rightly warns while the group rebalances.
@pytest.mark.parametrize("log_url", ["memory", "local"], indirect=True)
def test_a_process_left_without_any_partition_warns_once_naming_group_and_stream(
    open_manager: OpenManager, caplog: pytest.LogCaptureFixture
) -> None:
    topology = Topology.builder().add_computation(Upper, ["i1:demo/lonely", "o1:demo/loud"]).build()
    # two "nodes" of two threads each share one partition: one node reads nothing at all
    settings = Settings(concurrency=2, partitions=1, subscribe=True, no_assignment_warning_s=0.3)
    caplog.set_level(logging.INFO, logger="conveyor.stream")
    first = StreamProcessor(open_manager(), topology, settings, name="first").start()
    assert first.wait_for_assignments(30)
    second = StreamProcessor(open_manager(), topology, settings, name="second").start()
    processors = [first, second]
    try:
        assert second.wait_for_assignments(30)
        wait_until(lambda: _warnings(caplog), 30, "a no-assignment warning")
        holder, left_out = (first, second) if first.status()["demo/upper"].partitions else (second, first)
        assert left_out.status()["demo/upper"].partitions == 0
        message = _warnings(caplog)[0]
        assert "consumer group demo/upper" in message and "a partition of demo/lonely" in message
        assert "(1 partition(s))" in message and "none of the 2 thread(s)" in message
        assert "more consumers than partitions, or the group does not settle" in message
        time.sleep(1.0)
        assert len(_warnings(caplog)) == 1  # once for the process, not per thread nor per look

        # the holder leaves: the other process gets the partition and says so
        assert holder.stop(20)
        processors.remove(holder)
        wait_until(
            lambda: [r for r in caplog.records if "now reads partitions of demo/lonely" in r.getMessage()],
            60,
            "the left-out process to report its partition",
        )
    finally:
        for processor in processors:
            assert processor.stop(20)


def test_no_warning_when_one_thread_of_two_has_no_partition(
    manager: LogManager, caplog: pytest.LogCaptureFixture
) -> None:
    topology = Topology.builder().add_computation(Upper, ["i1:demo/half", "o1:demo/loud"]).build()
    # two threads of one process on a one-partition stream: one of them is idle, which is normal
    settings = Settings(concurrency=2, partitions=1, subscribe=True, no_assignment_warning_s=0.3)
    processor = StreamProcessor(manager, topology, settings, name="half")
    caplog.set_level(logging.INFO, logger="conveyor.stream")
    processor.start()
    try:
        assert processor.wait_for_assignments(30)
        assert processor.status()["demo/upper"].partitions == 1
        caplog.clear()  # (a slow group join may have been reported: only what follows counts)
        time.sleep(1.5)  # five times the delay: the idle thread would have warned under the old rule
        assert not _warnings(caplog)
        assert not [r for r in caplog.records if "no partition" in r.getMessage()]
    finally:
        assert processor.stop(20)


def test_no_warning_while_every_thread_holds_a_partition(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manager = open_log_manager(f"local://{tmp_path}/log", default_codec="json")
    topology = Topology.builder().add_computation(Upper, ["i1:demo/busy", "o1:demo/loud"]).build()
    settings = Settings(concurrency=2, partitions=2, subscribe=True, no_assignment_warning_s=0.3)
    processor = StreamProcessor(manager, topology, settings, name="busy")
    caplog.set_level(logging.INFO, logger="conveyor.stream")
    processor.start()
    try:
        assert processor.wait_for_assignments(30)
        caplog.clear()  # (a slow group join may have been reported: only what follows counts)
        time.sleep(1.0)  # three times the delay: a process without partition would have warned
        assert not _warnings(caplog)
    finally:
        assert processor.stop(20)
        manager.close()


def test_the_delay_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="no_assignment_warning_s"):
        Settings(no_assignment_warning_s=0)
