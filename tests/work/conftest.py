"""Fixtures: a factory of WorkManagers for each implementation, isolated per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.kv import open_kv_store
from conveyor.log import open_log_manager
from conveyor.work import QueueConfig, WorkManager, open_work_manager
from conveyor.work.stream_state import LocalKV
from tests.services import kafka_log_url

IMPLS = [
    "threads",
    "redis",
    "stream",
    "stream-local",
    "stream-local-stateless",
    # A Kafka group join takes seconds on tansu: about 2.5 s a test, a minute for the suite.
    pytest.param("stream-kafka", marks=[pytest.mark.kafka, pytest.mark.slow]),
]

QUEUES = (
    QueueConfig("notes", max_threads=2, categories=("notes",)),
    QueueConfig("slow", max_threads=3, categories=("slow",)),
    QueueConfig("steps", max_threads=2, categories=("steps",)),
)

Factory = Callable[..., WorkManager]


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> str:
    """The implementation under test."""
    return str(request.param)


@pytest.fixture
def work_url(impl: str, request: pytest.FixtureRequest, unique: str) -> str:
    """The URL of the implementation, isolated by a unique Redis key prefix."""
    if impl == "redis":
        redis_url = request.getfixturevalue("redis_url")
        return f"{redis_url}?prefix=test:{unique}:&heartbeat_timeout=2"
    if impl in ("stream", "stream-local", "stream-local-stateless", "stream-kafka"):
        return impl
    return "threads://"


@pytest.fixture
def make_wm(work_url: str, unique: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Factory]:
    """Build managers (started ones are shut down, Redis keys purged, at teardown).

    Stream managers of one test share one log and one state store, as the nodes of a cluster
    (or a node and its restart) would: ``memory://`` and an in-process store for ``stream``, the
    persistent ``local://`` log and an SQLite store for ``stream-local``, a Kafka log (the
    ``kafka_bootstrap`` broker, topics under a prefix of this test) and an SQLite store for
    ``stream-kafka``. ``stream-local-stateless`` is ``stream-local`` with ``store_state=False``.
    """
    made: list[WorkManager] = []
    kv: Any = LocalKV()
    log = None
    stateless = work_url.endswith("-stateless")
    work_url = work_url.removesuffix("-stateless")
    if work_url == "stream":
        log = open_log_manager("memory://")
    elif work_url == "stream-local":
        log = open_log_manager(f"local://{tmp_path}/log")
        kv = open_kv_store(f"sqlite:///{tmp_path}/kv.db", "work")
        work_url = "stream"
    elif work_url == "stream-kafka":
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        log = open_log_manager(kafka_log_url(bootstrap, unique))
        kv = open_kv_store(f"sqlite:///{tmp_path}/kv.db", "work")
        work_url = "stream"

    def factory(queues: Any = QUEUES, **options: Any) -> WorkManager:
        options.setdefault("retry_delay", 0.01)
        if log is not None:
            options.setdefault("log_manager", log)
            options.setdefault("kv", kv)
            options.setdefault("poll_interval", 0.05)
        if stateless:
            options.setdefault("store_state", False)
        wm = open_work_manager(work_url, queues=queues, **options)
        made.append(wm)
        return wm

    yield factory
    for wm in made:
        wm.shutdown(5)
    if made and hasattr(made[0], "purge"):
        made[0].purge()
    if log is not None:
        log.close()
    if hasattr(kv, "close"):
        kv.close()


@pytest.fixture
def wm(make_wm: Factory) -> WorkManager:
    """A started manager with the test queues."""
    return make_wm().start()
