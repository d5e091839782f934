"""The WorkManager built by a node from its ``[work]`` settings."""

from __future__ import annotations

from pathlib import Path

import pytest

import conveyor
from conveyor import Conveyor
from conveyor.errors import ConfigurationError
from conveyor.work.stream import StreamWorkManager, queue_log
from tests.work.works import RUNS, Note


def config(tmp_path: Path, url: str) -> dict[str, object]:
    return {
        "node": {"id": "node-under-test", "data_dir": str(tmp_path)},
        "work": {
            "url": url,
            "queues": [{"id": "notes", "max_threads": 2, "categories": ["notes"]}],
            "processing": {"*": False, "notes": True},
        },
    }


def test_node_builds_its_work_manager_from_settings(tmp_path: Path, unique: str) -> None:
    node = Conveyor.from_config(config(tmp_path, "threads://"))
    wm = node.work_manager
    assert wm.node_id == "node-under-test"
    assert wm.queue_ids() == ["notes", "default"]
    assert wm.is_processing_enabled("notes") and not wm.is_processing_enabled("default")
    wm.start()
    try:
        with conveyor.transaction():
            wm.schedule(Note(token=unique, value=1))
        assert wm.await_completion("notes", timeout=10)
        assert [v for v, _ in RUNS[unique]] == [1]
    finally:
        assert wm.shutdown(5)


@pytest.mark.redis
def test_node_with_redis_work_url(tmp_path: Path, unique: str, redis_url: str) -> None:
    node = Conveyor.from_config(config(tmp_path, f"{redis_url}?prefix=test:{unique}:"))
    wm = node.work_manager.start()
    try:
        wm.schedule(Note(token=unique, value=2))
        assert wm.await_completion("notes", timeout=10)
        assert [v for v, _ in RUNS[unique]] == [2]
    finally:
        wm.shutdown(5)
        wm.purge()  # type: ignore[attr-defined]


def test_node_default_stream_work_manager(tmp_path: Path, unique: str) -> None:
    settings = config(tmp_path, "stream")
    settings["log"] = {"url": f"memory://{unique}"}
    node = Conveyor.from_config(settings)
    wm = node.work_manager
    assert isinstance(wm, StreamWorkManager)
    assert wm.node_id == "node-under-test"
    wm.start()
    try:
        with conveyor.transaction():
            wm.schedule(Note(token=unique, value=3))
            assert wm.metrics("notes").scheduled == 0
        assert wm.await_completion("notes", timeout=10)
        assert [v for v, _ in RUNS[unique]] == [3]
        assert node.log_manager.exists(queue_log("notes"))
    finally:
        assert wm.shutdown(5)
        node.log_manager.close()


def test_node_stream_work_manager_without_state(tmp_path: Path, unique: str) -> None:
    settings = config(tmp_path, "stream://?store_state=false")
    settings["log"] = {"url": f"memory://{unique}"}
    node = Conveyor.from_config(settings)
    wm = node.work_manager
    assert isinstance(wm, StreamWorkManager) and wm.store_state is False
    try:
        with conveyor.transaction():
            wm.schedule(Note(id="n", token=unique, value=4))
        assert wm.metrics("notes").scheduled == 1  # waiting in the log (not started yet)
        # No per-Work state key (with the state, "w:n" would hold the waiting copy now).
        assert not list(node.kv_store("work").keys("w:"))
        wm.start()
        assert wm.await_completion("notes", timeout=10)
        assert [v for v, _ in RUNS[unique]] == [4]
        assert wm.metrics("notes").as_tuple() == (0, 0, 1, 0)
    finally:
        assert wm.shutdown(5)
        node.log_manager.close()


def test_node_with_an_unknown_work_url_is_a_clear_error(tmp_path: Path) -> None:
    node = Conveyor.from_config(config(tmp_path, "carrier-pigeon://"))
    with pytest.raises(ConfigurationError, match="carrier-pigeon"):
        node.work_manager  # noqa: B018
