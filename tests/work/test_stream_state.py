"""The stream WorkManager's state store: guessed compare-and-sets and counts kept back."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.work.stream_state import LocalKV, WorkStateStore, WorkStatus


class CountingKV(LocalKV):
    """A LocalKV counting reads and compare-and-sets (and how many of those failed)."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = self.sets = self.failed = 0

    def get(self, key: str) -> Any:
        self.gets += 1
        return super().get(key)

    def compare_and_set(self, key: str, expected: Any, value: Any, ttl: float | None = None) -> bool:
        self.sets += 1
        ok = super().compare_and_set(key, expected, value, ttl)
        self.failed += not ok
        return ok


def scheduled(token: str = "t1") -> WorkStatus:
    return WorkStatus("q", [token], {}, b"work")


def claim(token: str) -> Any:
    def change(st: WorkStatus | None) -> tuple[Any, str]:
        if st is None or token not in st.waiting:
            return WorkStateStore.KEEP, "skip"
        st.waiting.remove(token)
        st.running[token] = "me"
        st.data = None
        return st, "run"

    return change


@pytest.fixture
def kv() -> CountingKV:
    return CountingKV()


def test_a_right_guess_costs_one_compare_and_set(kv: CountingKV) -> None:
    writer = WorkStateStore(kv)
    writer.update("w1", lambda st: (scheduled(), None), guess=None)
    reader = WorkStateStore(kv)  # another node: remembers nothing of w1
    kv.gets = kv.sets = kv.failed = 0
    assert reader.update("w1", claim("t1"), guess=scheduled()) == "run"
    assert (kv.gets, kv.sets, kv.failed) == (0, 1, 0)
    # The release is guessed from what the claim wrote.
    assert reader.update("w1", lambda st: (None, "released")) == "released"
    assert (kv.gets, kv.sets, kv.failed) == (0, 2, 0)
    assert reader.status("w1") is None


def test_a_wrong_guess_never_decides(kv: CountingKV) -> None:
    store = WorkStateStore(kv)
    store.update("w1", lambda st: (scheduled(), None), guess=None)
    other = WorkStateStore(kv)
    other.update("w1", lambda st: (None, None))  # canceled by another node meanwhile
    fresh = WorkStateStore(kv)
    kv.gets = kv.sets = kv.failed = 0
    # The guess says the copy is waiting; the store says it is gone: the Work must be skipped.
    assert fresh.update("w1", claim("t1"), guess=scheduled()) == "skip"
    assert kv.failed == 1 and kv.gets == 1
    assert fresh.status("w1") is None


def test_a_stale_remembered_value_is_read_again(kv: CountingKV) -> None:
    store = WorkStateStore(kv)
    store.update("w1", lambda st: (scheduled("t1"), None), guess=None)
    other = WorkStateStore(kv)
    other.update("w1", lambda st: (WorkStatus("q", [*st.waiting, "t2"], {}, b"work"), None))  # type: ignore[union-attr]
    assert store.update("w1", claim("t2")) == "run"  # its remembered value lacks t2: read again
    status = store.status("w1")
    assert status is not None and status.waiting == ["t1"] and status.running == {"t2": "me"}


def test_keep_from_a_guess_is_checked_by_a_read(kv: CountingKV) -> None:
    store = WorkStateStore(kv)
    store.update("w1", lambda st: (scheduled("t1"), None), guess=None)
    reader = WorkStateStore(kv)
    kv.gets = 0
    # A guess of "no state" would make the claim skip; the real state makes it run.
    assert reader.update("w1", claim("t1"), guess=None) == "run"
    assert kv.gets == 1


def test_counts_kept_back_are_seen_here_and_written_by_flush(kv: CountingKV) -> None:
    here, there = WorkStateStore(kv), WorkStateStore(kv)
    here.add_later("q", "completed", 2)
    here.add_later("q", "completed", 1)
    assert here.count("q", "completed") == 3
    assert there.count("q", "completed") == 0
    here.flush()
    assert here.count("q", "completed") == 3 and there.count("q", "completed") == 3


def test_counts_survive_a_failed_flush(kv: CountingKV) -> None:
    store = WorkStateStore(kv)
    store.add_later("q", "completed", 4)
    broken = kv.add_and_get

    def fail(key: str, delta: int) -> int:
        raise ConnectionError("store down")

    kv.add_and_get = fail  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        store.flush()
    kv.add_and_get = broken  # type: ignore[method-assign]
    assert store.count("q", "completed") == 4  # still kept here
    store.flush()
    assert WorkStateStore(kv).count("q", "completed") == 4  # written once, not twice
