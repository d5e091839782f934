"""The log backends every conformance test runs on, and a factory of managers sharing storage."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.log import LogManager, open_log_manager

BACKENDS = ["memory", "local", pytest.param("kafka", marks=pytest.mark.kafka)]

OpenManager = Callable[..., LogManager]


def _url_for(backend: str, request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> str:
    if backend == "memory":
        return f"memory://{unique}"
    if backend == "local":
        return f"local://{tmp_path}/log"
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    return f"kafka://{bootstrap}?prefix={unique}-"


@pytest.fixture(params=BACKENDS)
def log_backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend under test."""
    return str(request.param)


@pytest.fixture
def log_url(log_backend: str, request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> str:
    """A URL of fresh, empty storage for the backend under test."""
    return _url_for(log_backend, request, tmp_path, unique)


@pytest.fixture
def open_manager(log_url: str) -> Iterator[OpenManager]:
    """Open a new manager on the same storage (like a restart, or another node); closed after the test."""
    managers: list[LogManager] = []

    def factory(**options: Any) -> LogManager:
        manager = open_log_manager(log_url, **options)
        managers.append(manager)
        return manager

    yield factory
    for manager in reversed(managers):
        manager.close()


@pytest.fixture
def manager(open_manager: OpenManager) -> LogManager:
    """A manager on fresh storage whose default codec is ``bytes`` (messages are raw bytes)."""
    return open_manager(default_codec="bytes")
