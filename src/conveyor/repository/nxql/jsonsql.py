"""Typed access to one JSON property, per database, as SQLAlchemy expressions.

The property's JSON path is always a bound parameter. A string literal is compared with the
property's value only where that value is a JSON string, and a number only where it is a JSON
number or boolean (``true`` = 1): the same rows match on SQLite, PostgreSQL and MariaDB, and ``10``
sorts after ``9``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

__all__ = ["JsonProperty"]

_SQLITE_NUMBERS = ("integer", "real", "true", "false")
_MYSQL_NUMBERS = ("INTEGER", "DOUBLE", "DECIMAL", "UNSIGNED INTEGER")


def _segments(name: str) -> list[str | int]:
    return [int(part) if part.isdigit() else part for part in name.split("/")]


def _json_path(segments: list[str | int]) -> str:
    """``$."dc:title"[0]`` (the lexer allows no quote or backslash in a segment)."""
    return "$" + "".join(f"[{s}]" if isinstance(s, int) else f'."{s}"' for s in segments)


class JsonProperty:
    """The property ``name`` (``dc:title``, ``file:content/name``) of the JSON column ``column``."""

    def __init__(self, column: ColumnElement[Any], name: str, dialect: str) -> None:
        self.dialect = dialect
        self._column = column
        self._path = sa.literal(_json_path(_segments(name)), sa.String)
        segments = _segments(name)
        if dialect == "postgresql":
            keys = [sa.literal(str(s), sa.Text) for s in segments]
            self.raw: ColumnElement[Any] = sa.func.jsonb_extract_path(column, *keys)
            self.raw_text: ColumnElement[Any] = sa.func.jsonb_extract_path_text(column, *keys)
            self.type_name: ColumnElement[Any] = sa.func.jsonb_typeof(self.raw)
        elif dialect in ("mysql", "mariadb"):
            path = sa.literal(_json_path(segments), sa.String)
            self.raw = sa.func.json_extract(column, path)
            self.raw_text = sa.func.json_unquote(self.raw)
            self.type_name = sa.func.json_type(self.raw)
        else:
            path = sa.literal(_json_path(segments), sa.String)
            self.raw = sa.func.json_extract(column, path)
            self.raw_text = self.raw
            self.type_name = sa.func.json_type(column, path)

    def json(self) -> ColumnElement[Any]:
        """The value as JSON text (``"x"``, ``12``, ``{"a": 1}``), NULL where absent."""
        if self.dialect == "postgresql":
            return sa.cast(self.raw, sa.Text)
        if self.dialect in ("mysql", "mariadb"):
            return sa.type_coerce(self.raw, sa.Text)
        return self._column.op("->", return_type=sa.Text)(self._path)

    def text(self) -> ColumnElement[Any]:
        """The value where it is a JSON string (byte-order collation), else NULL."""
        if self.dialect == "postgresql":
            value: ColumnElement[Any] = sa.collate(self.raw_text, "C")
            is_string = self.type_name == "string"
        elif self.dialect in ("mysql", "mariadb"):
            value = sa.collate(self.raw_text, "utf8mb4_bin")
            is_string = self.type_name == "STRING"
        else:
            value = self.raw
            is_string = self.type_name == "text"
        return sa.case((is_string, value), else_=sa.null())

    def number(self) -> ColumnElement[Any]:
        """The value where it is a JSON number (or boolean, as 1/0), else NULL."""
        if self.dialect == "postgresql":
            return sa.case(
                (self.type_name == "number", sa.cast(self.raw_text, sa.Numeric)),
                (self.type_name == "boolean", sa.case((self.raw_text == "true", 1), else_=0)),
                else_=sa.null(),
            )
        if self.dialect in ("mysql", "mariadb"):
            # CAST(... AS DOUBLE) is not rendered by SQLAlchemy's MySQL dialect; "+ 0e0" converts.
            as_double = sa.type_coerce(self.raw_text, sa.Float) + sa.literal_column("0e0", sa.Float)
            return sa.case(
                (self.type_name.in_(_MYSQL_NUMBERS), as_double),
                (self.type_name == "BOOLEAN", sa.case((self.raw_text == "true", 1), else_=0)),
                else_=sa.null(),
            )
        return sa.case((self.type_name.in_(_SQLITE_NUMBERS), self.raw), else_=sa.null())

    def is_null(self) -> ColumnElement[bool]:
        """True where the property is absent or JSON null."""
        null_name = "NULL" if self.dialect in ("mysql", "mariadb") else "null"
        return sa.or_(self.type_name.is_(None), self.type_name == null_name)
