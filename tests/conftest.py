"""Shared fixtures: real servers (see ``tests/services.py``) and per-test isolation helpers."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.services"]


@pytest.fixture
def unique() -> str:
    """A short name unique to this test, for stores, logs, groups and key prefixes."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture(autouse=True)
def restore_conveyor_logger() -> Iterator[None]:
    """Undo what a test's ``configure_logging`` did to the ``conveyor`` logger.

    Its handler writes to the stderr of the moment (a CLI runner's, closed after the test) and
    stops propagation: left in place, later tests' logs would hit a closed stream and miss caplog.
    """
    root = logging.getLogger("conveyor")
    saved = (list(root.handlers), root.level, root.propagate)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    root.propagate = saved[2]
