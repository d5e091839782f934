"""Every built-in action over a few thousand documents: exact repository state and counts."""

from __future__ import annotations

from conveyor.bulk import BulkCommand, BulkService, BulkState
from conveyor.repository import Repository
from tests.bulk.conftest import import_docs

N = 2000


def run(service: BulkService, command: BulkCommand, timeout: float = 60) -> None:
    command_id = service.submit(command)
    assert service.wait(command_id, timeout), service.status(command_id)


def test_set_properties(service: BulkService, repo: Repository) -> None:
    import_docs(repo, N)
    command = BulkCommand(
        "setProperties",
        "SELECT * FROM File WHERE demo:index >= 500",
        params={"dc:source": "bulk", "dc:title": None},
    )
    run(service, command)
    status = service.status(command.id)
    assert status.state is BulkState.COMPLETED
    assert (status.total, status.processed, status.error_count) == (N - 500, N - 500, 0)
    assert repo.count("SELECT * FROM File WHERE dc:source = 'bulk'") == N - 500
    assert repo.count("SELECT * FROM File WHERE dc:title IS NULL") == N - 500
    assert repo.count("SELECT * FROM File WHERE dc:source IS NULL AND dc:title IS NOT NULL") == 500
    assert status.submit_time and status.scroll_start_time and status.scroll_end_time
    assert status.processing_start_time and status.completed_time
    assert status.submit_time <= status.scroll_start_time <= status.completed_time


def test_trash_untrash_delete(service: BulkService, repo: Repository) -> None:
    import_docs(repo, N)
    run(service, BulkCommand("trash", "SELECT * FROM File WHERE demo:index < 1500"))
    assert repo.count("SELECT * FROM File WHERE ecm:isTrashed = 1") == 1500
    untrash = BulkCommand("untrash", "SELECT * FROM File WHERE ecm:isTrashed = 1 AND demo:index < 300")
    run(service, untrash)
    assert service.status(untrash.id).processed == 300
    assert repo.count("SELECT * FROM File WHERE ecm:isTrashed = 1") == 1200
    run(service, BulkCommand("trash", "SELECT * FROM File WHERE demo:index < 100", params={"value": False}))
    assert repo.count("SELECT * FROM File WHERE ecm:isTrashed = 1") == 1200
    delete = BulkCommand(
        "delete", "SELECT * FROM File WHERE ecm:isTrashed = 1", bucket_size=50, batch_size=10
    )
    run(service, delete)
    status = service.status(delete.id)
    assert (status.total, status.processed, status.error_count) == (1200, 1200, 0)
    assert repo.count("SELECT * FROM File") == N - 1200
    assert repo.count("SELECT * FROM File WHERE ecm:isTrashed = 1") == 0


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
