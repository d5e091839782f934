"""Two processes share one command; kill -9 of one mid-command still completes it (slow).

On the local log and on Kafka; the KV store and the repository are SQLite files the processes share.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.bulk import BulkCommand, BulkService, BulkState
from conveyor.kv import open_kv_store
from conveyor.log import open_log_manager
from conveyor.repository import open_repository
from tests.bulk import sample_actions  # noqa: F401  (registers testSlowTag here too)
from tests.bulk.conftest import import_docs
from tests.services import kafka_log_url

ROOT = Path(__file__).resolve().parents[2]
N = 3000


@pytest.fixture(params=["local", pytest.param("kafka", marks=[pytest.mark.kafka, pytest.mark.slow])])
def cluster(
    request: pytest.FixtureRequest, tmp_path: Path, unique: str
) -> Iterator[tuple[dict[str, str], list[subprocess.Popen[bytes]]]]:
    """The URLs the worker processes share, and the processes started (stopped at teardown)."""
    if request.param == "kafka":
        log = kafka_log_url(request.getfixturevalue("kafka_bootstrap"), unique)
    else:
        log = f"local://{tmp_path}/log"
    urls = {
        "log": log,
        "kv": f"sqlite:///{tmp_path}/kv.db",
        "repo": f"sqlite:///{tmp_path}/repo.db",
        "stop": str(tmp_path / "stop"),
    }
    procs: list[subprocess.Popen[bytes]] = []
    yield urls, procs
    Path(urls["stop"]).touch()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _spawn(urls: dict[str, str], procs: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """A worker process, once it holds partitions of the test action (the others gave some up)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.bulk.worker", urls["log"], urls["kv"], urls["repo"], urls["stop"]],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    procs.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == b"ready", line
    return proc


def _front(urls: dict[str, str]) -> tuple[BulkService, list[object]]:
    logs = open_log_manager(urls["log"], default_codec="json")
    kv = open_kv_store(urls["kv"], "bulk")
    repo = open_repository(urls["repo"])
    return BulkService(logs, kv, repo, processing=False).start(), [repo, kv, logs]


def _close(service: BulkService, resources: list[object]) -> None:
    service.close()
    for resource in resources:
        resource.close()  # type: ignore[attr-defined]


@pytest.mark.slow
def test_two_processes_share_a_command(cluster: tuple[dict[str, str], list[subprocess.Popen[bytes]]]) -> None:
    urls, procs = cluster
    with open_repository(urls["repo"]) as repo:
        import_docs(repo, N)
    _spawn(urls, procs)
    _spawn(urls, procs)
    service, resources = _front(urls)
    try:
        command_id = service.submit(BulkCommand("testSlowTag", "SELECT * FROM File", params={"delay": 0.01}))
        assert service.wait(command_id, 120)
        status = service.status(command_id)
        assert (status.state, status.total, status.processed, status.error_count) == (
            BulkState.COMPLETED,
            N,
            N,
            0,
        )
        assert service.repository is not None
        assert service.repository.count("SELECT * FROM File WHERE test:tag = 'slow'") == N
        rows = service.repository.query_and_fetch("SELECT test:pid FROM File")
        pids = {row["test:pid"] for row in rows}
        assert pids == {procs[0].pid, procs[1].pid}  # both processed buckets
    finally:
        _close(service, resources)


@pytest.mark.slow
def test_kill_one_process_midway(cluster: tuple[dict[str, str], list[subprocess.Popen[bytes]]]) -> None:
    urls, procs = cluster
    with open_repository(urls["repo"]) as repo:
        import_docs(repo, N)
    victim = _spawn(urls, procs)
    _spawn(urls, procs)
    service, resources = _front(urls)
    try:
        command_id = service.submit(BulkCommand("testSlowTag", "SELECT * FROM File", params={"delay": 0.02}))
        deadline = time.monotonic() + 60
        while service.status(command_id).processed < N // 4:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert service.wait(command_id, 180), service.status(command_id)
        status = service.status(command_id)
        assert (status.state, status.total, status.processed) == (BulkState.COMPLETED, N, N)
        assert service.repository is not None
        assert service.repository.count("SELECT * FROM File WHERE test:tag = 'slow'") == N
    finally:
        _close(service, resources)
