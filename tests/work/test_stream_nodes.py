"""The stream WorkManager: nodes sharing queues, state lost and rebuilt, bad records, URLs,
and (on the persistent ``local://`` log) restart and kill -9 in separate processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from conveyor.codec import BytesCodec
from conveyor.errors import ConfigurationError
from conveyor.kv import open_kv_store
from conveyor.log import LogManager, open_log_manager
from conveyor.work import QueueConfig, Scheduling, WorkState, open_work_manager
from conveyor.work.stream import StreamWorkManager, queue_log
from conveyor.work.stream_state import KV, LocalKV, WorkStateStore, WorkStatus
from tests.services import kafka_log_url
from tests.work.works import RUNS, Coalesced, Marked, Note, Slow, Steps

ROOT = Path(__file__).resolve().parents[2]
NOTES = (QueueConfig("notes", max_threads=2, categories=("notes",)),)


@pytest.fixture
def log(unique: str) -> Iterator[LogManager]:
    """A ``memory://`` log shared by the managers of one test (as a cluster's broker)."""
    lm = open_log_manager(f"memory://{unique}")
    yield lm
    lm.close()


def manager(log: LogManager, kv: KV, node_id: str, **options: object) -> StreamWorkManager:
    options.setdefault("poll_interval", 0.05)
    options.setdefault("retry_delay", 0.01)
    options.setdefault("queues", NOTES)
    wm = open_work_manager("stream", log_manager=log, kv=kv, node_id=node_id, **options)
    assert isinstance(wm, StreamWorkManager)
    return wm


