"""Shared fixtures: real servers (see ``tests/services.py``) and per-test isolation helpers."""

from __future__ import annotations

import uuid

import pytest

pytest_plugins = ["tests.services"]


@pytest.fixture
def unique() -> str:
    """A short name unique to this test, for stores, logs, groups and key prefixes."""
    return "t" + uuid.uuid4().hex[:10]
