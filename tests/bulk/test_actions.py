"""Every built-in action over 10,000 documents: exact repository state and status counts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from conveyor.bulk import BulkCommand, BulkService, BulkState, BulkStatus
from conveyor.bulk.computations import decode_bucket_hints, encode_bucket
from conveyor.errors import BulkError
from conveyor.repository import Repository
from tests.bulk.conftest import import_docs

N = 10_000


def run(service: BulkService, command: BulkCommand, timeout: float = 120) -> BulkStatus:
    """Submit ``command``, wait until it is done and return its final status."""
    command_id = service.submit(command)
    assert service.wait(command_id, timeout), service.status(command_id)
    return service.status(command_id)


def assert_completed(status: BulkStatus, total: int) -> None:
    """The command completed without error, every one of its ``total`` documents processed."""
    assert (status.state, status.total, status.processed, status.error_count) == (
        BulkState.COMPLETED,
        total,
        total,
        0,
    ), status


def by_index(repo: Repository, fields: str) -> dict[int, dict[str, Any]]:
    """The selected ``fields`` of every File, keyed by ``demo:index``."""
    rows = repo.query_and_fetch(f"SELECT demo:index, {fields} FROM File")
    return {row["demo:index"]: row for row in rows}


def trashed(repo: Repository) -> set[int]:
    """The ``demo:index`` of every trashed File."""
    return {
        row["demo:index"]
        for row in repo.query_and_fetch("SELECT demo:index FROM File WHERE ecm:isTrashed = 1")
    }


def test_set_properties(service: BulkService, repo: Repository) -> None:
    import_docs(repo, N)
    command = BulkCommand(
        "setProperties",
        "SELECT * FROM File WHERE demo:index >= 2500",
        params={"dc:source": "bulk", "dc:title": None},
    )
    status = run(service, command)
    assert_completed(status, N - 2500)
    rows = by_index(repo, "dc:source, dc:title")
    assert rows.keys() == set(range(N))
    for i, row in rows.items():
        expected = ("bulk", None) if i >= 2500 else (None, f"doc {i}")
        assert (row["dc:source"], row["dc:title"]) == expected, row
    assert status.submit_time and status.scroll_start_time and status.scroll_end_time
    assert status.processing_start_time and status.completed_time
    assert status.submit_time <= status.scroll_start_time <= status.completed_time


def test_trash_untrash_delete(service: BulkService, repo: Repository) -> None:
    import_docs(repo, N)
    assert_completed(run(service, BulkCommand("trash", "SELECT * FROM File WHERE demo:index < 7500")), 7500)
    assert trashed(repo) == set(range(7500))
    untrash = BulkCommand("untrash", "SELECT * FROM File WHERE ecm:isTrashed = 1 AND demo:index < 1500")
    assert_completed(run(service, untrash), 1500)
    assert trashed(repo) == set(range(1500, 7500))
    # trash with value False untrashes too
    untrash_by_trash = BulkCommand(
        "trash",
        "SELECT * FROM File WHERE demo:index >= 1500 AND demo:index < 2000",
        params={"value": False},
    )
    assert_completed(run(service, untrash_by_trash), 500)
    assert trashed(repo) == set(range(2000, 7500))
    delete = BulkCommand(
        "delete", "SELECT * FROM File WHERE ecm:isTrashed = 1", bucket_size=50, batch_size=10
    )
    assert_completed(run(service, delete), 5500)
    assert by_index(repo, "ecm:isTrashed").keys() == set(range(2000)) | set(range(7500, N))
    assert trashed(repo) == set()


def test_delete_folders_takes_children(service: BulkService, repo: Repository) -> None:
    import_docs(repo, 300, "/a/x")
    import_docs(repo, 200, "/b")
    run(service, BulkCommand("delete", "SELECT * FROM Folder WHERE ecm:name = 'a'"))
    assert repo.count("SELECT * FROM Document WHERE ecm:path STARTSWITH '/a'") == 0
    assert repo.count("SELECT * FROM File") == 200


def test_empty_query_completes(service: BulkService, repo: Repository) -> None:
    import_docs(repo, 10)
    command = BulkCommand("setProperties", "SELECT * FROM File WHERE demo:index > 100", params={"dc:x": 1})
    run(service, command)
    status = service.status(command.id)
    assert (status.state, status.total, status.processed) == (BulkState.COMPLETED, 0, 0)


def test_query_limit(service: BulkService, repo: Repository) -> None:
    import_docs(repo, 500)
    command = BulkCommand(
        "setProperties", "SELECT * FROM File", params={"dc:x": 1}, query_limit=120, bucket_size=50
    )
    run(service, command)
    status = service.status(command.id)
    assert (status.total, status.processed, status.query_limit_reached) == (120, 120, True)
    assert repo.count("SELECT * FROM File WHERE dc:x = 1") == 120


def test_buckets_carry_storage_hints(
    service: BulkService, repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    import_docs(repo, 2500)
    seen: list[tuple[list[str], Mapping[str, Any] | None]] = []
    original = Repository.set_properties

    def spy(self: Repository, ids: Any, properties: Any, hints: Mapping[str, Any] | None = None) -> int:
        seen.append((list(ids), hints))
        return original(self, ids, properties, hints=hints)

    monkeypatch.setattr(Repository, "set_properties", spy)
    command = BulkCommand(
        "setProperties", "SELECT * FROM File WHERE demo:index >= 100", params={"dc:source": "h", "x:n": [1]}
    )
    assert_completed(run(service, command), 2400)
    rowids = {
        i: h
        for ids, hints in repo.scroll_with_hints("SELECT * FROM File")
        for i, h in zip(ids, hints or [], strict=True)
    }
    assert seen and sum(len(ids) for ids, _ in seen) >= 2400
    for ids, hints in seen:  # the scroller's rowids (SQLite), by id
        assert hints is not None and all(hints[i] == rowids[i] for i in ids)
    rows = by_index(repo, "dc:source, x:n, dc:title")
    for i, row in rows.items():
        expected = ("h", [1], f"doc {i}") if i >= 100 else (None, None, f"doc {i}")
        assert (row["dc:source"], row["x:n"], row["dc:title"]) == expected, row
    # a scroller without hints (the ids listed): buckets without them, changed by id
    seen.clear()
    ids = repo.query_ids("SELECT * FROM File WHERE demo:index < 100")
    listed = BulkCommand("setProperties", ",".join(ids), scroller="list", params={"dc:source": "l"})
    assert_completed(run(service, listed), 100)
    assert seen and all(hints is None for _, hints in seen)
    assert repo.count("SELECT * FROM File WHERE dc:source = 'l'") == 100


def test_bucket_records_with_and_without_hints() -> None:
    old = b'{"commandId":"c","bucket":3,"ids":["a","b"]}'  # written before hints existed
    assert decode_bucket_hints(old) == ("c", 3, ["a", "b"], None)
    new = encode_bucket("c", 4, ["a", "b"], [7, 9])
    assert decode_bucket_hints(new) == ("c", 4, ["a", "b"], {"a": 7, "b": 9})
    assert decode_bucket_hints(encode_bucket("c", 5, ["a"])) == ("c", 5, ["a"], None)
    with pytest.raises(BulkError):
        decode_bucket_hints(b'{"commandId":"c","bucket":3,"ids":["a","b"],"hints":[1]}')
