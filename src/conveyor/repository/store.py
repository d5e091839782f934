"""The SQL side: engine from a URL (SQLite in WAL mode, PostgreSQL, MariaDB/MySQL) and the table.

One table, ``<prefix>documents``: ``id`` (the primary key, a UUID string), ``parent_id``, ``path``
(unique), ``name``, ``type``, ``properties`` (JSON; JSONB on PostgreSQL), ``trashed``, ``created``,
``modified`` (naive UTC). Strings use a byte-order collation everywhere (``C`` on PostgreSQL,
``utf8mb4_bin`` on MariaDB, SQLite's default), so equality, ``LIKE`` and ordering agree across
databases and ``STARTSWITH`` can use the path index.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from conveyor.errors import ConfigurationError, RepositoryError
from conveyor.registry import redact_url
from conveyor.sql_setup import configure_sqlite

__all__ = ["MAX_NAME", "MAX_PATH", "create_engine", "documents_table", "split_url"]

MAX_NAME = 255
# 760 utf8mb4 characters are 3040 bytes: the most a MariaDB/MySQL index key may hold (3072).
MAX_PATH = 760
_PREFIX_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")
_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg", "mysql": "mysql+pymysql",
            "mariadb": "mariadb+pymysql", "sqlite": "sqlite+pysqlite"}  # fmt: skip
_OPTIONS = ("table_prefix", "max_query_length", "max_query_terms")
_SQLITE_MMAP = 1 << 30  # address space, not memory: pages are the OS file cache's


def _string(length: int) -> sa.types.TypeEngine[str]:
    return (
        sa.String(length)
        .with_variant(sa.String(length, collation="C"), "postgresql")
        .with_variant(mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb")
    )


def documents_table(metadata: sa.MetaData, prefix: str = "") -> sa.Table:
    """The documents table (named ``<prefix>documents``) in ``metadata``."""
    if prefix and not _PREFIX_RE.fullmatch(prefix):
        raise ConfigurationError(f"invalid table prefix {prefix!r}: letters, digits and _ only")
    name = f"{prefix}documents"
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    stamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    return sa.Table(
        name,
        metadata,
        sa.Column("id", _string(36), primary_key=True),
        sa.Column("parent_id", _string(36), nullable=True),
        sa.Column("path", _string(MAX_PATH), nullable=False),
        sa.Column("name", _string(MAX_NAME), nullable=False),
        sa.Column("type", _string(64), nullable=False),
        sa.Column("properties", json_type, nullable=False),
        sa.Column("trashed", sa.Boolean(), nullable=False, default=False),
        sa.Column("created", stamp, nullable=False),
        sa.Column("modified", stamp, nullable=False),
        sa.Index(f"{name}_path", "path", unique=True),
        sa.Index(f"{name}_parent", "parent_id"),
        sa.Index(f"{name}_type", "type"),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


def split_url(url: str) -> tuple[URL, dict[str, str]]:
    """The SQLAlchemy URL with our driver chosen, and our own options (``table_prefix``,
    ``max_query_length``, ``max_query_terms``) taken out."""
    if not isinstance(url, str):
        raise ConfigurationError(f"repository URL must be a string, got {type(url).__name__}")
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"invalid repository URL {redact_url(url)!r}: {exc}") from exc
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in ("sqlite", "postgresql", "postgres", "mysql", "mariadb"):
        raise ConfigurationError(
            f"unsupported repository URL {redact_url(url)!r}: use sqlite://, postgresql:// or mysql://"
        )
    if not driver:
        parsed = parsed.set(drivername=_DRIVERS[backend])
    query = dict(parsed.query)
    ours = {k: str(query.pop(k)) for k in _OPTIONS if k in query}
    if parsed.get_backend_name() in ("mysql", "mariadb"):
        query.setdefault("charset", "utf8mb4")
    return parsed.set(query=query), ours


def _json_dumps(value: Any) -> str:
    try:
        return msgspec.json.encode(value).decode("utf-8")
    except (TypeError, msgspec.EncodeError) as exc:
        raise RepositoryError(f"document properties are not JSON-serializable: {exc}") from exc


def create_engine(db_url: URL, shown: str) -> Engine:
    """An engine for ``db_url``: SQLite in WAL mode with a busy timeout, servers with pre-ping."""
    backend = db_url.get_backend_name()
    kwargs: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": msgspec.json.decode}
    if backend == "sqlite":
        database = db_url.database or ""
        if database in ("", ":memory:") or database.startswith("file::memory:"):
            kwargs["poolclass"] = StaticPool  # one shared connection, or every checkout is empty
        else:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
        kwargs["connect_args"] = {"connect_timeout": 10}
        if backend in ("mysql", "mariadb"):
            kwargs["isolation_level"] = "READ COMMITTED"
    try:
        engine = sa.create_engine(db_url, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        raise ConfigurationError(f"unsupported repository database {shown!r}: {exc}") from exc
    if backend == "sqlite":
        # NXQL LIKE is case-sensitive. Reads through a memory map: looking up ids in a large
        # table touches an index page per id, which the default page cache (2 MB) mostly misses
        # (3x faster by-id updates at 1M documents).
        configure_sqlite(engine, ["case_sensitive_like=ON", f"mmap_size={_SQLITE_MMAP}"])
    return engine
