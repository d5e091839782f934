"""The SQLite key-value store on a full disk: a clear retriable error, nothing acknowledged lost, resume."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.errors import BackendUnavailableError, StorageError, StorageFullError
from conveyor.kv import open_kv_store
from tests.services import fill_disk


def test_sqlite_kv_on_a_full_disk_raises_storage_full_then_resumes(
    small_tmpfs: Callable[[int], Path],
) -> None:
    disk = small_tmpfs(2048)
    filler = disk / "filler"
    filler.write_bytes(b"\0" * 768 * 1024)  # freed below to give space back
    path = disk / "kv.db"
    kv = open_kv_store(f"sqlite:///{path}", "fills")
    acknowledged: dict[str, bytes] = {}
    try:
        with pytest.raises(StorageFullError) as info:
            for i in range(10_000):
                key, value = f"k{i:05d}", os.urandom(3000)
                kv.put(key, value)
                acknowledged[key] = value
        refused = f"k{len(acknowledged):05d}"
        error = info.value
        # Retriable and named: the store, the URL and the database file; not "backend failed".
        assert isinstance(error, StorageError) and isinstance(error, BackendUnavailableError)
        assert error.retriable
        assert error.path == str(path)
        assert "key-value store 'fills'" in str(error) and "is full" in str(error)
        assert "failed:" not in str(error)
        assert len(acknowledged) > 10
        # Still full: reads work, every acknowledged put is there, the refused one is not.
        assert kv.get_many(list(acknowledged)) == acknowledged
        assert kv.get(refused) is None
        with pytest.raises(StorageFullError):
            kv.put("bigger", os.urandom(64 * 1024))

        filler.unlink()  # space is back: puts resume
        more = {f"m{i:03d}": os.urandom(3000) for i in range(20)}
        for key, value in more.items():
            kv.put(key, value)
        kv.put(refused, b"now")
        assert kv.get_many(list(acknowledged) + list(more)) == acknowledged | more
        assert kv.get(refused) == b"now"
    finally:
        kv.close()
    with open_kv_store(f"sqlite:///{path}", "fills") as again:  # and it is all on disk
        assert again.get_many(list(acknowledged)) == acknowledged
        assert again.keys("m") == set(more)


def test_opening_a_sqlite_kv_store_on_a_full_disk_raises_storage_full(
    small_tmpfs: Callable[[int], Path],
) -> None:
    disk = small_tmpfs(256)
    fill_disk(disk)
    with pytest.raises(StorageFullError) as info:
        open_kv_store(f"sqlite:///{disk / 'kv.db'}", "fills")
    assert info.value.path == str(disk / "kv.db") and "key-value database" in str(info.value)
    (disk / "filler").unlink()
    with open_kv_store(f"sqlite:///{disk / 'kv.db'}", "fills") as kv:
        kv.put("k", "v")
        assert kv.get_str("k") == "v"
