"""The Bulk Service on a node, on Kafka, on PostgreSQL and MariaDB, and at 10,000 documents."""
# ruff: noqa: SIM117

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor
from conveyor.bulk import BulkCommand, BulkService, BulkState
from conveyor.kv import KeyValueStore, open_kv_store
from conveyor.log import open_log_manager
from conveyor.repository import Repository, open_repository
from conveyor.transient import TransientStore
from tests.bulk.conftest import import_docs


def _check_all_actions(service: BulkService, repo: Repository, n: int) -> None:
    def run(command: BulkCommand) -> None:
        assert service.wait(service.submit(command), 300), service.status(command.id)
        status = service.status(command.id)
        assert status.state is BulkState.COMPLETED and status.error_count == 0
        assert status.processed == status.total

    run(
        BulkCommand(
            "setProperties", "SELECT * FROM File", params={"dc:source": "x"}, bucket_size=200, batch_size=100
        )
    )
    assert repo.count("SELECT * FROM File WHERE dc:source = 'x'") == n
    run(BulkCommand("trash", "SELECT * FROM File WHERE demo:index < 6000", bucket_size=200, batch_size=100))
    assert repo.count("SELECT * FROM File WHERE ecm:isTrashed = 1") == min(n, 6000)
    run(BulkCommand("untrash", "SELECT * FROM File WHERE demo:index < 1000", bucket_size=200, batch_size=100))
    assert repo.count("SELECT * FROM File WHERE ecm:isTrashed = 1") == min(n, 6000) - min(n, 1000)
    export = BulkCommand("csvExport", "SELECT * FROM File", params={"columns": ["ecm:uuid", "demo:index"]})
    run(export)
    assert service.result(export.id)["count"] == n
    run(BulkCommand("delete", "SELECT * FROM File WHERE ecm:isTrashed = 1", bucket_size=200, batch_size=100))
    assert repo.count("SELECT * FROM File") == n - (min(n, 6000) - min(n, 1000))


def test_node_bulk_service(tmp_path: Path) -> None:
    with Conveyor.from_config({"node": {"data_dir": str(tmp_path)}}) as node:
        import_docs(node.repository, 300)
        service = node.bulk_service
        command_id = service.submit(
            BulkCommand("setProperties", "SELECT * FROM File", params={"dc:source": "node"})
        )
        assert service.wait(command_id, 60)
        assert node.repository.count("SELECT * FROM File WHERE dc:source = 'node'") == 300


def test_node_submit_only(tmp_path: Path) -> None:
    config = {"node": {"data_dir": str(tmp_path)}, "bulk": {"processing": False}}
    with Conveyor.from_config(config) as node:
        assert node.bulk_service.processor is None


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[KeyValueStore, TransientStore]]:
    kv = open_kv_store(f"sqlite:///{tmp_path}/kv.db", "bulk")
    tkv = open_kv_store(f"sqlite:///{tmp_path}/kv.db", "transient_bulk")
    yield kv, TransientStore("bulk", tkv, tmp_path / "blobs")
    tkv.close()
    kv.close()


@pytest.mark.kafka
def test_kafka(
    kafka_bootstrap: str, unique: str, tmp_path: Path, stores: tuple[KeyValueStore, TransientStore]
) -> None:
    kv, transient = stores
    with open_log_manager(f"kafka://{kafka_bootstrap}?prefix={unique}-", default_codec="json") as logs:
        with open_repository(f"sqlite:///{tmp_path}/repo.db") as repo:
            import_docs(repo, 1000)
            with BulkService(logs, kv, repo, transient) as service:
                command_id = service.submit(
                    BulkCommand("setProperties", "SELECT * FROM File", params={"dc:source": "kafka"})
                )
                assert service.wait(command_id, 120), service.status(command_id)
                assert service.status(command_id).processed == 1000
                assert repo.count("SELECT * FROM File WHERE dc:source = 'kafka'") == 1000


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("postgresql", marks=pytest.mark.postgresql),
        pytest.param("mysql", id="mariadb", marks=pytest.mark.mysql),
    ],
)
def test_server_database(
    backend: str, request: pytest.FixtureRequest, unique: str, stores: tuple[KeyValueStore, TransientStore]
) -> None:
    kv, transient = stores
    repo = open_repository(request.getfixturevalue(f"{backend}_url"), table_prefix=f"{unique}_")
    try:
        import_docs(repo, 2000)
        with open_log_manager(f"memory://{unique}", default_codec="json") as logs:
            with BulkService(logs, kv, repo, transient) as service:
                _check_all_actions(service, repo, 2000)
                sql = BulkCommand(
                    "setProperties",
                    f"SELECT id FROM {repo.table_name} WHERE type = 'File'",
                    params={"dc:source": "sql"},
                    scroller="sql",
                )
                assert service.wait(service.submit(sql), 60), service.status(sql.id)
                assert service.status(sql.id).processed == repo.count("SELECT * FROM File") == 1000
                assert repo.count("SELECT * FROM File WHERE dc:source = 'sql'") == 1000
    finally:
        repo.drop()


@pytest.mark.slow
def test_10k_documents_every_action(tmp_path: Path, stores: tuple[KeyValueStore, TransientStore]) -> None:
    kv, transient = stores
    with open_log_manager(f"local://{tmp_path}/log", default_codec="json") as logs:
        with open_repository(f"sqlite:///{tmp_path}/repo.db") as repo:
            import_docs(repo, 10_000)
            with BulkService(logs, kv, repo, transient) as service:
                _check_all_actions(service, repo, 10_000)
