"""One attempt of a key-value operation on a pooled driver connection, without SQLAlchemy's
per-call execution machinery (which costs several times the statement itself on SQLite).

The connection comes from the engine's pool, so its connect-time settings (SQLite pragmas,
MariaDB's isolation level, pre-ping) apply; a connection the driver reports as lost is discarded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from conveyor.kv.sql_statements import Compiled

__all__ = ["DriverCursor", "DriverRunner"]

T = TypeVar("T")


class DriverCursor:
    """Runs compiled statements on one driver cursor."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def rowcount(self, statement: Compiled, params: dict[str, Any]) -> int:
        """Run a write statement; the number of rows it matched."""
        self._cursor.execute(statement.sql, statement.args(params))
        return int(self._cursor.rowcount)

    def first(self, statement: Compiled, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """Run a query; its first row, or None."""
        self._cursor.execute(statement.sql, statement.args(params))
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)

    def rows(self, statement: Compiled, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run a query; all its rows."""
        self._cursor.execute(statement.sql, statement.args(params))
        return [tuple(row) for row in self._cursor.fetchall()]


class DriverRunner:
    """Runs operations in a transaction on the engine's pooled driver connections."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = engine.dialect
        self._sqlite = engine.dialect.name == "sqlite"
        self.error: type[Exception] = engine.dialect.loaded_dbapi.Error
        """The driver's base exception class."""
        self.integrity_error: type[Exception] = engine.dialect.loaded_dbapi.IntegrityError
        """The driver's constraint-violation exception class."""

    def attempt(self, locked: bool, op: Callable[[DriverCursor], T]) -> T:
        """``op`` in one transaction, committed; ``locked``: on SQLite, take the write lock first
        (``BEGIN IMMEDIATE``; otherwise single statements run in autocommit mode)."""
        raw = self._engine.raw_connection()
        cursor = None
        try:
            cursor = raw.cursor()
            if locked and self._sqlite:
                cursor.execute("BEGIN IMMEDIATE")
            result = op(DriverCursor(cursor))
            raw.commit()
            return result
        except BaseException as exc:
            lost = isinstance(exc, self.error) and self._dialect.is_disconnect(
                exc,  # type: ignore[arg-type]  # the driver's error, as SQLAlchemy passes it
                raw.dbapi_connection,
                cursor,
            )
            if lost:
                raw.invalidate(exc)
            else:
                try:
                    raw.rollback()
                except self.error as again:  # the connection is unusable: drop it
                    raw.invalidate(again)
            raise
        finally:
            if cursor is not None:
                try:
                    cursor.close()
                except self.error:
                    pass  # already gone with its connection
            raw.close()
