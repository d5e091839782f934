"""The pub/sub providers every conformance test runs on, and a factory of nodes sharing one backend."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.pubsub import PubSub, open_pubsub

BACKENDS = [
    pytest.param("local", id="local"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("memory-log", id="memory-log"),
    pytest.param("local-log", id="local-log"),
    pytest.param("kafka", id="kafka", marks=pytest.mark.kafka),
]

WITHOUT_KAFKA = [p for p in BACKENDS if p.id != "kafka"]
"""For tests of behaviour that lives above the wire: the slow-to-start broker is kept for the core ones."""

OpenNode = Callable[..., PubSub]


def local_log_available() -> bool:
    """True once the ``local://`` log backend can be imported (it is built in another area)."""
    try:
        from conveyor.log.local import LocalLogManager  # noqa: F401
    except ImportError:
        return False
    return True


def url_for(backend: str, request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> str:
    """A URL of a fresh, private space of ``backend`` (nodes opened on it see each other only)."""
    if backend == "local":
        return f"local://{unique}"
    if backend == "redis":
        base: str = request.getfixturevalue("redis_url")
        return f"{base}?prefix=conveyor:test:{unique}:"
    if backend == "memory-log":
        return f"memory://{unique}"
    if backend == "local-log":
        if not local_log_available():
            pytest.skip("the local:// log backend is not available yet")
        return f"local://{tmp_path}/log"
    bootstrap: str = request.getfixturevalue("kafka_bootstrap")
    return f"kafka://{bootstrap}?prefix={unique}-"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the provider under test."""
    return str(request.param)


@pytest.fixture
def open_node(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, unique: str
) -> Iterator[OpenNode]:
    """Open nodes on one private space of the backend under test; all closed after the test."""
    url = url_for(backend, request, tmp_path, unique)
    nodes: list[PubSub] = []

    def factory(node_id: str, **options: Any) -> PubSub:
        node = open_pubsub(url, node_id=node_id, **options)
        nodes.append(node)
        return node

    yield factory
    for node in reversed(nodes):
        node.close()


def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll ``check`` until true or ``timeout`` seconds pass; its last result."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


class Inbox:
    """A callback that records ``(topic, data)`` pairs, thread-safe enough for list appends."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []

    def __call__(self, topic: str, data: bytes) -> None:
        self.items.append((topic, data))

    def data(self) -> list[bytes]:
        """The payloads received, in order."""
        return [d for _, d in self.items]

    def has(self, data: bytes) -> bool:
        """True once ``data`` was received."""
        return any(d == data for _, d in self.items)
