"""One undecodable entry in the dead letters never hides the others (issue 14, item 6).

Raw bytes that are not a dead letter are written where the WorkManager keeps its dead letters
(the ``work/dlq`` log, or the Redis list): the listing shows the good letters and the damaged
entry, marked, and ``rerun_failed`` re-runs the good ones and keeps the damaged one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor.codec import BytesCodec
from conveyor.kv import open_kv_store
from conveyor.log import LogManager, open_log_manager
from conveyor.work import WorkManager, open_work_manager
from conveyor.work.dlq import DLQ_STREAM
from tests.work.works import RUNS, Flaky

# Not a dead letter: bytes that are no JSON, JSON nested far too deep, JSON of the wrong shape.
DAMAGED = [b"\xff\x00 not a dead letter", b"[" * 100_000, b'{"id": "w-salvaged", "queue": 5}']


def _damaged(letter: object) -> bool:
    return bool(getattr(letter, "damaged", False))  # a DamagedDeadLetter


def _wait(check: Callable[[], bool], timeout: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


@pytest.fixture(params=["threads", "stream", "redis"])
def setup(
    request: pytest.FixtureRequest, tmp_path: Path, unique: str
) -> Iterator[tuple[WorkManager, Callable[[bytes], None]]]:
    """A started WorkManager and a function writing raw bytes where it keeps its dead letters."""
    log: LogManager | None = None
    kv = None
    if request.param == "redis":
        url = f"{request.getfixturevalue('redis_url')}?prefix=test:{unique}:"
        wm = open_work_manager(url, retry_delay=0.0)
    else:
        log = open_log_manager(f"local://{tmp_path}/log")
        options: dict[str, object] = {"log_manager": log, "retry_delay": 0.0}
        if request.param == "stream":
            kv = open_kv_store(f"sqlite:///{tmp_path}/kv.db", "work")
            options |= {"kv": kv, "poll_interval": 0.05}
        wm = open_work_manager("threads://" if request.param == "threads" else "stream", **options)
    wm.start()

    def write_raw(data: bytes) -> None:
        if log is None:
            client = wm._r  # type: ignore[attr-defined]
            client.rpush(wm.keys.dlq, data)  # type: ignore[attr-defined]
        else:
            log.create_if_not_exists(DLQ_STREAM, 1)
            log.appender(DLQ_STREAM, codec=BytesCodec()).append("default:damaged", data)

    try:
        yield wm, write_raw
    finally:
        wm.shutdown(5)
        if hasattr(wm, "purge"):
            wm.purge()
        if log is not None:
            log.close()
        if kv is not None:
            kv.close()


def test_a_damaged_dead_letter_is_listed_marked_and_kept(
    setup: tuple[WorkManager, Callable[[bytes], None]], unique: str
) -> None:
    wm, write_raw = setup
    wm.schedule(Flaky(token=unique, failures=100), after_commit=False)
    _wait(lambda: len(wm.dead_letters()) == 1)
    for data in DAMAGED:
        write_raw(data)
    wm.schedule(Flaky(token=unique + "-2", failures=100), after_commit=False)
    _wait(lambda: len(wm.dead_letters()) == 2 + len(DAMAGED))

    letters = wm.dead_letters()
    good = [x for x in letters if not _damaged(x)]
    damaged = [x for x in letters if _damaged(x)]
    assert [x.type for x in good] == ["Flaky", "Flaky"]
    assert all("flaky failure 3" in x.error for x in good)
    assert len(damaged) == len(DAMAGED)
    assert [x.data for x in damaged] == DAMAGED
    for letter in damaged:
        assert letter.error.startswith(f"undecodable dead letter ({len(letter.data)} bytes at ")
        assert letter.position
    assert damaged[-1].id == "w-salvaged"  # what could still be read of it
    assert damaged[0].id == "?"

    # the good letters are re-run (and fail again), the damaged ones skipped and kept as they were
    assert wm.rerun_failed() == 2
    _wait(lambda: len([x for x in wm.dead_letters() if not _damaged(x)]) == 2)
    after = wm.dead_letters()
    assert sorted(x.data for x in after if _damaged(x)) == sorted(DAMAGED)
    assert len(RUNS[unique]) == 6
