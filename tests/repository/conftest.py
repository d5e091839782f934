"""Repository fixtures: one fresh table per test on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.repository import Repository, open_repository

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
]


@pytest.fixture(params=BACKENDS)
def repo_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database URL of one backend (servers from the session fixtures)."""
    backend: str = request.param
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/repository.db"
    url: str = request.getfixturevalue(f"{backend}_url")
    return url


@pytest.fixture
def repo(repo_url: str, unique: str) -> Iterator[Repository]:
    """A repository on its own table (``<unique>_documents``), dropped after the test."""
    repository = open_repository(repo_url, table_prefix=f"{unique}_")
    yield repository
    reopened = open_repository(repo_url, table_prefix=f"{unique}_")
    repository.close()
    reopened.drop()
