"""Bulk fixtures: a repository with documents, logs (memory, local, Kafka), a KV store, a transient store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor.bulk import BulkService
from conveyor.kv import KeyValueStore, open_kv_store
from conveyor.log import LogManager, open_log_manager
from conveyor.repository import Repository, open_repository
from conveyor.transient import TransientStore
from tests.services import kafka_log_url

LOGS = ["memory", "local", pytest.param("kafka", marks=[pytest.mark.kafka, pytest.mark.slow])]
CODEC = "json"


def import_docs(repo: Repository, count: int, folder: str = "/docs") -> int:
    """``count`` File documents under ``folder`` with ``demo:index`` 0..count-1."""
    return repo.import_documents(
        {
            "type": "File",
            "name": f"d{i}",
            "parent_path": folder,
            "properties": {"demo:index": i, "dc:title": f"doc {i}"},
        }
        for i in range(count)
    )


@pytest.fixture(params=LOGS)
def log_url(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> str:
    """A fresh log storage on the backend under test."""
    if request.param == "memory":
        return f"memory://{unique}"
    if request.param == "kafka":
        return kafka_log_url(request.getfixturevalue("kafka_bootstrap"), unique)
    return f"local://{tmp_path}/log"


@pytest.fixture
def log_manager(log_url: str) -> Iterator[LogManager]:
    manager = open_log_manager(log_url, default_codec=CODEC)
    yield manager
    manager.close()


@pytest.fixture
def kv(tmp_path: Path) -> Iterator[KeyValueStore]:
    store = open_kv_store(f"sqlite:///{tmp_path}/kv.db", "bulk")
    yield store
    store.close()


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    repository = open_repository(f"sqlite:///{tmp_path}/repository.db")
    yield repository
    repository.close()


@pytest.fixture
def transient(tmp_path: Path) -> Iterator[TransientStore]:
    kv_store = open_kv_store(f"sqlite:///{tmp_path}/kv.db", "transient_bulk")
    store = TransientStore("bulk", kv_store, tmp_path / "blobs")
    yield store
    store.close()
    kv_store.close()


ServiceFactory = Callable[..., BulkService]


@pytest.fixture
def make_service(
    log_manager: LogManager, kv: KeyValueStore, repo: Repository, transient: TransientStore
) -> Iterator[ServiceFactory]:
    """Build (and start) bulk services on the shared stores; all closed after the test."""
    services: list[BulkService] = []

    def factory(**options: object) -> BulkService:
        service = BulkService(log_manager, kv, repo, transient, **options)  # type: ignore[arg-type]
        services.append(service)
        service.start()
        # Threads joining the group one by one rebalance it; a bucket processed before that and
        # not yet checkpointed is processed again by its new owner (at-least-once). Tests that
        # count exact action calls start once the group is stable.
        if service.processor is not None:
            assert service.processor.wait_for_assignments(30)
        return service

    yield factory
    for service in services:
        assert service.close(10)


@pytest.fixture
def service(make_service: ServiceFactory) -> BulkService:
    return make_service()
