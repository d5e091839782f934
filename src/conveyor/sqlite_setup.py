"""SQLite connection settings shared by every SQLAlchemy engine Conveyor opens on SQLite.

WAL mode with ``synchronous=NORMAL`` lets several processes read while one writes; a busy
timeout makes writers wait for each other instead of failing; writes begin with ``BEGIN
IMMEDIATE`` (when the connection is given the execution option ``conveyor_write=True``) so two
readers turning writers never deadlock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

__all__ = ["configure_sqlite"]


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
