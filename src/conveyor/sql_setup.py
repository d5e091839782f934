"""What the SQL-backed stores share: SQLite connection settings and tolerant table creation.

On SQLite, WAL mode with ``synchronous=NORMAL`` lets several processes read while one writes; a busy
timeout makes writers wait for each other instead of failing; writes begin with ``BEGIN
IMMEDIATE`` (when the connection is given the execution option ``conveyor_write=True``) so two
readers turning writers never deadlock.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from conveyor.errors import BackendUnavailableError, StorageError, StorageFullError

__all__ = ["configure_sqlite", "create_table", "sqlite_storage_error"]


def configure_sqlite(engine: Engine, extra_pragmas: Sequence[str] = ()) -> None:
    """Apply the settings above (and ``extra_pragmas``, e.g. ``"case_sensitive_like=ON"``)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_conn.cursor()
        for pragma in ("busy_timeout=30000", "journal_mode=WAL", "synchronous=NORMAL", *extra_pragmas):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Reads are single statements and run without an explicit transaction (autocommit).
        if conn.get_execution_options().get("conveyor_write", False):
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_table(engine: Engine, table: sa.Table, shown: str, what: str) -> None:
    """Create ``table`` (and its indexes) unless present, tolerating another process creating it
    at the same time; ``what`` names the database in errors (``key-value``, ``repository``)."""
    for attempt in range(5):
        try:
            table.create(engine, checkfirst=True)
            return
        except DBAPIError as exc:
            if engine.dialect.name == "sqlite":
                storage = sqlite_storage_error(exc.orig, f"{what} database {shown!r}", engine.url.database)
                if storage is not None:
                    raise storage from exc
            try:  # another process may have created it between our check and our CREATE
                if sa.inspect(engine).has_table(table.name):
                    return
            except DBAPIError as again:
                message = f"cannot reach {what} database {shown!r}: {again.orig}"
                raise BackendUnavailableError(message) from exc
            if attempt == 4:
                message = f"cannot create table {table.name} in {shown!r}: {exc.orig}"
                raise BackendUnavailableError(message) from exc
            time.sleep(0.05 * (attempt + 1))


def sqlite_storage_error(orig: BaseException | None, what: str, path: str | None) -> StorageError | None:
    """The storage error for a SQLite driver error ``orig`` that says the disk is full
    (``SQLITE_FULL``) or a read or write failed (``SQLITE_IOERR``), else None.

    ``what`` names the store in the message (``key-value store 'bulk' on 'sqlite:///…'``), ``path``
    is the database file. SQLite rolls the statement back in both cases: nothing it wrote counts.
    """
    if not isinstance(orig, sqlite3.Error):
        return None
    code = getattr(orig, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(orig)
    if primary == sqlite3.SQLITE_FULL or "database or disk is full" in text:
        message = f"{what}: the disk holding {path} is full ({text}); free space, then retry"
        return StorageFullError(message, path)
    if primary == sqlite3.SQLITE_IOERR or "disk I/O error" in text:
        return StorageError(f"{what}: I/O error on {path} ({text})", path)
    return None
