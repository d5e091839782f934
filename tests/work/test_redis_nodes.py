"""Redis WorkManager across processes: restart with progress kept, dedicated nodes, kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.work import QueueConfig, open_work_manager
from conveyor.work.redis_manager import RedisWorkManager
from tests.work.works import Marked, Steps

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def url(redis_url: str, unique: str) -> Iterator[str]:
    """A Redis work URL under a prefix of this test only (purged afterwards)."""
    u = f"{redis_url}?prefix=test:{unique}:&heartbeat_timeout=2"
    yield u
    wm = open_work_manager(u)
    assert isinstance(wm, RedisWorkManager)
    wm.purge()


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


def test_suspend_on_sigterm_then_resume_in_a_new_process(url: str, tmp_path: Path) -> None:
    path = tmp_path / "steps.log"
    client = open_work_manager(
        url, queues=[QueueConfig("steps", categories=("steps",))], processing={"*": False}
    )
    client.start()
    client.schedule(Steps(id="resumable", path=str(path), total=60, step_s=0.02))
    first = node(url, "steps", 2)
    assert wait_for(lambda: len(lines(path)) >= 10, 10)
    first.send_signal(signal.SIGTERM)
    assert first.wait(15) == 0  # clean shutdown: the Work suspended itself
    saved = client.find("resumable")
    assert isinstance(saved, Steps) and 10 <= saved.done < 60
    assert client.metrics("steps").as_tuple()[:2] == (1, 0)
    second = node(url, "steps", 2, "--until-idle")
    assert second.wait(30) == 0
    steps = lines(path)
    assert [int(s[1]) for s in steps] == list(range(1, 61))  # progress kept: nothing redone
    assert {s[2] for s in steps} == {str(first.pid), str(second.pid)}
    assert client.metrics("steps").as_tuple() == (0, 0, 1, 0)
    client.shutdown(5)


def test_two_nodes_one_with_the_queue_disabled(url: str, unique: str) -> None:
    from tests.work.works import RUNS, Note

    queues = [QueueConfig("notes", max_threads=2, categories=("notes",))]
    a = open_work_manager(url, queues=queues, processing={"notes": False}, node_id="node-a").start()
    b = open_work_manager(
        url, queues=queues, processing={"*": False, "notes": True}, node_id="node-b"
    ).start()
    try:
        for v in range(20):
            a.schedule(Note(token=unique, value=v))
        assert a.await_completion("notes", timeout=20)
        assert sorted(v for v, _ in RUNS[unique]) == list(range(20))
        assert {name.split("-")[3] for _, name in RUNS[unique]} == {"b"}
        assert a.metrics("notes").as_tuple() == (0, 0, 20, 0)
    finally:
        a.shutdown(5)
        b.shutdown(5)


@pytest.mark.slow
def test_kill_9_with_works_in_flight_none_lost(url: str, tmp_path: Path) -> None:
    path = tmp_path / "done.log"
    queues = [QueueConfig("marked", max_threads=4, categories=("marked",))]
    client = open_work_manager(url, queues=queues, processing={"*": False}).start()
    ids = [f"w{i}" for i in range(12)]
    for wid in ids:
        client.schedule(Marked(id=wid, path=str(path), seconds=1.5))
    victim = node(url, "marked", 4)
    assert wait_for(lambda: client.metrics("marked").running == 4, 10)
    time.sleep(0.2)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    assert lines(path) == []  # the 4 in flight died with the node
    survivor = open_work_manager(url, queues=queues, node_id="survivor").start()
    try:
        assert survivor.await_completion("marked", timeout=60)
        done = [s[0] for s in lines(path)]
        assert sorted(done) == sorted(ids)  # every Work completed once on the survivor, none lost
        assert {s[1] for s in lines(path)} == {str(os.getpid())}
        assert survivor.metrics("marked").as_tuple() == (0, 0, 12, 0)
    finally:
        survivor.shutdown(5)
        client.shutdown(5)


def test_a_slow_work_is_not_handed_over_while_its_node_lives(url: str, tmp_path: Path) -> None:
    path = tmp_path / "done.log"
    queues = [QueueConfig("marked", max_threads=1, categories=("marked",))]
    owner = open_work_manager(url, queues=queues, node_id="owner").start()
    other = open_work_manager(url, queues=queues, node_id="other")
    try:
        owner.schedule(Marked(id="long", path=str(path), seconds=5.0))  # > 2 s heartbeat timeout
        assert wait_for(lambda: owner.metrics("marked").running == 1, 5)
        other.start()
        assert owner.await_completion("marked", timeout=20)
        assert len(lines(path)) == 1  # ran once: never re-queued while the owner heartbeats
    finally:
        owner.shutdown(5)
        other.shutdown(5)


@pytest.mark.parametrize(("limit", "deaths", "runs"), [(2, 1, True), (2, 2, False), (0, 1, False)])
def test_a_work_whose_nodes_keep_dying_goes_to_dead_letters(
    url: str, unique: str, limit: int, deaths: int, runs: bool
) -> None:
    """A Work that killed its process ``max_recoveries`` times (0 counts as 1) is dead-lettered
    by the next node instead of running again."""
    from tests.work.works import RUNS, Note

    queues = [QueueConfig("notes", max_threads=1, categories=("notes",))]
    wm = open_work_manager(url, queues=queues, max_recoveries=limit)
    assert isinstance(wm, RedisWorkManager)
    k = wm.keys
    # A node "ghost" took the Work and died (its heartbeat deadline is long past), having died
    # with it deaths-1 times before.
    r = wm._r
    r.hset(k.data("notes"), "poison", wm.codec.encode(Note(id="poison", token=unique, value=9)))
    r.lpush(k.claims("ghost", "notes", 0), "poison")
    r.hset(k.claim_lists("ghost"), k.claims("ghost", "notes", 0), "notes")
    r.hset(k.run("notes"), "poison", "ghost")
    r.sadd(k.queues, "notes")
    r.zadd(k.nodes, {"ghost": 0})
    if deaths > 1:
        r.hset(k.recovered("notes"), "poison", deaths - 1)
    wm.start()
    try:
        assert wait_for(lambda: wm.metrics("notes").completed == 1, 10)
        letters = wm.dead_letters()
        if runs:
            assert [v for v, _ in RUNS[unique]] == [9]
            assert letters == []
        else:
            assert RUNS[unique] == []
            assert len(letters) == 1 and f"died {deaths} times (max_recoveries={limit})" in letters[0].error
        assert not r.hexists(k.recovered("notes"), "poison")
        assert r.zscore(k.nodes, "ghost") is None
        assert not r.exists(k.claim_lists("ghost"), k.claims("ghost", "notes", 0))
    finally:
        wm.shutdown(5)


def test_node_declared_dead_then_back_does_not_count_its_late_completion(url: str, tmp_path: Path) -> None:
    path = tmp_path / "done.log"
    queues = [QueueConfig("marked", max_threads=1, categories=("marked",))]
    paused = open_work_manager(url, queues=queues, node_id="paused").start()
    assert isinstance(paused, RedisWorkManager)
    paused.schedule(Marked(id="w", path=str(path), seconds=1.5))
    assert wait_for(lambda: paused.metrics("marked").running == 1, 5)
    # The node stops beating (a long GC pause, a frozen VM): it is declared dead meanwhile.
    paused._stop_hb.set()
    paused._r.zadd(paused.keys.nodes, {"paused": 0})
    other = open_work_manager(url, queues=queues, node_id="other").start()
    try:
        assert wait_for(lambda: len(lines(path)) == 2, 15)  # ran on both: at-least-once
        assert other.await_completion("marked", timeout=10)
        assert other.metrics("marked").as_tuple() == (0, 0, 1, 0)  # the late finish is not counted
    finally:
        other.shutdown(5)
        paused.shutdown(5)


def test_restart_under_the_same_node_id_runs_what_the_crash_left(url: str, unique: str) -> None:
    from tests.work.works import RUNS, Note

    queues = [QueueConfig("notes", max_threads=1, categories=("notes",))]
    wm = open_work_manager(url, queues=queues, node_id="fixed-id")
    assert isinstance(wm, RedisWorkManager)
    k, r = wm.keys, wm._r
    # What a process "fixed-id" killed a moment ago left: a claimed, running Work and a heartbeat
    # that has not expired yet (and that the new process will keep alive).
    r.hset(k.data("notes"), "left", wm.codec.encode(Note(id="left", token=unique, value=5)))
    r.lpush(k.claims("fixed-id", "notes", 0), "left")
    r.hset(k.claim_lists("fixed-id"), k.claims("fixed-id", "notes", 0), "notes")
    r.hset(k.run("notes"), "left", "fixed-id")
    r.sadd(k.queues, "notes")
    r.zadd(k.nodes, {"fixed-id": time.time() * 1000 + 60_000})
    wm.start()
    try:
        assert wm.await_completion("notes", timeout=10)
        assert [v for v, _ in RUNS[unique]] == [5]
        assert wm.metrics("notes").as_tuple() == (0, 0, 1, 0)
    finally:
        wm.shutdown(5)


def test_msgpack_codec_end_to_end(url: str, unique: str) -> None:
    from tests.work.works import RUNS, Flaky, Note

    wm = open_work_manager(
        url + "&codec=msgpack", queues=[QueueConfig("notes", categories=("notes",))], retry_delay=0.0
    ).start()
    try:
        assert wm.codec.name == "msgpack"
        wm.schedule(Note(token=unique, value=3))
        wm.schedule(Flaky(token=unique + "f", failures=100))
        assert wm.await_completion(timeout=10)
        assert [v for v, _ in RUNS[unique]] == [3]
        (letter,) = wm.dead_letters()
        assert letter.type == "Flaky" and "flaky failure 3" in letter.error
        assert wm.rerun_failed() == 1
        assert wm.await_completion(timeout=10)
        assert len(RUNS[unique + "f"]) == 6
    finally:
        wm.shutdown(5)
