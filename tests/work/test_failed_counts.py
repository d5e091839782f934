"""Failed and dead-lettered Works counted apart from the completed ones, with their traceback kept
(issue 15 item 2), on every WorkManager implementation."""

from __future__ import annotations

from conveyor.work import Scheduling, WorkManager
from tests.work.test_conformance import wait_until
from tests.work.works import RUNS, Flaky, Note


def test_failed_and_dead_lettered_counts_and_the_traceback(wm: WorkManager, unique: str) -> None:
    wm.schedule(Flaky(token=unique + "-ok", failures=0))  # default queue: succeeds
    wm.schedule(Flaky(token=unique, failures=100))  # default queue: fails its 3 attempts
    inject = getattr(wm, "_schedule_now")  # noqa: B009 (test hook: store raw bytes as a Work)
    inject("default", Note(id="garbage", token=unique), b"\x00not a work", Scheduling.ENQUEUE)
    assert wm.await_completion(timeout=20)
    assert RUNS[unique] == ["attempt"] * 3
    assert wait_until(lambda: wm.metrics("default").completed == 3)
    m = wm.metrics("default")
    # completed keeps its meaning (every Work that ended, as in Nuxeo); the others say how
    assert (m.completed, m.failed, m.dead_lettered, m.succeeded) == (3, 1, 2, 1)
    assert (wm.metrics("notes").failed, wm.metrics("notes").dead_lettered) == (0, 0)
    by_id = {letter.id: letter for letter in wm.dead_letters()}
    failed = next(letter for letter in by_id.values() if letter.type == "Flaky")
    assert failed.traceback.startswith("Traceback (most recent call last):")
    assert 'raise RuntimeError(f"flaky failure' in failed.traceback  # the Work's own line
    assert failed.traceback.rstrip().endswith("RuntimeError: flaky failure 3")
