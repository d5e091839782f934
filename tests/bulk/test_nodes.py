"""Nodes run the bulk commands, clients never do (issue 14, item 1).

Two ``conveyor node`` processes sharing a log (local or Kafka), a SQLite KV store and a SQLite
repository run a command that a ``conveyor bulk submit`` process (no ``--wait``) only submitted.
A client (``Conveyor.from_config`` without ``start()``, ``bulk status``, the REST API of a node
that does not process) never processes: the command stays SCHEDULED and no bulk consumer group is
joined. ``bulk submit --wait`` with no processing node gives up after ``[bulk] wait_grace_s`` with
exit code 4, the command left queued.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conveyor import Conveyor
from conveyor.bulk import BulkCommand
from conveyor.bulk.status import BulkStatus
from conveyor.bulk.store import BulkStore
from conveyor.cli.main import app
from conveyor.kv import open_kv_store
from conveyor.log import Name, open_log_manager
from conveyor.repository import open_repository
from tests.bulk.conftest import import_docs
from tests.services import kafka_log_url

with warnings.catch_warnings():  # starlette warns at import when it finds httpx rather than httpx2
    warnings.simplefilter("ignore")
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
# The checkout's sources first: the child processes run the code under test.
ENV = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
N = 200
QUERY = "SELECT * FROM File"
runner = CliRunner()

CONFIG = """
[node]
data_dir = "{tmp}/data"
heartbeat_s = 0.5
shutdown_timeout_s = 20
[log]
url = "{log}"
[kv]
url = "sqlite:///{tmp}/kv.db"
[repository]
url = "sqlite:///{tmp}/repo.db"
"""


def write_config(tmp_path: Path, log: str, bulk: str = "") -> Path:
    """``conveyor.toml`` with ``bulk`` as its ``[bulk]`` table, and the documents."""
    path = tmp_path / "conveyor.toml"
    text = CONFIG.format(tmp=tmp_path, log=log) + (f"[bulk]\n{bulk}\n" if bulk else "")
    path.write_text(text, encoding="utf-8")
    with open_repository(f"sqlite:///{tmp_path}/repo.db") as repo:
        assert import_docs(repo, N) == N
    return path


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def read_status(tmp_path: Path, command_id: str) -> BulkStatus:
    """The command's status read from the KV store (a ``BulkService`` here could process it)."""
    kv = open_kv_store(f"sqlite:///{tmp_path}/kv.db", "bulk")
    try:
        return BulkStore(kv).get_status(command_id)
    finally:
        kv.close()


def conveyor(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``conveyor ARGS`` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "conveyor.cli.main", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Node:
    """``conveyor node`` in a subprocess, its stderr (logs included) in a file."""

    def __init__(self, config: Path, node_id: str) -> None:
        self.path = config.parent / f"{node_id}.err"
        self._err = self.path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "conveyor.cli.main", "node", "--config", str(config)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self._err,
            env={**ENV, "CONVEYOR_NODE_ID": node_id},
        )

    def stderr(self) -> str:
        return self.path.read_text(errors="replace")

    def running(self) -> bool:
        assert self.process.poll() is None, self.stderr()
        return " running (data in " in self.stderr()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)
        finally:
            self._err.close()


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        node.stop()


