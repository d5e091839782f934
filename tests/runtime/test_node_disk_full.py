"""A node whose data directory (local log, SQLite KV store) fills up while it processes Works."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.errors import StorageError, StorageFullError
from conveyor.work import Work

RAN: dict[str, set[str]] = {}
_lock = threading.Lock()


class DiskHog(Work):
    """A big Work: its state, kept in the queue's log and in the KV store, fills the disk."""

    category = "hogs"
    token: str
    payload: str = ""

    def work(self) -> None:
        with _lock:
            RAN.setdefault(self.token, set()).add(self.id)


def settings(data_dir: Path) -> dict[str, Any]:
    return {
        "node": {"id": "full-node", "data_dir": str(data_dir)},
        "work": {
            "queues": [{"id": "hogs", "max_threads": 2, "categories": ["hogs"]}],
            "processing": {"*": False, "hogs": True},
        },
    }


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


@pytest.mark.slow
def test_node_stop_returns_false_and_never_raises_when_its_disk_is_full(
    small_tmpfs: Callable[[int], Path], unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    disk = small_tmpfs(8192)
    filler = disk / "filler"
    filler.write_bytes(b"\0" * 4096 * 1024)  # freed at the end to give space back
    node = Conveyor.from_config(settings(disk))
    node.start()
    acknowledged: list[str] = []
    refused: StorageError | None = None
    for _ in range(1000):
        work = DiskHog(token=unique, payload=os.urandom(20_000).hex())
        try:
            node.work_manager.schedule(work)
        except StorageError as exc:  # the disk is full (the log's or the KV store's error)
            refused = exc
            break
        acknowledged.append(work.id)
    assert isinstance(refused, StorageFullError) and refused.retriable and acknowledged
    assert refused.path is not None and refused.path.startswith(str(disk))
    # Processing goes on while the disk is full: some Works run, their state writes fail.
    wait_for(lambda: len(RAN.get(unique, ())) >= 1, 10)

    with caplog.at_level(logging.ERROR, logger="conveyor"):
        clean = node.stop(20)  # must not raise
    assert isinstance(clean, bool)
    if not clean:  # it says why, with the cause
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert any("is full" in r.getMessage() or "No space left" in r.getMessage() for r in errors)
    assert node.stop(1) is True  # a second stop has nothing left to do

    # Space is back: a node on the same data directory runs every acknowledged Work.
    filler.unlink()
    again = Conveyor.from_config(settings(disk))
    again.start()
    try:

        def accounted() -> bool:
            dead = {letter.id for letter in again.work_manager.dead_letters()}
            return set(acknowledged) <= RAN.get(unique, set()) | dead

        assert wait_for(accounted, 60), (
            f"{len(set(acknowledged) - RAN.get(unique, set()))} of {len(acknowledged)} Works never ran"
        )
    finally:
        assert again.stop(20) is True
