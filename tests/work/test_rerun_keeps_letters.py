"""A dead letter whose Work cannot be scheduled again is kept, and the letters after it are re-run.

``rerun_failed`` takes the letters out of the dead letters before scheduling their Works; a
schedule that raised (here a full queue, elsewhere a store refusing the Work or down) used to
drop that letter and every letter after it: acknowledged Works lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.codec import BytesCodec
from conveyor.kv import open_kv_store
from conveyor.log import open_log_manager
from conveyor.work import DeadLetter, QueueConfig, WorkManager, open_work_manager
from conveyor.work.dlq import DLQ_STREAM
from tests.work.works import Note

QUEUES = (QueueConfig("notes", max_threads=1, categories=("notes",), capacity=1),)


@pytest.fixture(params=["threads", "stream", "redis"])
def wm(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> Iterator[WorkManager]:
    """A started WorkManager whose queue ``notes`` holds one Work at most and runs none here."""
    options: dict[str, object] = {"queues": QUEUES, "processing": {"*": False}}
    log = kv = None
    if request.param == "redis":
        url = f"{request.getfixturevalue('redis_url')}?prefix=test:{unique}:"
        manager = open_work_manager(url, **options)
    else:
        log = open_log_manager(f"local://{tmp_path}/log")
        options["log_manager"] = log
        if request.param == "stream":
            kv = open_kv_store(f"sqlite:///{tmp_path}/kv.db", "work")
            options["kv"] = kv
        manager = open_work_manager("threads://" if request.param == "threads" else "stream", **options)
    manager.start()
    try:
        yield manager
    finally:
        manager.shutdown(5)
        if hasattr(manager, "purge"):
            manager.purge()
        for closable in (log, kv):
            if closable is not None:
                closable.close()


def _write_letter(wm: WorkManager, work: Note) -> None:
    data = wm.codec.encode_dead_letter(
        DeadLetter("notes", work.id, "Note", "failed", wm.codec.encode(work), category="notes")
    )
    log = getattr(wm, "_log_manager", None)
    if log is None:  # Redis: the dead letters are a list
        wm._r.rpush(wm.keys.dlq, data)  # type: ignore[attr-defined]
    else:
        log = wm._dlq_manager()  # type: ignore[attr-defined]
        log.appender(DLQ_STREAM, codec=BytesCodec()).append("notes:" + work.id, data)


def test_a_letter_that_cannot_be_scheduled_is_kept_and_the_others_rerun(wm: WorkManager, unique: str) -> None:
    for value in (1, 2, 3):
        _write_letter(wm, Note(id=f"{unique}-{value}", token=unique, value=value))
    assert len(wm.dead_letters()) == 3

    # The queue takes one Work: the first letter is scheduled, the other two find it full.
    assert wm.rerun_failed() == 1
    assert wm.metrics("notes").scheduled == 1
    assert sorted(x.id for x in wm.dead_letters()) == [f"{unique}-2", f"{unique}-3"]