@pytest.fixture(params=["local", pytest.param("kafka", marks=pytest.mark.kafka)])
def log_url(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> str:
    if request.param == "kafka":
        return kafka_log_url(request.getfixturevalue("kafka_bootstrap"), unique)
    return f"local://{tmp_path}/log"


@pytest.mark.slow
def test_two_cli_nodes_run_a_command_submitted_by_the_cli(
    log_url: str, tmp_path: Path, nodes: list[Node]
) -> None:
    config = write_config(tmp_path, log_url)
    nodes.extend(Node(config, f"node-{i}") for i in range(2))
    assert wait_for(lambda: all(node.running() for node in nodes), 60), [n.stderr() for n in nodes]

    submitted = conveyor(
        "bulk", "submit", "setProperties", "-q", QUERY, "-p", "dc:source=cluster", "--config", str(config)
    )
    assert submitted.returncode == 0, submitted.stderr
    command_id = submitted.stdout.strip()

    def ended() -> bool:
        return read_status(tmp_path, command_id).is_completed

    assert wait_for(ended, 120), (read_status(tmp_path, command_id), [n.stderr() for n in nodes])
    status = read_status(tmp_path, command_id)
    assert (status.state.value, status.total, status.processed, status.error_count) == ("COMPLETED", N, N, 0)
    with open_repository(f"sqlite:///{tmp_path}/repo.db") as repo:
        assert repo.count("SELECT * FROM File WHERE dc:source = 'cluster'") == N
    logs = "".join(node.stderr() for node in nodes)
    assert f"bulk command {command_id} started: action setProperties" in logs
    assert f"bulk command {command_id} ended COMPLETED: action setProperties, processed {N}/{N}" in logs

    if log_url.startswith("local:"):
        # --wait follows a command the nodes run, and exits 0 once it is COMPLETED
        followed = conveyor(
            "bulk", "submit", "trash", "-q", QUERY, "--wait", "--timeout", "120", "--config", str(config)
        )
        assert followed.returncode == 0, followed.stderr
        assert '"state": "COMPLETED"' in followed.stdout and f'"processed": {N}' in followed.stdout

    for node in nodes:
        assert node.stop() == 0, node.stderr()


def test_clients_never_process(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"local://{tmp_path}/log")
    client = Conveyor.from_config(config)  # used as a client: never started
    idle_config = tmp_path / "idle.toml"  # a node that does not process bulk commands
    idle_config.write_text(config.read_text() + "[bulk]\nprocessing = false\n", encoding="utf-8")
    idle = Conveyor.from_config(idle_config, env={"CONVEYOR_NODE_ID": "idle"}).start()
    try:
        service = client.bulk_service
        command_id = service.submit(BulkCommand("setProperties", QUERY, params={"dc:source": "client"}))
        assert service.processor is None

        result = runner.invoke(app, ["bulk", "status", command_id, "--config", str(config)])
        assert result.exit_code == 0, result.output
        assert '"state": "SCHEDULED"' in result.output

        # the REST API of a started node with [bulk] processing = false
        with TestClient(_app(idle), base_url="http://localhost") as http:
            one = http.get(f"/api/v1/bulk/{command_id}")
            assert one.status_code == 200 and one.json()["state"] == "SCHEDULED", one.text
            listed = http.get("/api/v1/bulk")
            assert listed.status_code == 200
            assert command_id in listed.text
        assert idle.bulk_service.processor is None and client.bulk_service.processor is None
        assert "bulk" not in idle.describe()["processors"]

        time.sleep(1.0)  # a processor, had one started, would have taken the command by now
        assert read_status(tmp_path, command_id).state.value == "SCHEDULED"
        members = tmp_path / "log" / ".members"
        joined = sorted(p.name for p in members.iterdir()) if members.exists() else []
        assert not [group for group in joined if group.startswith("bulk")], joined
        with open_log_manager(f"local://{tmp_path}/log") as logs:
            assert logs.list_consumer_groups(Name.of_urn("bulk/command")) == []
    finally:
        idle.stop()
        client.stop()


def _app(node: Conveyor) -> FastAPI:
    from conveyor.web import create_app

    return create_app(node)


def test_submit_wait_without_a_processing_node_gives_up_with_exit_4(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"local://{tmp_path}/log", "wait_grace_s = 0.5")
    args = ("-q", QUERY, "-p", "dc:source=later", "--config", str(config))
    result = runner.invoke(app, ["bulk", "submit", "setProperties", *args, "--wait", "--timeout", "60"])
    assert result.exit_code == 4, result.output
    command_id = result.output.splitlines()[0].strip()
    message = " ".join(result.output.split())
    assert f"bulk command {command_id} is still SCHEDULED after 0.5 s and no node runs the bulk" in message
    assert "start 'conveyor node'" in message and "--run" in message
    assert read_status(tmp_path, command_id).state.value == "SCHEDULED"  # left queued

    waited = runner.invoke(app, ["bulk", "wait", command_id, "--timeout", "60", "--config", str(config)])
    assert waited.exit_code == 4, waited.output

    ran = runner.invoke(
        app, ["bulk", "wait", command_id, "--run", "--timeout", "60", "--config", str(config)]
    )
    assert ran.exit_code == 0, ran.output
    assert read_status(tmp_path, command_id).processed == N
