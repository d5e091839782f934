"""Right error kinds for queries (issue 14, item 7): text that is no text, queries over the
configured limits and queries the database refuses for their size are query errors; only a lost
connection is "backend unavailable"."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conveyor.errors import BackendUnavailableError, ConfigurationError, NXQLError, QueryError
from conveyor.repository import Repository, open_repository
from conveyor.repository.nxql import parse

SURROGATE = "SELECT * FROM File WHERE dc:title = 'caf\ud800'"


def _or_query(terms: int) -> str:
    return "SELECT * FROM File WHERE " + " OR ".join(f"dc:title = 'v{i}'" for i in range(terms))


def _in_query(values: int) -> str:
    return "SELECT * FROM File WHERE dc:title IN (" + ",".join(f"'v{i}'" for i in range(values)) + ")"


def _order_query(keys: int) -> str:
    return "SELECT * FROM File ORDER BY " + ", ".join(f"dc:p{i}" for i in range(keys))


def _query_error_or_answer(repo: Repository, nxql: str) -> None:
    """The query is answered, or refused as a query error (never "backend unavailable")."""
    try:
        assert repo.query(nxql) == []
    except BackendUnavailableError as exc:  # pragma: no cover - the bug
        pytest.fail(f"a query refused for its size is not a down backend: {exc}")
    except QueryError as exc:
        assert "refuses this query for its size or shape" in str(exc) or "max_query" in str(exc)


def test_a_lone_surrogate_is_a_query_error_whose_message_is_text(repo: Repository) -> None:
    for call in (parse, repo.check_query, repo.query, repo.count):
        with pytest.raises(NXQLError, match="lone surrogate") as caught:
            call(SURROGATE)
        assert caught.value.position == SURROGATE.index("\ud800")
        str(caught.value).encode("utf-8")  # the message can be printed, logged and sent as JSON
    with pytest.raises(NXQLError, match="NUL"):
        repo.query("SELECT * FROM File WHERE dc:title = 'a\x00b'")


def test_a_huge_query_is_refused_by_the_length_limit() -> None:
    ten_mb = "SELECT * FROM File WHERE " + " OR ".join(["dc:title = 'x'"] * 600_000)
    assert len(ten_mb) > 10_000_000
    with pytest.raises(NXQLError, match=r"more than the limit of 100000 \(max_query_length\)") as caught:
        parse(ten_mb)
    assert len(str(caught.value)) < 200  # the message does not repeat the query
    repo = open_repository("sqlite://")
    try:
        with pytest.raises(NXQLError, match="max_query_length"):
            repo.query(ten_mb)
    finally:
        repo.close()


def test_the_terms_limit_is_checked_and_configurable(tmp_path: object) -> None:
    query = _in_query(2_500)
    with pytest.raises(NXQLError, match=r"more than 2000 terms .*max_query_terms") as caught:
        parse(query)
    assert caught.value.position == query.index("'v2000'")  # the first term too many
    assert len(str(caught.value)) < 400
    with pytest.raises(NXQLError, match="more than 3 terms"):
        parse("SELECT dc:a, dc:b FROM File WHERE dc:c = 1 ORDER BY dc:d", max_terms=3)
    assert parse("SELECT dc:a FROM File WHERE dc:c = 1 ORDER BY dc:d", max_terms=3) is not None
    with pytest.raises(NXQLError, match="number of 500 characters is out of range"):
        parse("SELECT * FROM File WHERE dc:n = " + "9" * 500)

    wide = open_repository("sqlite://?max_query_terms=3000", max_query_length=500_000)
    narrow = open_repository("sqlite://", max_query_terms=10)
    try:
        assert (wide.max_query_terms, wide.max_query_length) == (3000, 500_000)
        assert wide.query(query) == []
        with pytest.raises(NXQLError, match="more than 10 terms"):
            narrow.query(_in_query(11))
    finally:
        wide.close()
        narrow.close()
    with pytest.raises(ConfigurationError, match="max_query_terms"):
        open_repository("sqlite://?max_query_terms=many")
    with pytest.raises(ConfigurationError, match="max_query_length"):
        open_repository("sqlite://", max_query_length=0)


def _open_wide(url: str, prefix: str) -> Repository:
    """A repository whose query limits let the database see very large queries."""
    try:
        return open_repository(url, table_prefix=prefix, max_query_terms=200_000, max_query_length=2_000_000)
    except TypeError:  # a version without query limits (the base this test is checked against)
        return open_repository(url, table_prefix=prefix)


@pytest.fixture
def big_repo(repo_url: str, unique: str) -> Iterator[Repository]:
    """A repository of one document whose limits let the database see very large queries."""
    repository = _open_wide(repo_url, f"{unique}_")
    repository.import_documents([{"type": "Note", "name": "n", "properties": {"dc:title": "t"}}])
    yield repository
    repository.drop()


def test_queries_too_large_for_the_database_are_query_errors(big_repo: Repository) -> None:
    # SQLite: expression tree too deep; MariaDB: out of sort memory; others may answer
    _query_error_or_answer(big_repo, _or_query(1_000))
    _query_error_or_answer(big_repo, _order_query(500))
    if big_repo.dialect == "sqlite":
        with pytest.raises(QueryError, match="Expression tree is too large"):
            big_repo.query(_or_query(1_000))
    if big_repo.dialect in ("mysql", "mariadb"):
        with pytest.raises(QueryError, match="Out of sort memory"):
            big_repo.query(_order_query(500))


@pytest.mark.slow
@pytest.mark.postgresql
def test_an_in_list_past_postgresql_parameter_limit_is_a_query_error(
    postgresql_url: str, unique: str
) -> None:
    repository = _open_wide(postgresql_url, f"{unique}_")
    try:
        with pytest.raises(QueryError, match="number of parameters must be between 0 and 65535"):
            repository.query(_in_query(66_000))
        default = open_repository(postgresql_url, table_prefix=f"{unique}_")
        with pytest.raises(QueryError, match="max_query_length"):  # the default limits refuse it at once
            default.query(_in_query(100_000))
        default.close()
    finally:
        repository.drop()


def test_a_lost_connection_is_still_backend_unavailable(repo: Repository) -> None:
    kill = {
        "postgresql": "SELECT pg_terminate_backend(pg_backend_pid())",
        "mysql": "KILL CONNECTION_ID()",
        "mariadb": "KILL CONNECTION_ID()",
    }.get(repo.dialect)
    if kill is None:
        pytest.skip("SQLite has no connection to lose")
    with pytest.raises(BackendUnavailableError):
        repo._run("query", False, lambda conn: conn.exec_driver_sql(kill).all())
    assert repo.count("SELECT * FROM Document") == 0  # the pool reconnects
