"""Bad payloads never block a queue (issue 14, item 3): a Work record that cannot be decoded
(nested too deep, too big) is dead-lettered with its bytes and the Works behind it run, on every
implementation; ``schedule`` refuses such a Work before storing anything; an unexpected error in
a worker never ends it."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.codec import BytesCodec
from conveyor.errors import BackendUnavailableError, KeyValueError
from conveyor.work import QueueConfig, Scheduling, Work, WorkManager, WorkPayloadError
from conveyor.work.stream import queue_log
from tests.work.conftest import Factory
from tests.work.works import RUNS, Note

ONE_THREAD = (QueueConfig("notes", max_threads=1, categories=("notes",)),)

# A Note whose ``value`` is 5,000 lists deep: msgspec raised RecursionError on it.
DEEP = (
    b'{"type":"Note","id":"deep","state":{"id":"deep","token":"t","value":'
    + b"[" * 5000
    + b"]" * 5000
    + b"}}"
)

# Not even a record of the stream manager: a msgpack array whose 8th item is nested 5,000 deep.
RAW_RECORD = b"\x98\xa1i\xa1t\xcb" + bytes(8) + b"\xc4\x01x\xc2\xc2\xc2" + b"\x91" * 5000 + b"\x90"


class Nested(Work):
    """A Work whose ``payload`` may be anything (nested lists here)."""

    category = "notes"
    token: str = ""
    payload: Any = None

    def work(self) -> None:
        RUNS[self.token].append("nested ran")


def nested(depth: int) -> list[Any]:
    """Lists ``depth`` levels deep."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def inject(wm: WorkManager, work_id: str, data: bytes) -> None:
    """Store ``data`` as the bytes of a Work in ``notes`` (what a damaged or hostile producer does),
    on the partition of the document ``doc`` (where the stream manager puts the Works after it)."""
    carrier = Note(id=work_id, token="unused")
    carrier.set_document("default", "doc")
    getattr(wm, "_schedule_now")("notes", carrier, data, Scheduling.ENQUEUE)  # noqa: B009 (test hook)


def good_note(token: str) -> Note:
    note = Note(token=token, value=7)
    note.set_document("default", "doc")  # same partition as the bad record, behind it
    return note


def check_dead_lettered(wm: WorkManager, token: str, data: bytes) -> None:
    assert wm.await_completion("notes", timeout=30), "the queue is blocked by the bad payload"
    assert [v for v, _ in RUNS[token]] == [7]
    [letter] = wm.dead_letters()
    assert letter.id == "deep" and letter.queue == "notes"
    assert letter.error.startswith("WorkPayloadError: ")
    assert "nested deeper than 100 levels (max_depth" in letter.error
    assert letter.data == data  # the bytes are kept, for a fix and a rerun
    metrics = wm.metrics("notes")
    assert (metrics.scheduled, metrics.running, metrics.worker_restarts) == (0, 0, 0)


def test_a_deeply_nested_payload_is_dead_lettered_and_the_works_behind_it_run(
    make_wm: Factory, unique: str
) -> None:
    wm = make_wm(ONE_THREAD, processing={"*": False})
    inject(wm, "deep", DEEP)
    wm.schedule(good_note(unique))
    wm.enable_processing("notes", True)
    wm.start()
    check_dead_lettered(wm, unique, DEEP)


def test_a_deeply_nested_payload_too_big_for_a_record_is_dead_lettered(
    make_wm: Factory, unique: str, impl: str
) -> None:
    """The stream manager keeps a Work bigger than ``max_record_bytes`` in the KV store: its claim
    on it is released when the payload fails."""
    if not impl.startswith("stream"):
        pytest.skip("only the stream WorkManager keeps big Works out of their records")
    wm = make_wm(ONE_THREAD, processing={"*": False}, max_record_bytes=1024)
    assert len(DEEP) > 1024
    inject(wm, "deep", DEEP)
    wm.schedule(good_note(unique))
    wm.enable_processing("notes", True)
    wm.start()
    check_dead_lettered(wm, unique, DEEP)
    assert not list(getattr(wm, "_state").kv.keys("x:"))  # noqa: B009 (the payload is dropped once done)


def test_a_raw_record_nested_too_deep_is_dead_lettered_and_the_works_behind_it_run(
    make_wm: Factory, unique: str, impl: str
) -> None:
    if not impl.startswith("stream"):
        pytest.skip("records of work/<queue> logs are the stream WorkManager's")
    wm = make_wm(ONE_THREAD, processing={"*": False})
    log = getattr(wm, "_log_manager")  # noqa: B009
    log.appender(queue_log("notes"), codec=BytesCodec()).append("doc", RAW_RECORD)  # beside good_note
    wm.schedule(good_note(unique))
    wm.enable_processing("notes", True)
    wm.start()
    assert wm.await_completion("notes", timeout=30), "the queue is blocked by the bad record"
    assert [v for v, _ in RUNS[unique]] == [7]
    [letter] = wm.dead_letters()
    assert letter.error.startswith("WorkPayloadError: not a Work record of 'work/notes': RecursionError")
    assert (letter.id, letter.data) == ("?", RAW_RECORD)
    metrics = wm.metrics("notes")
    assert (metrics.scheduled, metrics.running, metrics.worker_restarts) == (0, 0, 0)


def skip_kafka(impl: str) -> None:
    if impl == "stream-kafka":
        pytest.skip("the same code as on the other logs: not worth a Kafka group join")


