"""Log backends the stream tests run on, and helpers to feed and read streams."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.log import LogManager, Name, open_log_manager
from conveyor.record import Record

BACKENDS = ["memory", "local", pytest.param("kafka", marks=pytest.mark.kafka)]
CODEC = "json"

OpenManager = Callable[[], LogManager]


@pytest.fixture(params=BACKENDS)
def log_url(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> str:
    """A URL of fresh storage on the backend under test."""
    backend = str(request.param)
    if backend == "memory":
        return f"memory://{unique}"
    if backend == "local":
        return f"local://{tmp_path}/log"
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    return f"kafka://{bootstrap}?prefix={unique}-"


@pytest.fixture
def open_manager(log_url: str) -> Iterator[OpenManager]:
    """Open another manager on the same storage (a restart, another node); all closed after the test."""
    managers: list[LogManager] = []

    def factory() -> LogManager:
        manager = open_log_manager(log_url, default_codec=CODEC)
        managers.append(manager)
        return manager

    yield factory
    for manager in reversed(managers):
        manager.close()


@pytest.fixture
def manager(open_manager: OpenManager) -> LogManager:
    """A log manager on fresh storage whose default codec is a Record codec."""
    return open_manager()


def feed(manager: LogManager, stream: str, records: list[Record], partitions: int = 1) -> None:
    """Create ``stream`` if needed and append ``records`` keyed by their keys, one by one."""
    manager.create_if_not_exists(stream, partitions)
    appender = manager.appender(stream)
    # One by one, not append_many: after a multi-record batch, tansu reports the end offset one
    # batch short (docs/kafka.md), and tests assert exact lags of their input.
    for record in records:
        appender.append(record.key, record)


def read_all(manager: LogManager, stream: str, timeout: float = 0.2) -> list[Record]:
    """Every record of ``stream`` from the start (with a throw-away group)."""
    group = Name.of("test", "reader" + str(time.monotonic_ns()))
    # Never stop short of what the log says it holds (tansu may say less, never more); past
    # that, the end is when nothing more comes within ``timeout``.
    at_least = manager.lag(stream, group).lag
    deadline = time.monotonic() + 20
    out: list[Record] = []
    with manager.create_tailer(group, stream) as tailer:
        tailer.to_start()
        while True:
            batch = tailer.read_batch(1000, timeout)
            if not batch and (len(out) >= at_least or time.monotonic() > deadline):
                return out
            out.extend(item.message for item in batch)


def wait_until(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``check`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")