@pytest.fixture(
    params=["memory", "local", pytest.param("kafka", marks=[pytest.mark.kafka, pytest.mark.slow])]
)
def cluster(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> Iterator[tuple[LogManager, KV]]:
    """A log and a state store shared by the nodes of one test: ``memory://`` and an in-process
    store, or the persistent ``local://`` log (skipped without the backend) or Kafka (the
    ``kafka_bootstrap`` broker, topics under a prefix of this test) with an SQLite store."""
    kv: Any
    if request.param == "memory":
        lm = open_log_manager(f"memory://{unique}")
        kv = LocalKV()
    else:
        if request.param == "local":
            pytest.importorskip("conveyor.log.local")
            lm = open_log_manager(f"local://{tmp_path}/log")
        else:
            bootstrap = request.getfixturevalue("kafka_bootstrap")
            lm = open_log_manager(kafka_log_url(bootstrap, unique))
        kv = open_kv_store(f"sqlite:///{tmp_path}/kv.db", "work")
    yield lm, kv
    lm.close()
    if hasattr(kv, "close"):
        kv.close()


def holds_partitions(wm: StreamWorkManager, queue_id: str) -> bool:
    """Whether ``wm`` reads some partitions of ``queue_id`` (a Kafka member gets them when it has
    joined its group, inside a read, seconds after subscribing)."""
    consumer = wm._queues[queue_id].consumer
    tailer = consumer.tailer if consumer is not None else None
    return tailer is not None and bool(tailer.assignments())


@pytest.mark.parametrize("store_state", [True, False], ids=["state", "nostate"])
def test_two_nodes_share_a_queue_and_one_can_be_disabled(
    cluster: tuple[LogManager, KV], unique: str, store_state: bool
) -> None:
    log, kv = cluster
    front = manager(log, kv, "front", processing={"notes": False}, store_state=store_state)
    front.start()
    back = manager(log, kv, "back", store_state=store_state).start()
    try:
        for v in range(20):
            front.schedule(Note(token=unique, value=v))
        # Generous: on Kafka the back node joins its group first (seconds on tansu).
        assert front.await_completion("notes", timeout=60)
        assert sorted(v for v, _ in RUNS[unique]) == list(range(20))  # each once
        assert {name.split("-")[2] for _, name in RUNS[unique]} == {"back"}
        assert front.metrics("notes").as_tuple() == (0, 0, 20, 0)
        RUNS[unique].clear()
        front.enable_processing("notes", True)  # now both nodes share the partitions
        assert wait_for(lambda: holds_partitions(front, "notes"), 60)
        for v in range(40):
            back.schedule(Note(token=unique, value=v))
        assert back.await_completion("notes", timeout=60)
        assert sorted(v for v, _ in RUNS[unique]) == list(range(40))  # each once
        assert {name.split("-")[2] for _, name in RUNS[unique]} == {"front", "back"}
    finally:
        assert front.shutdown(10) and back.shutdown(10)


def test_state_lost_the_log_still_runs_what_it_holds(log: LogManager, unique: str) -> None:
    first = manager(log, LocalKV(), "first", processing={"*": False}).start()
    for v in range(5):
        first.schedule(Note(token=unique, value=v))
    assert first.shutdown(5)
    # A new node with an empty state (no shared KV store): the log's Works count as scheduled
    # and run; none is skipped for being unknown to the state.
    second = manager(log, LocalKV(), "second", processing={"*": False})
    assert second.metrics("notes").scheduled == 5
    second.enable_processing("notes", True)
    second.start()
    try:
        assert second.await_completion("notes", timeout=10)
        assert sorted(v for v, _ in RUNS[unique]) == list(range(5))
    finally:
        second.shutdown(5)


def test_finished_works_are_committed_so_a_new_node_does_not_run_them_again(
    log: LogManager, unique: str
) -> None:
    # Commits only at shutdown or when idle: the shutdown must commit every finished record.
    first = manager(log, LocalKV(), "first", commit_every=10_000, commit_interval=3600).start()
    for v in range(30):
        first.schedule(Note(token=unique, value=v))
    assert first.await_completion("notes", timeout=10)
    assert first.shutdown(5)
    # A new state knows nothing of them: whatever the log still holds past its committed
    # offsets would count as scheduled and run again.
    second = manager(log, LocalKV(), "second")
    assert second.metrics("notes").scheduled == 0
    second.start()
    try:
        second.schedule(Note(token=unique, value=30))
        assert second.await_completion("notes", timeout=10)
        assert sorted(v for v, _ in RUNS[unique]) == list(range(31))  # each once
    finally:
        assert second.shutdown(5)


def test_garbage_record_goes_to_dead_letters_queue_keeps_running(log: LogManager, unique: str) -> None:
    wm = manager(log, LocalKV(), "n1").start()
    try:
        log.appender(queue_log("notes"), codec=BytesCodec()).append(0, b"\xffnot a record")
        wm.schedule(Note(token=unique, value=1))
        assert wm.await_completion("notes", timeout=10)
        assert [v for v, _ in RUNS[unique]] == [1]
        # The garbage sits in partition 0 and the Note may be in another: the Note can be done
        # before the garbage is read.
        deadline = time.monotonic() + 10
        while not (letters := wm.dead_letters()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(letters) == 1 and "not a Work record of 'work/notes'" in letters[0].error
    finally:
        wm.shutdown(5)


def test_queue_log_partitions_from_config(log: LogManager) -> None:
    queues = (QueueConfig("a", max_threads=3), QueueConfig("b", max_threads=1, partitions=7))
    wm = open_work_manager("stream", queues=queues, log_manager=log)
    assert log.size(queue_log("a")) == 6
    assert log.size(queue_log("b")) == 7
    assert log.size(queue_log("default")) == 8
    wm.shutdown()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("stream://?colour=red", "unknown option(s) ['colour']"),
        ("stream://?claim_timeout=soon", "claim_timeout must be a number"),
        ("stream://?claim_timeout=1&heartbeat_interval=2", "heartbeat_interval (2.0) must be shorter"),
        ("stream://?store_state=maybe", "store_state must be true or false"),
    ],
)
def test_bad_urls_are_clear_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        open_work_manager(url)
    assert message in str(info.value)


# --- separate processes on the persistent local log ------------------------------------------


