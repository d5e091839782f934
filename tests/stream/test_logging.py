"""Log lines emitted while a record is processed carry the computation and the record key."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor.log import open_log_manager
from conveyor.logcontext import current_log_context
from conveyor.record import Record
from conveyor.stream import Computation, ComputationContext, StreamProcessor, Topology
from tests.stream.conftest import feed

logger = logging.getLogger("conveyor.test.stream")


class Talker(Computation):
    """Logs one line per record, and one per timer."""

    def __init__(self) -> None:
        super().__init__("test/talker", inputs=1)

    def init(self, context: ComputationContext) -> None:
        context.set_timer("t", 0)

    def process_record(self, context: ComputationContext, input_stream: str, record: Record) -> None:
        logger.info("processing %s", record.key)
        context.ask_for_checkpoint()

    def process_timer(self, context: ComputationContext, key: str, timestamp: int) -> None:
        logger.info("timer")


class Collect(logging.Handler):
    """Keeps each line with the log context it was emitted in."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.getMessage(), dict(current_log_context())))


@pytest.fixture
def lines() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    handler = Collect()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


def test_process_record_logs_carry_computation_and_key(
    lines: list[tuple[str, dict[str, Any]]], unique: str
) -> None:
    with open_log_manager(f"memory://{unique}", default_codec="json") as manager:
        feed(manager, "test/in", [Record("doc-1", b""), Record("doc-2", b"")])
        topology = Topology.builder().add_computation(Talker, ["i1:test/in"]).build()
        processor = StreamProcessor(manager, topology).start()
        assert processor.drain_and_stop(20)
    records = [(message, context) for message, context in lines if message.startswith("processing")]
    assert [(m, c["computation"], c["record_key"]) for m, c in records] == [
        ("processing doc-1", "test/talker", "doc-1"),
        ("processing doc-2", "test/talker", "doc-2"),
    ]
    # Outside a record (a timer) the computation is in context, no record key.
    timers = [context for message, context in lines if message == "timer"]
    assert timers and timers[0]["computation"] == "test/talker" and "record_key" not in timers[0]