def test_schedule_refuses_a_work_nested_too_deep_and_stores_nothing(
    make_wm: Factory, unique: str, impl: str
) -> None:
    skip_kafka(impl)
    wm = make_wm(processing={"*": False})
    for depth in (1500, 100):  # the Work is level 1: its payload may be 99 deep
        with pytest.raises(WorkPayloadError, match=r"nested deeper than 100 levels \(max_depth"):
            wm.schedule(Nested(token=unique, payload=nested(depth)))
    assert wm.metrics("notes").scheduled == 0
    assert wm.schedule(Nested(token=unique, payload=nested(99)))
    assert wm.metrics("notes").scheduled == 1
    wm.enable_processing("notes", True)
    wm.start()
    assert wm.await_completion("notes", timeout=30)
    assert RUNS[unique] == ["nested ran"]
    assert wm.dead_letters() == []


def test_payload_limits_are_configurable(make_wm: Factory, unique: str, impl: str) -> None:
    skip_kafka(impl)
    wm = make_wm(processing={"*": False}, max_payload_depth=5, max_payload_bytes=2000)
    with pytest.raises(WorkPayloadError, match=r"deeper than 5 levels"):
        wm.schedule(Nested(token=unique, payload=nested(5)))
    with pytest.raises(WorkPayloadError, match=r"more than max_bytes=2000"):
        wm.schedule(Nested(token=unique, payload="x" * 2000))
    assert wm.schedule(Nested(token=unique, payload=nested(4)))
    assert wm.metrics("notes").scheduled == 1


def test_an_unexpected_error_in_a_worker_never_ends_it(make_wm: Factory, unique: str, impl: str) -> None:
    """A bug that raises out of the code running a Work (not out of the Work): the Work is
    dead-lettered (the stream manager first reads it again a few times), the worker goes on."""
    skip_kafka(impl)
    wm = make_wm(ONE_THREAD, processing={"*": False})
    execute = getattr(wm, "_execute")  # noqa: B009

    def broken(queue_id: str, work: Work) -> Any:
        if work.id == "boom":
            raise RecursionError("maximum recursion depth exceeded (injected)")
        return execute(queue_id, work)

    wm._execute = broken  # type: ignore[method-assign]
    wm.schedule(Note(id="boom", token=unique, value=1))
    wm.schedule(Note(token=unique, value=2))
    wm.enable_processing("notes", True)
    wm.start()
    assert wm.await_completion("notes", timeout=30), "the worker died"
    assert [v for v, _ in RUNS[unique]] == [2]
    [letter] = wm.dead_letters()
    assert (
        letter.id == "boom" and "RecursionError: maximum recursion depth exceeded (injected)" in letter.error
    )
    metrics = wm.metrics("notes")
    assert (metrics.scheduled, metrics.running) == (0, 0)
    if impl.startswith("stream"):
        assert "failed 4 times" in letter.error
    else:
        assert metrics.worker_restarts == 1


def test_a_backend_error_reading_a_big_work_is_retried_and_the_work_runs_once(
    make_wm: Factory, unique: str, impl: str
) -> None:
    """The KV store fails (retriable) while the reader fetches a big Work's payload: the record
    is kept, read again, and the reader takes its own claim again instead of waiting on it."""
    if not impl.startswith("stream"):
        pytest.skip("only the stream WorkManager keeps big Works out of their records")
    skip_kafka(impl)
    wm = make_wm(ONE_THREAD, processing={"*": False}, max_record_bytes=1024)
    state = getattr(wm, "_state")  # noqa: B009
    fetch = state.get_external
    failures: list[str] = []

    def flaky(work_id: str, token: str) -> bytes | None:
        if len(failures) < 2:
            failures.append(work_id)
            raise BackendUnavailableError("KV store down (injected)")
        data: bytes | None = fetch(work_id, token)
        return data

    state.get_external = flaky
    big = "x" * 5000 + unique
    wm.schedule(Note(id="big", token=big, value=5))
    wm.enable_processing("notes", True)
    wm.start()
    assert wm.await_completion("notes", timeout=30)
    assert [v for v, _ in RUNS[big]] == [5] and failures == ["big", "big"]
    assert wm.dead_letters() == []
    assert wm.metrics("notes").as_tuple() == (0, 0, 1, 0)


def test_another_error_reading_a_big_work_dead_letters_it_and_keeps_its_payload(
    make_wm: Factory, unique: str, impl: str
) -> None:
    if not impl.startswith("stream"):
        pytest.skip("only the stream WorkManager keeps big Works out of their records")
    skip_kafka(impl)
    wm = make_wm(ONE_THREAD, processing={"*": False}, max_record_bytes=1024)
    state = getattr(wm, "_state")  # noqa: B009

    def broken(work_id: str, token: str) -> bytes | None:
        raise KeyValueError(f"entry of {work_id} unreadable (injected)")

    wm.schedule(Note(id="big", token="x" * 5000 + unique, value=5))
    wm.schedule(good_note(unique))
    state.get_external = broken
    wm.enable_processing("notes", True)
    wm.start()
    assert wm.await_completion("notes", timeout=30)
    assert [v for v, _ in RUNS[unique]] == [7]
    [letter] = wm.dead_letters()
    assert letter.id == "big" and letter.error.startswith("KeyValueError: entry of big unreadable (injected)")
    assert "failed 4 times); its payload is kept in the KV store (key x:big:" in letter.error
    assert list(state.kv.keys("x:big:"))  # not dropped: nothing stored is lost
    assert wm.metrics("notes").as_tuple() == (0, 0, 2, 0)
