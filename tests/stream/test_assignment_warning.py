"""A subscribed thread that holds no partition for ``no_assignment_warning_s`` says so (issue 14)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from conveyor.errors import ConfigurationError
from conveyor.log import LogManager, open_log_manager
from conveyor.stream import Settings, StreamProcessor, Topology
from tests.stream.computations import Upper
from tests.stream.conftest import wait_until


def test_a_consumer_without_partition_logs_a_warning_naming_group_and_stream(
    manager: LogManager, caplog: pytest.LogCaptureFixture
) -> None:
    topology = Topology.builder().add_computation(Upper, ["i1:demo/lonely", "o1:demo/loud"]).build()
    # two threads of one group on a one-partition stream: one of them reads nothing
    settings = Settings(concurrency=2, partitions=1, subscribe=True, no_assignment_warning_s=0.3)
    processor = StreamProcessor(manager, topology, settings, name="lonely")
    caplog.set_level(logging.INFO, logger="conveyor.stream")
    processor.start()
    try:

        def warned() -> list[str]:
            return [
                r.getMessage()
                for r in caplog.records
                if r.levelno == logging.WARNING and "no partition" in r.getMessage()
            ]

        wait_until(warned, 30, "a no-assignment warning")
        message = warned()[0]
        assert "of consumer group demo/upper" in message and "no partition of demo/lonely" in message
        time.sleep(1.0)
        assert len(warned()) <= 2  # once per thread, not at every read
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
        time.sleep(1.0)  # three times the delay: a thread without partition would have warned
        assert not [r.getMessage() for r in caplog.records if "no partition" in r.getMessage()]
    finally:
        assert processor.stop(20)
        manager.close()


def test_the_delay_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="no_assignment_warning_s"):
        Settings(no_assignment_warning_s=0)
