"""Two nodes in two processes, on Redis and on the local log: per-topic order, no echo to the
sender, and a cache invalidation observed on the other node."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.pubsub import ClusterCache, open_pubsub

from .conftest import Inbox, url_for, wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "backend",
    [pytest.param("redis", marks=pytest.mark.redis), pytest.param("local-log")],
)
def test_two_processes(backend: str, request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> None:
    url = url_for(backend, request, tmp_path, unique)
    with open_pubsub(url, node_id="parent") as node:
        greetings = Inbox()
        node.subscribe("greetings", greetings)
        cache: ClusterCache[str] = ClusterCache(node, "docs")
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.pubsub.node_process", url],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "READY"
            assert wait_for(lambda: greetings.has(b"hello"), timeout=30)
            for i in range(200):
                node.publish("orders", f"{i}".encode())
            cache.invalidate("doc1")
            node.publish("control", b"done")
            out, err = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
    assert child.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["finished"] is True
    assert report["orders"] == [str(i) for i in range(200)]
    assert report["greetings"] == []  # the child's own "hello" did not come back to it
    assert report["doc1_cached"] is False
    assert report["doc2_cached"] is True
    assert greetings.data() == [b"hello"]
