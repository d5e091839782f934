"""What the SQL-backed stores share: SQLite connection settings and tolerant table creation.

On SQLite, WAL mode with ``synchronous=NORMAL`` lets several processes read while one writes; a busy
timeout makes writers wait for each other instead of failing; writes begin with ``BEGIN
IMMEDIATE`` (when the connection is given the execution option ``conveyor_write=True``) so two
readers turning writers never deadlock.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from conveyor.errors import BackendUnavailableError

__all__ = ["configure_sqlite", "create_table"]


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