@pytest.fixture(
    params=["local", "local-nostate", pytest.param("kafka", marks=[pytest.mark.kafka, pytest.mark.slow])]
)
def local_url(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> str:
    """A stream work URL on a persistent log shared by processes: ``local://`` in ``tmp_path``
    (skipped without the backend), the same with ``store_state=false``, or Kafka under a prefix
    of this test."""
    if request.param.startswith("local"):
        pytest.importorskip("conveyor.log.local")
        log_url = f"local://{tmp_path}/log"
    else:
        log_url = f"kafka://{request.getfixturevalue('kafka_bootstrap')}?prefix=t{unique}-"
    options = "claim_timeout=2&heartbeat_interval=0.2&poll_interval=0.05"
    if request.param.endswith("-nostate"):
        options += "&store_state=false"
    return f"stream://?log={quote(log_url, safe='')}&{options}"


def node(url: str, queue: str, threads: int, *extra: str) -> subprocess.Popen[str]:
    """A node process running ``queue``; returns once it has started."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.work.node_main", url, queue, str(threads), *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    return proc


def wait_for(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def schedule_offline(url: str, queue: str, works: list[Marked] | list[Steps]) -> None:
    """Schedule from a process that does not run the queue, then close the log."""
    wm = open_work_manager(url, queues=[QueueConfig(queue, categories=(queue,))], processing={"*": False})
    for work in works:
        wm.schedule(work)
    assert wm.shutdown(5)


def test_suspend_on_sigterm_then_resume_in_a_new_process(local_url: str, tmp_path: Path) -> None:
    path = tmp_path / "steps.log"
    schedule_offline(local_url, "steps", [Steps(id="s1", path=str(path), total=40, step_s=0.05)])
    first = node(local_url, "steps", 1)
    assert wait_for(lambda: len(lines(path)) >= 5, 10)
    first.send_signal(signal.SIGTERM)
    assert first.wait(20) == 0
    stopped_at = len(lines(path))
    assert 5 <= stopped_at < 40
    second = node(local_url, "steps", 1, "--until-idle")
    assert second.wait(60) == 0
    done = lines(path)
    assert [int(step) for _, step, _ in done] == list(range(1, 41))  # resumed, nothing redone
    assert {pid for _, _, pid in done[stopped_at:]} == {str(second.pid)}


@pytest.mark.slow
def test_kill_9_with_works_in_flight_none_lost(local_url: str, tmp_path: Path) -> None:
    path = tmp_path / "marked.log"
    works = [Marked(id=f"m{i}", path=str(path), seconds=0.5) for i in range(12)]
    schedule_offline(local_url, "marked", works)
    victim = node(local_url, "marked", 4)
    assert wait_for(lambda: len(lines(path)) >= 2, 20)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    done_by_victim = {wid for wid, _ in lines(path)}
    assert len(done_by_victim) < 12  # Works were in flight or waiting when it died
    survivor = node(local_url, "marked", 4, "--until-idle")
    assert survivor.wait(60) == 0
    done = lines(path)
    assert {wid for wid, _ in done} == {f"m{i}" for i in range(12)}  # none lost
    by_survivor = [wid for wid, pid in done if pid == str(survivor.pid)]
    assert set(by_survivor) >= {f"m{i}" for i in range(12)} - done_by_victim


def test_a_work_claimed_by_a_live_owner_waits_then_is_taken_over(log: LogManager, unique: str) -> None:
    kv = LocalKV()
    wm = manager(log, kv, "n1", claim_timeout=0.5, heartbeat_interval=0.1, processing={"*": False})
    wm.schedule(Note(id="n", token=unique, value=1))
    state = WorkStateStore(kv)

    def taken_by_ghost(st: WorkStatus | None) -> tuple[WorkStatus, None]:
        assert st is not None
        st.running[st.waiting.pop()] = "ghost"  # as if another node read the record and runs it
        return st, None

    state.update("n", taken_by_ghost)
    state.add("notes", "scheduled", -1)
    beating = threading.Event()

    def ghost() -> None:
        while not beating.wait(0.05):
            state.beat("ghost", ttl=5)

    state.beat("ghost", ttl=5)
    beater = threading.Thread(target=ghost)
    beater.start()
    try:
        wm.enable_processing("notes", True)
        wm.start()
        time.sleep(1.0)  # two claim timeouts: the ghost's heartbeat is fresh, so n1 waits
        assert RUNS[unique] == []
        assert wm.get_work_state("n") is WorkState.RUNNING
    finally:
        beating.set()
        beater.join()
    # The ghost stops beating (it died): n1 takes the Work over and runs it, once.
    assert wait_for(lambda: wm.metrics("notes").completed == 1, 10)
    assert [v for v, _ in RUNS[unique]] == [1]
    assert wm.get_work_state("n") is WorkState.UNKNOWN
    assert wm.shutdown(5)


def test_cancel_reaches_a_work_running_on_another_node(log: LogManager, tmp_path: Path) -> None:
    kv = LocalKV()
    steps = (QueueConfig("steps", max_threads=1, categories=("steps",)),)
    front = manager(log, kv, "front", queues=steps, processing={"*": False})
    back = manager(log, kv, "back", queues=steps, heartbeat_interval=0.05).start()
    path = tmp_path / "steps.log"
    try:
        front.schedule(Steps(id="long", path=str(path), total=200, step_s=0.02))
        assert wait_for(lambda: front.get_work_state("long") is WorkState.RUNNING, 10)
        assert front.schedule(Steps(id="long", path=str(path)), scheduling=Scheduling.CANCEL_SCHEDULED)
        assert back.await_completion("steps", timeout=10)
        assert wait_for(lambda: back.metrics("steps").as_tuple() == (0, 0, 0, 1), 5)
        assert len(lines(path)) < 200
        assert front.get_work_state("long") is WorkState.UNKNOWN
    finally:
        assert back.shutdown(5)


def test_a_work_too_big_for_a_record_is_stored_in_the_kv_store(log: LogManager, unique: str) -> None:
    kv = LocalKV()
    wm = manager(log, kv, "n1", max_record_bytes=1024, processing={"*": False})
    big = "x" * 5000 + unique
    wm.schedule(Note(id="big", token=big, value=1))
    wm.schedule(Note(id="lost", token=big, value=2))
    wm.schedule(Note(id="small", token=unique, value=3))
    with log.create_tailer("peek", queue_log("notes"), codec=BytesCodec()) as peek:
        sizes = [len(r.message) for r in peek.read_batch(9, 1)]
    assert len(sizes) == 3 and max(sizes) < 1024  # the records hold no big Work
    found = wm.find("big")
    assert isinstance(found, Note) and found.token == big
    [lost_key] = [k for k in kv.keys("x:lost:")]
    kv.put(lost_key, None)  # its payload vanished from the store
    wm.enable_processing("notes", True)
    wm.start()
    try:
        assert wm.await_completion("notes", timeout=10)
        assert [v for v, _ in RUNS[big]] == [1]
        assert [v for v, _ in RUNS[unique]] == [3]
        assert kv.keys("x:") == []  # payloads dropped once done
        [letter] = wm.dead_letters()
        assert letter.id == "lost" and "too big for a record" in letter.error
    finally:
        wm.shutdown(5)


def test_untracked_coalescing_copies_read_after_the_latest_ran_are_skipped(
    log: LogManager, unique: str
) -> None:
    import msgspec

    from conveyor.work.stream_state import WorkRecord

    queues = (QueueConfig("default", max_threads=2),)
    wm = manager(log, LocalKV(), "n1", queues=queues, processing={"*": False}, store_state=False)
    for v in range(3):
        wm.schedule(Coalesced(id="c", token=unique, value=v))
    tailer = log.create_tailer("peek", queue_log("default"), codec=BytesCodec())
    records: dict[int, WorkRecord] = {}
    while len(records) < 3 and (got := tailer.read(2.0)) is not None:
        rec = msgspec.msgpack.decode(got.message, type=WorkRecord)
        records[msgspec.json.decode(rec.data)["state"]["value"]] = rec
    assert sorted(records) == [0, 1, 2] and all(r.untracked and r.coalescing for r in records.values())
    assert wm._untracked_verdict(records[0]).name == "skip-canceled"
    assert wm._untracked_verdict(records[2]).name == "run"
    # The latest copy runs first (copies sit in different partitions) and is done; an older copy
    # a second thread had already taken, and the latest copy read again after a crash, still
    # find they must not run.
    wm._release(records[2])
    assert wm._untracked_verdict(records[1]).name == "skip-canceled"
    assert wm._untracked_verdict(records[2]).name == "skip"
    # A copy scheduled afterwards is the latest again.
    wm.schedule(Coalesced(id="c", token=unique, value=3))
    wm.enable_processing("default", True)
    wm.start()
    try:
        assert wm.await_completion("default", timeout=10)
        assert RUNS[unique] == [3]
        assert wm.metrics("default").as_tuple() == (0, 0, 1, 3)
    finally:
        assert wm.shutdown(5)


@pytest.mark.parametrize("store_state", [True, False], ids=["state", "nostate"])
def test_await_completion_sees_a_work_that_starts_while_it_reads_the_metrics(
    log: LogManager, unique: str, store_state: bool
) -> None:
    """A Work taken between await_completion's reads of the running and waiting counts was once
    counted in neither: await_completion returned while it ran (a CLI test caught it, rarely)."""
    slow = (QueueConfig("slow", max_threads=1, categories=("slow",)),)
    wm = manager(log, LocalKV(), "n1", queues=slow, store_state=store_state, processing={"slow": False})
    wm.start()
    wm.schedule(Slow(token=unique, seconds=0.3), after_commit=False)
    state = wm._state
    read_running = state.running
    raced: list[int] = []

    def running_then_the_work_starts(queue_id: str, timeout: float, own: Any = None) -> int:
        total = read_running(queue_id, timeout, own)
        if threading.current_thread() is threading.main_thread() and not raced:
            raced.append(total)
            wm.enable_processing("slow", True)  # the Work starts now, after its running count was read
            deadline = time.monotonic() + 10
            while wm._queues["slow"].running_count == 0 and time.monotonic() < deadline:
                time.sleep(0.001)
        return total

    state.running = running_then_the_work_starts  # type: ignore[method-assign]
    try:
        assert wm.await_completion("slow", timeout=10)
        assert raced, "the race was not staged"
        assert wm.metrics("slow").completed == 1, "await_completion returned while the Work ran"
    finally:
        state.running = read_running  # type: ignore[method-assign]
        wm.shutdown(5)
