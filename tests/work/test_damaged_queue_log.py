"""A damaged ``work/<queue>`` partition is logged once, not at every poll (stream WorkManager).

Damage in a local log fails every read of that partition: the reader logged an ERROR with its
traceback every poll interval (5 a second by default, for as long as the damage stays).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from conveyor.kv import open_kv_store
from conveyor.log import open_log_manager
from conveyor.work import QueueConfig, open_work_manager
from tests.work.works import RUNS, Note


def test_a_damaged_queue_log_is_logged_once_and_repair_lets_it_go_on(
    tmp_path: Path, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    queues = (QueueConfig("notes", max_threads=1, categories=("notes",), partitions=1),)
    options: dict[str, object] = {"queues": queues, "poll_interval": 0.02, "retry_delay": 0.0}
    log = open_log_manager(f"local://{tmp_path}/log")
    kv = open_kv_store(f"sqlite:///{tmp_path}/kv.db", "work")
    wm = open_work_manager("stream", log_manager=log, kv=kv, processing={"*": False}, **options)
    for value in range(3):
        wm.schedule(Note(token=unique, value=value), after_commit=False)
    wm.shutdown(5)
    log.close()
    (segment,) = (tmp_path / "log" / "work-notes" / "P-00").glob("*.seg")
    data = bytearray(segment.read_bytes())
    data[24 + 40] ^= 0x01  # inside the first entry, followed by the two others: damage
    segment.write_bytes(bytes(data))

    log = open_log_manager(f"local://{tmp_path}/log")
    wm = open_work_manager("stream", log_manager=log, kv=kv, **options)
    try:
        with caplog.at_level(logging.ERROR, logger="conveyor.work"):
            wm.start()
            deadline = time.monotonic() + 20
            while not any("reading work/notes failed" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline, "the damage was never reported"
                time.sleep(0.05)
            time.sleep(1.0)  # 50 poll intervals
        failures = [r for r in caplog.records if "reading work/notes" in r.getMessage()]
        assert len(failures) == 1, [r.getMessage() for r in failures]
        assert failures[0].exc_info is not None and "LogCorruptedError" in repr(failures[0].exc_info[1])

        # the damage quarantined, the reader goes on by itself past the lost record
        log.repair("work/notes")  # type: ignore[attr-defined]
        deadline = time.monotonic() + 20
        while sorted(v for v, _ in RUNS[unique]) != [1, 2]:
            assert time.monotonic() < deadline, RUNS[unique]
            time.sleep(0.05)
    finally:
        wm.shutdown(5)
        log.close()
        kv.close()
