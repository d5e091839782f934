"""The SQLite repository on a full disk: a storage error naming the file, not "backend down"."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.errors import QueryError, StorageFullError
from conveyor.repository import open_repository


def test_sqlite_repository_on_a_full_disk_raises_storage_full_then_resumes(
    small_tmpfs: Callable[[int], Path],
) -> None:
    disk = small_tmpfs(1024)
    filler = disk / "filler"
    filler.write_bytes(b"\0" * 512 * 1024)
    path = disk / "repository.db"
    created: list[str] = []
    with open_repository(f"sqlite:///{path}") as repo:
        with pytest.raises(StorageFullError) as info:
            for i in range(10_000):
                repo.create("File", f"d{i}", "/full", properties={"blob": os.urandom(1500).hex()})
                created.append(f"d{i}")
        error = info.value
        assert not isinstance(error, QueryError) and error.retriable
        assert error.path == str(path)
        assert "repository" in str(error) and "is full" in str(error)
        assert len(created) > 5
        assert sorted(d.name for d in repo.query("SELECT * FROM File")) == sorted(created)

        filler.unlink()
        repo.create("File", "after", "/full")
        assert repo.count("SELECT * FROM File") == len(created) + 1
