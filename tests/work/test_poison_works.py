"""A Work that kills its process every time it runs (SIGKILL from ``work()``), on node processes
restarted after each death: once it killed its process ``max_recoveries`` times (DESIGN.md) the
next node does not run it again, it goes to the dead letters with the number of deaths, the Work
behind it on the same queue runs, and nothing counts as running.

On the stream WorkManager with its state in an SQLite KV store (``local://`` log, and Kafka),
without a state (``store_state=false``: starts counted per partition and offset), and on Redis.
The ``threads://`` manager keeps its Works in memory: they die with the process (docs/work.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from conveyor.work import QueueConfig, WorkManager, open_work_manager
from conveyor.work.redis_manager import RedisWorkManager
from tests.services import kafka_log_url
from tests.work.works import Crash

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "crash"
LIMIT = 2  # max_recoveries of the queue: it kills 2 processes, then the 3rd node dead-letters it


@pytest.fixture(
    params=[
        "local-state",
        "local-nostate",
        pytest.param("kafka-nostate", marks=pytest.mark.kafka),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def url(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> Iterator[str]:
    """The work URL of the nodes of one test: a stream WorkManager on a persistent log with an
    SQLite KV store (with or without the per-Work state), or Redis under a prefix of this test."""
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis_url")
        u = f"{redis_url}?prefix=test:{unique}:&heartbeat_timeout=1"
        yield u
        wm = open_work_manager(u)
        assert isinstance(wm, RedisWorkManager)
        wm.purge()
        return
    if request.param.startswith("local"):
        pytest.importorskip("conveyor.log.local")
        log_url = f"local://{tmp_path}/log"
    else:
        log_url = kafka_log_url(request.getfixturevalue("kafka_bootstrap"), f"t{unique}")
    kv_url = f"sqlite:///{tmp_path}/kv.db"
    options = "claim_timeout=1&heartbeat_interval=0.2&poll_interval=0.05"
    if request.param.endswith("-nostate"):
        options += "&store_state=false"
    yield f"stream://?log={quote(log_url, safe='')}&kv={quote(kv_url, safe='')}&{options}"


def client(url: str) -> WorkManager:
    """A manager of the queue that does not run it (schedules, reads metrics and dead letters)."""
    return open_work_manager(url, queues=[QueueConfig(QUEUE, categories=(QUEUE,))], processing={"*": False})


def spawn(url: str, limit: int = LIMIT) -> subprocess.Popen[str]:
    """A node process running the queue (one thread, ``max_recoveries`` = ``limit``)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.work.node_main", url, QUEUE, "1", "--max-recoveries", str(limit)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def wait_for(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def runs(path: Path) -> list[str]:
    """Ids of the Works that started, one per start."""
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def test_a_work_that_kills_its_process_ends_in_the_dead_letters(url: str, tmp_path: Path) -> None:
    path = tmp_path / "runs.log"
    front = client(url).start()
    try:
        # Both on one document: one partition of the stream log, the normal Work behind the
        # poison one (a Redis queue is one list: behind it too).
        poison = Crash(id="poison", path=str(path))
        poison.set_document("default", "doc-1")
        behind = Crash(id="behind", path=str(path), die=False)
        behind.set_document("default", "doc-1")
        front.schedule(poison)
        front.schedule(behind)
    finally:
        assert front.shutdown(10)

    back = client(url)
    try:
        exits: list[int] = []

        def done() -> bool:
            return "behind" in runs(path) and bool(back.dead_letters())

        for _ in range(LIMIT + 2):  # a node per death, restarted at once, and one more that stays up
            proc = spawn(url)
            try:
                assert wait_for(lambda p=proc: p.poll() is not None or done(), 90), (exits, runs(path))
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    assert proc.wait(30) == 0
            exits.append(proc.returncode)
            if proc.returncode == 0:
                break
        # "A Work that kills its process max_recoveries times is dead-lettered": LIMIT nodes
        # killed by it, then the next node dead-letters it without running it, and runs the Work
        # behind it (on Redis that one may run before: only the poison Work waits for its dead
        # node's claim).
        assert exits == [-signal.SIGKILL] * LIMIT + [0], exits
        started = runs(path)
        assert started.count("poison") == LIMIT and started.count("behind") == 1, started
        if not isinstance(back, RedisWorkManager):
            assert started[-1] == "behind"
        [letter] = back.dead_letters()
        assert letter.id == "poison" and letter.type == "Crash"
        assert f"killed its process {LIMIT} times" in letter.error
        assert f"max_recoveries={LIMIT}" in letter.error
        # The dead nodes' running Works are not counted once their heartbeats are stale.
        assert wait_for(lambda: back.metrics(QUEUE).as_tuple() == (0, 0, 2, 0), 30), back.metrics(QUEUE)
    finally:
        back.shutdown(10)


@pytest.mark.parametrize("url", ["local-nostate"], indirect=True)
def test_without_state_a_crash_does_not_bury_the_works_behind(url: str, tmp_path: Path) -> None:
    """Without the state a first count may be of a reader that died before starting the record:
    with ``max_recoveries=0`` (as 1) the Works read after the poison one are not dead-lettered
    after one crash, and the poison one is after its second death (the least without state)."""
    path = tmp_path / "runs.log"
    behind = [f"behind{i}" for i in range(3)]
    front = client(url).start()
    try:
        poison = Crash(id="poison", path=str(path))
        poison.set_document("default", "doc-1")
        front.schedule(poison)
        for work_id in behind:
            work = Crash(id=work_id, path=str(path), die=False)
            work.set_document("default", "doc-1")
            front.schedule(work)
    finally:
        assert front.shutdown(10)
    back = client(url)
    try:
        exits: list[int] = []
        for _ in range(4):
            proc = spawn(url, 0)
            try:
                assert wait_for(lambda p=proc: p.poll() is not None or set(behind) <= set(runs(path)), 90)
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    assert proc.wait(30) == 0
            exits.append(proc.returncode)
            if proc.returncode == 0:
                break
        assert exits == [-signal.SIGKILL] * 2 + [0], exits
        assert sorted(runs(path)) == sorted(["poison", "poison", *behind]), runs(path)
        assert [
            (letter.id, "killed its process 2 times" in letter.error) for letter in back.dead_letters()
        ] == [("poison", True)]
    finally:
        back.shutdown(10)
