"""Conformance suite: the same behaviour from every WorkManager implementation."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import conveyor
from conveyor.errors import WorkError
from conveyor.work import QueueConfig, Scheduling, WorkManager, WorkQueueMetrics, WorkState
from tests.work.conftest import Factory
from tests.work.works import (
    MAX_ACTIVE,
    RUNS,
    AsyncNote,
    Coalesced,
    Copies,
    Flaky,
    Note,
    Slow,
    Steps,
)


def test_categories_go_to_their_queue_unknown_to_default(wm: WorkManager, unique: str) -> None:
    assert set(wm.queue_ids()) == {"notes", "slow", "steps", "default"}
    assert wm.category_queue("notes") == "notes"
    assert wm.category_queue("nobody-serves-this") == "default"
    assert wm.category_queue(None) == "default"
    wm.schedule(Note(token=unique, value=1))
    wm.schedule(Flaky(token=unique, failures=0))  # category "Flaky": default queue
    assert wm.await_completion(timeout=10)
    assert wm.metrics("notes").completed == 1
    assert wm.metrics("default").completed == 1


def test_thread_limit_is_never_exceeded(wm: WorkManager, unique: str) -> None:
    for _ in range(12):
        wm.schedule(Slow(token=unique, seconds=0.08))
    assert wm.await_completion("slow", timeout=20)
    assert len(RUNS[unique]) == 12
    assert MAX_ACTIVE[unique] == 3  # max_threads of "slow": reached, never exceeded
    assert wm.metrics("slow") == WorkQueueMetrics(0, 0, 12, 0)


def wait_until(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Whether ``check`` came true within ``timeout`` s (a Kafka group join alone can take seconds)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_metrics_show_waiting_and_running(make_wm: Factory, unique: str) -> None:
    wm = make_wm(processing={"slow": False}).start()
    for _ in range(5):  # long enough that none ends before the third starts, even on a busy machine
        wm.schedule(Slow(token=unique, seconds=1.5))
    assert wm.metrics("slow").as_tuple() == (5, 0, 0, 0)
    wm.enable_processing("slow", True)
    # The counts are read one after the other: a Work that starts meanwhile is seen both waiting
    # and running for a moment (never in neither, see await_completion), so wait for them to agree.
    assert wait_until(lambda: wm.metrics("slow").running >= 3)
    assert wait_until(lambda: wm.metrics("slow").as_tuple() == (2, 3, 0, 0), timeout=1.0), wm.metrics("slow")
    assert wm.await_completion("slow", timeout=10)
    assert wm.metrics("slow").as_tuple() == (0, 0, 5, 0)


def test_async_work(wm: WorkManager, unique: str) -> None:
    wm.schedule(AsyncNote(token=unique))
    assert wm.await_completion(timeout=10)
    assert RUNS[unique] == ["async"]


def test_after_commit_schedules_on_commit_only(make_wm: Factory, unique: str) -> None:
    wm = make_wm(processing={"notes": False}).start()
    with conveyor.transaction():
        wm.schedule(Note(token=unique, value=1))
        assert wm.metrics("notes").scheduled == 0  # not yet: the transaction is open
    assert wm.metrics("notes").scheduled == 1
    with pytest.raises(RuntimeError), conveyor.transaction():
        wm.schedule(Note(token=unique, value=2))
        raise RuntimeError("rollback")
    assert wm.metrics("notes").scheduled == 1
    with conveyor.transaction():
        wm.schedule(Note(token=unique, value=3), after_commit=False)  # opt-out: at once
        assert wm.metrics("notes").scheduled == 2
    wm.enable_processing("notes", True)
    assert wm.await_completion(timeout=10)
    assert sorted(v for v, _ in RUNS[unique]) == [1, 3]


def test_nested_transaction_failure_rolls_back_everything(wm: WorkManager, unique: str) -> None:
    with conveyor.transaction() as outer:
        wm.schedule(Note(token=unique, value=1))
        with pytest.raises(ValueError), conveyor.transaction():
            wm.schedule(Note(token=unique, value=2))
            raise ValueError("inner failure")
        assert outer.rollback_only
    assert outer.status == "rolledback"
    assert wm.await_completion(timeout=5)
    assert RUNS[unique] == []


def test_without_transaction_after_commit_schedules_at_once(make_wm: Factory, unique: str) -> None:
    wm = make_wm(processing={"*": False}).start()
    wm.schedule(Note(token=unique), after_commit=True)
    assert wm.metrics("notes").scheduled == 1


def test_sqlalchemy_session_commit_and_rollback(make_wm: Factory, unique: str, tmp_path: object) -> None:
    wm = make_wm(processing={"notes": False}).start()
    engine = sa.create_engine("sqlite://")
    meta = sa.MetaData()
    table = sa.Table("t", meta, sa.Column("id", sa.Integer, primary_key=True))
    meta.create_all(engine)
    with Session(engine) as session, conveyor.transaction(session):
        session.execute(table.insert().values(id=1))
        wm.schedule(Note(token=unique, value=1))
        assert wm.metrics("notes").scheduled == 0
        session.commit()
        assert wm.metrics("notes").scheduled == 1
    with Session(engine) as session, conveyor.transaction(session):
        session.execute(table.insert().values(id=2))
        wm.schedule(Note(token=unique, value=2))
        session.rollback()
    assert wm.metrics("notes").scheduled == 1
    with pytest.raises(sa.exc.IntegrityError), Session(engine) as session, conveyor.transaction(session):
        wm.schedule(Note(token=unique, value=3))
        session.execute(table.insert().values(id=1))  # duplicate key: the block fails
        session.commit()
    wm.enable_processing("notes", True)
    assert wm.await_completion(timeout=10)
    assert [v for v, _ in RUNS[unique]] == [1]
    engine.dispose()


def test_retries_then_dead_letter_then_rerun(wm: WorkManager, unique: str) -> None:
    wm.schedule(Flaky(token=unique, failures=100))
    assert wm.await_completion(timeout=10)
    assert RUNS[unique] == ["attempt"] * 3  # retry_count 2: three attempts
    letters = wm.dead_letters()
    assert len(letters) == 1
    assert "RuntimeError: flaky failure 3" in letters[0].error
    assert letters[0].type == "Flaky"
    assert wm.metrics("default").completed == 1  # a failure counts as completed, as in Nuxeo
    assert wm.rerun_failed(category="other") == 0
    RUNS[unique].clear()
    assert wm.rerun_failed() == 1
    assert wm.await_completion(timeout=10)
    assert RUNS[unique] == ["attempt"] * 3


def test_retry_succeeds_before_the_last_attempt(wm: WorkManager, unique: str) -> None:
    wm.schedule(Flaky(token=unique, failures=2))
    assert wm.await_completion(timeout=10)
    assert RUNS[unique] == ["attempt"] * 3
    assert wm.dead_letters() == []


def _stateless(impl: str) -> bool:
    """Whether ``impl`` keeps no state per Work (stream with ``store_state=False``)."""
    return impl.endswith("-stateless")


def test_idempotent_work_waiting_is_not_scheduled_twice(make_wm: Factory, unique: str, impl: str) -> None:
    wm = make_wm(processing={"notes": False}).start()
    if _stateless(impl):
        # Without a state nothing says a copy waits: each copy runs, the last one last.
        for v in range(1, 4):
            assert wm.schedule(Note(id="same", token=unique, value=v))
        assert wm.metrics("notes").scheduled == 3
        assert wm.get_work_state("same") is WorkState.UNKNOWN
        assert wm.find("same") is None
        wm.enable_processing("notes", True)
        assert wm.await_completion(timeout=10)
        assert sorted(v for v, _ in RUNS[unique]) == [1, 2, 3]
        return
    assert wm.schedule(Note(id="same", token=unique, value=1))
    for v in range(2, 6):
        assert not wm.schedule(Note(id="same", token=unique, value=v))
    assert wm.metrics("notes").scheduled == 1
    assert wm.get_work_state("same") is WorkState.SCHEDULED
    found = wm.find("same")
    assert isinstance(found, Note) and found.value == 1
    wm.enable_processing("notes", True)
    assert wm.await_completion(timeout=10)
    assert [v for v, _ in RUNS[unique]] == [1]
    assert wm.get_work_state("same") is WorkState.UNKNOWN


def test_non_idempotent_copies_all_run(make_wm: Factory, unique: str) -> None:
    wm = make_wm(processing={"default": False}).start()
    for _ in range(3):
        assert wm.schedule(Copies(id="dup", token=unique))
    assert wm.metrics("default").scheduled == 3
    wm.enable_processing("default", True)
    assert wm.await_completion(timeout=10)
    assert RUNS[unique] == ["dup"] * 3


def test_coalescing_only_the_last_runs(make_wm: Factory, unique: str, impl: str) -> None:
    wm = make_wm(processing={"default": False}).start()
    for v in range(5):
        wm.schedule(Coalesced(id="c", token=unique, value=v))
    # Without a state the replaced copies wait in the log until read, then count as canceled.
    expected = (5, 0, 0, 0) if _stateless(impl) else (1, 0, 0, 4)
    assert wm.metrics("default").as_tuple() == expected
    wm.enable_processing("default", True)
    assert wm.await_completion(timeout=10)
    assert RUNS[unique] == [4]
    assert wm.metrics("default").as_tuple() == (0, 0, 1, 4)


def test_scheduling_modes(make_wm: Factory, unique: str, impl: str) -> None:
    wm = make_wm(processing={"slow": False}).start()
    if _stateless(impl):
        for mode in (
            Scheduling.IF_NOT_SCHEDULED,
            Scheduling.IF_NOT_RUNNING_OR_SCHEDULED,
            Scheduling.CANCEL_SCHEDULED,
        ):
            with pytest.raises(WorkError, match=f"{mode.name} needs the state.*store_state=false"):
                wm.schedule(Slow(id="a", token=unique), after_commit=False, scheduling=mode)
        assert wm.metrics("slow").scheduled == 0  # nothing written by a refused schedule
        return
    assert wm.schedule(Slow(id="a", token=unique), scheduling=Scheduling.IF_NOT_SCHEDULED)
    assert not wm.schedule(Slow(id="a", token=unique), scheduling=Scheduling.IF_NOT_SCHEDULED)
    assert not wm.schedule(Slow(id="a", token=unique), scheduling=Scheduling.IF_NOT_RUNNING_OR_SCHEDULED)
    assert wm.schedule(Slow(id="b", token=unique))
    assert wm.schedule(Slow(id="a", token=unique), scheduling=Scheduling.CANCEL_SCHEDULED)
    assert not wm.schedule(Slow(id="zz", token=unique), scheduling=Scheduling.CANCEL_SCHEDULED)
    assert wm.metrics("slow").as_tuple() == (1, 0, 0, 1)
    wm.enable_processing("slow", True)
    assert wm.await_completion(timeout=10)
    assert RUNS[unique] == ["b"]
    assert wm.metrics("slow").as_tuple() == (0, 0, 1, 1)


def test_cancel_running_work(wm: WorkManager, unique: str, tmp_path: object, impl: str) -> None:
    if _stateless(impl):
        pytest.skip("cancel needs the state of each Work (refused without it: test_scheduling_modes)")
    path = f"{tmp_path}/steps.log"
    wm.schedule(Steps(id="long", path=path, total=200, step_s=0.02))
    # Cancel once the Work has done a step: it is running, and its file exists to be read.
    assert wait_until(lambda: os.path.exists(path))
    assert wm.get_work_state("long") is WorkState.RUNNING
    assert wm.schedule(Steps(id="long", path=path), scheduling=Scheduling.CANCEL_SCHEDULED)
    assert wm.await_completion(timeout=10)
    assert wm.metrics("steps").as_tuple() == (0, 0, 0, 1)
    with open(path) as f:
        assert len(f.readlines()) < 200


def test_processing_switches_dedicate_a_node(make_wm: Factory, unique: str) -> None:
    wm = make_wm(processing={"*": False, "notes": True}).start()
    assert wm.is_processing_enabled("notes")
    assert not wm.is_processing_enabled("slow")
    assert not wm.is_processing_enabled("default")
    wm.schedule(Note(token=unique, value=1))
    wm.schedule(Slow(token=unique, seconds=0.0))
    assert wm.await_completion("notes", timeout=10)
    assert not wm.await_completion("slow", timeout=0.3)
    assert wm.metrics("slow").scheduled == 1


def test_capacity_rejects_when_full(make_wm: Factory, unique: str) -> None:
    from conveyor.errors import WorkQueueFullError

    queues = (QueueConfig("notes", max_threads=1, categories=("notes",), capacity=2),)
    wm = make_wm(queues, processing={"*": False}).start()
    wm.schedule(Note(token=unique, value=1))
    wm.schedule(Note(token=unique, value=2))
    with pytest.raises(WorkQueueFullError, match="'notes' is full"):
        wm.schedule(Note(token=unique, value=3))
    assert wm.metrics("notes").scheduled == 2


def test_bad_payload_goes_to_dead_letters_and_queue_keeps_running(wm: WorkManager, unique: str) -> None:
    good = Note(token=unique, value=7)
    inject = getattr(wm, "_schedule_now")  # noqa: B009 (test hook: store raw bytes as a Work)
    inject("notes", Note(id="garbage", token=unique), b"\x00not a work", Scheduling.ENQUEUE)
    inject(
        "notes",
        Note(id="unknown", token=unique),
        b'{"type":"NoSuchWork","id":"unknown","state":{"id":"unknown"}}',
        Scheduling.ENQUEUE,
    )
    inject(
        "notes",
        Note(id="badfield", token=unique),
        b'{"type":"Note","id":"badfield","state":{"id":"badfield","token":5}}',
        Scheduling.ENQUEUE,
    )
    wm.schedule(good)
    assert wm.await_completion(timeout=10)
    assert [v for v, _ in RUNS[unique]] == [7]
    errors = sorted(letter.error for letter in wm.dead_letters())
    assert len(errors) == 3
    assert any("unknown Work type 'NoSuchWork'" in e for e in errors)
    assert any("not a Work" in e for e in errors)
    assert any("bad fields for Work type 'Note'" in e and "token" in e for e in errors)
    assert wm.rerun_failed() == 0  # still not Works: kept for a fix, not dropped
    assert len(wm.dead_letters()) == 3


def test_suspend_on_shutdown_keeps_progress(make_wm: Factory, impl: str, tmp_path: object) -> None:
    path = f"{tmp_path}/steps.log"
    wm = make_wm().start()
    wm.schedule(Steps(id="s1", path=path, total=100, step_s=0.02))
    assert wait_until(lambda: wm.metrics("steps").running > 0)
    time.sleep(0.2)
    assert wm.shutdown(5)
    if impl == "threads":
        return  # in memory: nothing to resume from after the process ends
    wm2 = make_wm()
    if not _stateless(impl):  # without a state the saved Work is only in the log
        saved = wm2.find("s1")
        assert isinstance(saved, Steps)
        assert 0 < saved.done < 100
    assert wm2.metrics("steps").scheduled == 1
    wm2.start()
    assert wm2.await_completion(timeout=20)
    with open(path) as f:
        steps = [int(line.split()[1]) for line in f]
    assert steps == list(range(1, 101))  # resumed where it stopped: no step redone or skipped


def test_shutdown_returns_false_when_a_work_does_not_stop(make_wm: Factory, unique: str) -> None:
    wm = make_wm().start()
    wm.schedule(Slow(token=unique, seconds=1.0))
    assert wait_until(lambda: wm.metrics("slow").running > 0)
    assert not wm.shutdown(0.1)
    with pytest.raises(conveyor.ConveyorError, match="shut down"):
        wm.schedule(Note(token=unique))


def test_no_two_runs_of_one_id_at_once(make_wm: Factory, unique: str, impl: str) -> None:
    if _stateless(impl):
        pytest.skip("without a state nothing holds a second copy back while the first runs")
    wm = make_wm(processing={"slow": False}).start()
    wm.schedule(Slow(id="one", token=unique, seconds=0.2))
    wm.enable_processing("slow", True)
    assert wait_until(lambda: wm.get_work_state("one") is WorkState.RUNNING)
    assert wm.schedule(Slow(id="one", token=unique, seconds=0.2))  # running: may be queued again
    assert wm.await_completion(timeout=10)
    assert RUNS[unique] == ["one", "one"]
    assert MAX_ACTIVE[unique] == 1


def test_many_works_from_many_threads(wm: WorkManager, unique: str) -> None:
    def producer(base: int) -> None:
        for i in range(100):
            wm.schedule(Note(token=unique, value=base + i))

    threads = [threading.Thread(target=producer, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wm.await_completion(timeout=30)
    values = sorted(v for v, _ in RUNS[unique])
    assert values == sorted(k * 1000 + i for k in range(4) for i in range(100))


def test_shutdown_queue_stops_one_queue_only(wm: WorkManager, unique: str) -> None:
    assert wm.shutdown_queue("slow", timeout=5)
    assert not wm.is_processing_enabled("slow")
    wm.schedule(Slow(token=unique, seconds=0.0))
    wm.schedule(Note(token=unique, value=1))
    assert wm.await_completion("notes", timeout=10)
    assert not wm.await_completion("slow", timeout=0.3)
    assert wm.metrics("slow").scheduled == 1
