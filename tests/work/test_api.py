"""Works as data, the type registry, transactions and bad input (no server needed)."""

from __future__ import annotations

import dataclasses

import pytest

import conveyor
from conveyor.errors import ConfigurationError, UnknownWorkTypeError, WorkError
from conveyor.transaction import TransactionError, current_transaction, register_synchronization
from conveyor.work import QueueConfig, Work, WorkPayloadError, open_work_manager, work_type
from conveyor.work.codec import WorkCodec
from tests.work.works import Note, Steps


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Rich(Work):
    type_name = "tests.Rich"
    category = "rich"
    name: str
    tags: list[str] = dataclasses.field(default_factory=list)
    where: Point | None = None
    ratio: float = 0.5

    def work(self) -> None:
        pass


@pytest.mark.parametrize("codec", ["json", "msgpack"])
def test_round_trip_keeps_fields_id_and_document(codec: str) -> None:
    c = WorkCodec(codec)
    w = Rich(name="n", tags=["a", "b"], where=Point(1, 2), id="fixed")
    w.set_document("default", "doc-1", is_tree=True)
    back = c.decode(c.encode(w))
    assert isinstance(back, Rich)
    assert (back.id, back.name, back.tags, back.where, back.ratio) == (
        "fixed",
        "n",
        ["a", "b"],
        Point(1, 2),
        0.5,
    )
    assert back.document is not None and back.document.doc_id == "doc-1" and back.document.is_tree
    assert back.partition_key == "doc-1"
    assert back == w  # same id, same type: the same Work


def test_registry_by_type_name() -> None:
    assert work_type("tests.Rich") is Rich
    assert work_type("Note") is Note
    assert Note(token="t").get_category() == "notes"
    assert Rich(name="x").get_title().startswith("tests.Rich ")

    class Plain(Work):
        pass

    assert Plain().get_category() == "Plain"
    assert Plain(id="k").partition_key == "k"


def test_same_type_name_from_another_class_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match=r"'Note' is already registered by tests\.work\.works\.Note"):

        class Other(Work):
            type_name = "Note"


def test_ids_are_random_unless_given() -> None:
    assert Note(token="a").id != Note(token="a").id
    assert Note(token="a", id="x") == Note(token="b", id="x")
    assert Note(token="a", id="x") != Steps(path="p", id="x")


def test_garbage_unknown_type_and_bad_fields_are_clear_errors() -> None:
    c = WorkCodec("json")
    with pytest.raises(WorkPayloadError, match="not a Work"):
        c.decode(b"\xff\x00")
    with pytest.raises(UnknownWorkTypeError, match="unknown Work type 'Nope'"):
        c.decode(b'{"type":"Nope","id":"1","state":{}}')
    with pytest.raises(WorkPayloadError, match=r"bad fields for Work type 'Note'.*token"):
        c.decode(b'{"type":"Note","id":"1","state":{"id":"1"}}')
    with pytest.raises(ConfigurationError, match="unknown Work codec 'pickle'"):
        WorkCodec("pickle")


def test_unencodable_field_is_refused_at_schedule_and_nothing_is_queued() -> None:
    wm = open_work_manager("threads://", processing={"*": False})
    w = Rich(name="x")
    w.tags = [object()]  # type: ignore[list-item]
    with pytest.raises(WorkPayloadError, match=r"cannot encode Work tests\.Rich"):
        wm.schedule(w)
    assert wm.metrics("default").scheduled == 0
    with pytest.raises(WorkError, match="schedule\\(\\) takes a Work, got str"):
        wm.schedule("not a work")  # type: ignore[arg-type]


def test_bad_queue_configuration_is_named() -> None:
    with pytest.raises(ConfigurationError, match="max_threads must be >= 1"):
        QueueConfig("q", max_threads=0)
    with pytest.raises(ConfigurationError, match="queue id"):
        QueueConfig("bad id!")
    with pytest.raises(ConfigurationError, match="unknown queue id 'nope'"):
        open_work_manager("threads://", processing={"nope": True})
    with pytest.raises(ConfigurationError, match="category 'c' is in two queues"):
        open_work_manager(
            "threads://", queues=[QueueConfig("a", categories=("c",)), QueueConfig("b", categories=("c",))]
        )
    with pytest.raises(ConfigurationError, match="unknown work backend scheme 'nosuch'"):
        open_work_manager("nosuch://x")
    with pytest.raises(WorkError, match="unknown work queue 'zz'"):
        open_work_manager("threads://").metrics("zz")


def test_unreachable_redis_is_backend_unavailable() -> None:
    from conveyor.errors import BackendUnavailableError

    wm = open_work_manager("redis://127.0.0.1:1/0?prefix=x:")
    with pytest.raises(BackendUnavailableError, match=r"redis://127\.0\.0\.1:1/0"):
        wm.start()
    with pytest.raises(ConfigurationError, match="heartbeat_timeout must be a number"):
        open_work_manager("redis://127.0.0.1:6379/0?heartbeat_timeout=soon")


# --- transactions -------------------------------------------------------------------------------


def test_transaction_runs_callbacks_on_commit_only() -> None:
    done: list[str] = []
    assert current_transaction() is None
    assert not register_synchronization(lambda: done.append("x"))
    with conveyor.transaction() as tx:
        assert current_transaction() is tx
        tx.register(lambda: done.append("commit"), lambda: done.append("rollback"))
        with conveyor.transaction() as inner:
            assert inner is tx  # nested blocks join the outer transaction
            register_synchronization(lambda: done.append("inner"))
        assert done == []
    assert done == ["commit", "inner"]
    assert tx.status == "committed"
    with pytest.raises(TransactionError, match="already committed"):
        tx.register(lambda: None)


def test_transaction_rollback_and_rollback_only() -> None:
    done: list[str] = []
    with pytest.raises(KeyError), conveyor.transaction() as tx:
        tx.register(lambda: done.append("commit"), lambda: done.append("rollback"))
        raise KeyError("x")
    assert done == ["rollback"]
    with conveyor.transaction() as tx2:
        tx2.register(lambda: done.append("commit2"))
        tx2.set_rollback_only()
    assert tx2.status == "rolledback"
    assert "commit2" not in done


def test_failing_commit_callback_does_not_stop_the_others() -> None:
    done: list[str] = []

    def boom() -> None:
        raise RuntimeError("boom")

    with pytest.raises(TransactionError, match="1 after-commit callback"), conveyor.transaction() as tx:
        tx.register(boom)
        tx.register(lambda: done.append("second"))
    assert done == ["second"]


def test_transactions_are_per_thread() -> None:
    import threading

    seen: list[object] = []
    with conveyor.transaction():
        t = threading.Thread(target=lambda: seen.append(current_transaction()))
        t.start()
        t.join()
    assert seen == [None]


def test_threads_dead_letters_survive_a_log_that_cannot_be_opened(unique: str) -> None:
    from conveyor.errors import BackendUnavailableError
    from tests.work.works import RUNS, Flaky

    def broken_log() -> None:
        raise BackendUnavailableError("log 'local:///nowhere' unavailable")

    wm = open_work_manager("threads://", retry_delay=0.0, log_manager=broken_log).start()
    try:
        wm.schedule(Flaky(token=unique, failures=100))
        assert wm.await_completion(timeout=10)
        letters = wm.dead_letters()
        assert len(letters) == 1 and "flaky failure 3" in letters[0].error
        assert wm.rerun_failed() == 1
        assert wm.await_completion(timeout=10)
        assert len(RUNS[unique]) == 6
        assert len(wm.dead_letters()) == 1  # failed again: kept again
    finally:
        wm.shutdown(5)
