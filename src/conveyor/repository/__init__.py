"""A small document repository: documents in SQL, queried with a subset of NXQL.

Open one by URL::

    repo = open_repository("sqlite:///./data/repository.db")         # embedded, WAL mode
    repo = open_repository("postgresql://user@host/db")               # psycopg 3
    repo = open_repository("mysql://root@host/db?table_prefix=t1_")   # MariaDB/MySQL via PyMySQL

Documents live in one table (``<table_prefix>documents``), created on first open. See
``docs/repository.md`` for the NXQL subset and the bulk operations.
"""

from __future__ import annotations

from sqlalchemy import MetaData

from conveyor.errors import ConfigurationError
from conveyor.registry import redact_url
from conveyor.repository.api import Repository, normalize_path
from conveyor.repository.document import Document
from conveyor.repository.store import create_engine, documents_table, split_url
from conveyor.sql_setup import create_table

__all__ = ["Document", "Repository", "normalize_path", "open_repository"]


def open_repository(
    url: str,
    table_prefix: str | None = None,
    max_query_length: int | None = None,
    max_query_terms: int | None = None,
) -> Repository:
    """Open (creating its table if needed) the repository at ``url``.

    ``sqlite:///PATH`` (three slashes then the path: ``sqlite:///./x.db`` is relative,
    ``sqlite:////srv/x.db`` absolute; ``sqlite://`` alone is an in-memory database for one process),
    ``postgresql://…`` or ``mysql://…``/``mariadb://…``. ``table_prefix`` (or ``?table_prefix=``
    in the URL) names the table ``<prefix>documents``, so several repositories can share a database.
    ``max_query_length`` and ``max_query_terms`` (or the same URL options) bound the NXQL queries
    accepted (default 100,000 characters and 2,000 terms).
    :class:`~conveyor.errors.ConfigurationError` for a bad URL,
    :class:`~conveyor.errors.BackendUnavailableError` when the database cannot be reached.
    """
    shown = redact_url(url) if isinstance(url, str) else repr(url)
    db_url, options = split_url(url)
    prefix = table_prefix if table_prefix is not None else options.get("table_prefix", "")
    limits = {
        "max_query_length": _int_option(max_query_length, options, "max_query_length", shown),
        "max_query_terms": _int_option(max_query_terms, options, "max_query_terms", shown),
    }
    table = documents_table(MetaData(), prefix)
    engine = create_engine(db_url, shown)
    try:
        create_table(engine, table, shown, "repository")
    except BaseException:
        engine.dispose()
        raise
    try:
        return Repository(engine, table, shown, **{k: v for k, v in limits.items() if v is not None})
    except BaseException:
        engine.dispose()
        raise


def _int_option(given: int | None, options: dict[str, str], name: str, shown: str) -> int | None:
    if given is not None or name not in options:
        return given
    try:
        return int(options[name])
    except ValueError:
        raise ConfigurationError(f"{name} in {shown!r} must be an integer, got {options[name]!r}") from None
