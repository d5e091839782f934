"""A real embedded node (data in ``tmp_path``) and a FastAPI test client on its management app."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

with warnings.catch_warnings():  # starlette warns at import when it finds httpx rather than httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from conveyor import Conveyor
from conveyor.log import LogPartition, Name
from conveyor.record import Record
from conveyor.web import create_app
from tests.services import wait_until

DEMO = Name.of("demo", "input")
READERS = "demo/readers"
TOKEN = "s3cret-token-for-tests-0123"
BASE_URL = "http://localhost"
"""Test clients use a loopback Host: the app answers 400 to others (DNS rebinding)."""


def node_config(tmp_path: Path, **web: Any) -> dict[str, Any]:
    """An embedded node with three queues of test Works, its data in ``tmp_path``."""
    return {
        "node": {
            "id": "web-test",
            "data_dir": str(tmp_path / "data"),
            "heartbeat_s": 0.5,
            # the bulk actions too: a started node runs the bulk computations with the actions
            # registered when it starts
            "modules": ["tests.web.works", "tests.web.actions"],
            "shutdown_timeout_s": 5,
        },
        "work": {
            "queues": [
                {"id": "quick", "categories": ["quick"], "max_threads": 2},
                {"id": "gated", "categories": ["gated"], "max_threads": 1},
                {"id": "broken", "categories": ["broken"], "max_threads": 1},
            ]
        },
        "web": web,
    }


def fill_demo_stream(node: Conveyor, records: int = 10, consumed: int = 4) -> None:
    """``demo/input`` (2 partitions) with ``records`` records, ``consumed`` of partition 0 committed
    by ``demo/readers``."""
    manager = node.log_manager
    manager.create_if_not_exists(DEMO, 2)
    appender = manager.appender(DEMO)
    for i in range(records):
        appender.append(i % 2, Record(f"key{i}", f"value {i}".encode()))
    tailer = manager.create_tailer(READERS, LogPartition(DEMO, 0))
    for _ in range(consumed):
        assert tailer.read(1.0) is not None
    tailer.commit()
    tailer.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Conveyor]:
    """A started node with a filled ``demo/input`` stream."""
    conveyor = Conveyor.from_config(node_config(tmp_path))
    conveyor.start()
    try:
        fill_demo_stream(conveyor)
        yield conveyor
    finally:
        from tests.web.works import GATE

        GATE.set()
        conveyor.stop(10)
        GATE.clear()


@pytest.fixture
def client(node: Conveyor) -> Iterator[TestClient]:
    """A test client on the node's app, without token, acting as the dashboard's own pages do (a
    loopback Host, a same-origin Origin)."""
    with TestClient(create_app(node), base_url=BASE_URL, headers={"Origin": BASE_URL}) as test_client:
        yield test_client


CLI_MAIN = "from conveyor.cli.main import app; from conveyor.cli.web import register; register(app); app()"
"""``conveyor`` with its ``web`` command, for ``python -c``."""


def start_conveyor_web(config: Path, port: int, stdout: int = subprocess.PIPE) -> subprocess.Popen[bytes]:
    """``conveyor web --port PORT --config CONFIG`` in a child process (stderr piped; no
    ``CONVEYOR_WEB_TOKEN`` from the environment), returned once ``/health`` answers or it exited."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    env.pop("CONVEYOR_WEB_TOKEN", None)
    process = subprocess.Popen(
        [sys.executable, "-c", CLI_MAIN, "web", "--port", str(port), "--config", str(config)],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=env,
    )

    def healthy() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return process.poll() is not None

    try:
        wait_until(healthy, 60, "conveyor web")
    except BaseException:
        process.kill()
        process.communicate()
        raise
    return process
