"""A parsed NXQL :class:`~conveyor.repository.nxql.ast.Query` -> SQLAlchemy Core expressions.

Values are only ever bound parameters; field names map to columns or to JSON paths that are bound
parameters too, so no text of the query reaches the SQL. Semantic errors (an unknown ``ecm:``
field, a number compared with ``ecm:path``) are :class:`~conveyor.errors.NXQLError` at the field
or the value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from conveyor.errors import NXQLError
from conveyor.repository.nxql.ast import (
    And,
    Between,
    Compare,
    Expr,
    Field,
    InList,
    IsNull,
    Like,
    Literal,
    Not,
    Or,
    Query,
    StartsWith,
)
from conveyor.repository.nxql.jsonsql import JsonProperty
from conveyor.repository.nxql.parser import parse_timestamp

__all__ = ["COLUMN_FIELDS", "CompiledQuery", "compile_query", "escape_like"]

# NXQL field -> (column, kind). Kinds: "string", "bool", "timestamp".
COLUMN_FIELDS: dict[str, tuple[str, str]] = {
    "ecm:uuid": ("id", "string"),
    "ecm:parentId": ("parent_id", "string"),
    "ecm:name": ("name", "string"),
    "ecm:primaryType": ("type", "string"),
    "ecm:path": ("path", "string"),
    "ecm:isTrashed": ("trashed", "bool"),
    "dc:created": ("created", "timestamp"),
    "dc:modified": ("modified", "timestamp"),
}
# Always 0 here: no proxies, no versions (so Nuxeo's usual filters keep working).
_ALWAYS_FALSE = frozenset({"ecm:isProxy", "ecm:isVersion", "ecm:isCheckedInVersion"})
_ECM_LOWER = {name.lower(): name for name in (*COLUMN_FIELDS, *_ALWAYS_FALSE, "ecm:mixinType")}
_OPS: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def escape_like(value: str) -> str:
    """``value`` with LIKE's wildcards and escape character escaped (escape character ``\\``)."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class CompiledQuery:
    """What a query becomes: a WHERE clause, ORDER BY keys, limit, offset, selected columns."""

    query: Query
    where: ColumnElement[bool]
    order_by: tuple[ColumnElement[Any], ...]
    limit: int | None
    offset: int | None
    select: tuple[tuple[str, ColumnElement[Any]], ...] | None


class _Compiler:
    def __init__(self, query: Query, table: sa.Table, dialect: str) -> None:
        self.query = query
        self.table = table
        self.dialect = dialect

    def error(self, message: str, pos: int) -> NXQLError:
        return NXQLError(message, self.query.text, pos)

    def canonical(self, field: Field) -> str:
        name = field.name
        if name.lower().startswith("ecm:"):
            canonical = _ECM_LOWER.get(name.lower())
            if canonical is None:
                raise self.error(f"unknown or unsupported field {name}", field.pos)
            return canonical
        return name

    def column(self, field: Field) -> tuple[ColumnElement[Any], str] | None:
        entry = COLUMN_FIELDS.get(self.canonical(field))
        if entry is None:
            return None
        return self.table.c[entry[0]], entry[1]

    def prop(self, field: Field) -> JsonProperty:
        return JsonProperty(self.table.c.properties, field.name, self.dialect)

    # --- values --------------------------------------------------------------------------------

    def coerce(self, field: Field, kind: str, lit: Literal) -> Any:
        """``lit`` as a value of a column of ``kind``, or NXQLError at the value."""
        if kind == "string":
            if lit.kind != "string":
                raise self.error(f"{field.name} is a string: compare it with a quoted string", lit.pos)
            return lit.value
        if kind == "bool":
            if lit.kind != "number" or lit.value not in (0, 1):
                raise self.error(f"{field.name} is a boolean: compare it with 1 or 0", lit.pos)
            return bool(lit.value)
        if lit.kind == "timestamp":
            return lit.value
        if lit.kind == "string" and isinstance(lit.value, str):
            stamp = parse_timestamp(lit.value)
            if stamp is not None:
                return stamp
        raise self.error(f"{field.name} is a date: compare it with TIMESTAMP '2024-01-31T12:00:00'", lit.pos)

    def typed(self, prop: JsonProperty, lit: Literal) -> tuple[ColumnElement[Any], Any]:
        """The property expression matching the literal's kind, and the value to bind."""
        if lit.kind == "number":
            return prop.number(), lit.value
        if isinstance(lit.value, datetime):
            return prop.text(), lit.value.isoformat()
        return prop.text(), lit.value

    # --- predicates ----------------------------------------------------------------------------

    def compile(self, expr: Expr) -> ColumnElement[bool]:
        if isinstance(expr, And):
            return sa.and_(*(self.compile(item) for item in expr.items))
        if isinstance(expr, Or):
            return sa.or_(*(self.compile(item) for item in expr.items))
        if isinstance(expr, Not):
            return sa.not_(self.compile(expr.item))
        field = expr.field
        name = self.canonical(field)
        if name in _ALWAYS_FALSE or name == "ecm:mixinType":
            return self.constant(name, expr)
        if isinstance(expr, Compare):
            return self.compare(field, expr.op, expr.value)
        if isinstance(expr, Like):
            return self.like(expr)
        if isinstance(expr, InList):
            return self.in_list(expr)
        if isinstance(expr, IsNull):
            return self.is_null(expr)
        if isinstance(expr, StartsWith):
            return self.starts_with(expr)
        return self.between(expr)

    def compare(self, field: Field, op: str, lit: Literal) -> ColumnElement[bool]:
        column = self.column(field)
        if column is not None:
            col, kind = column
            if kind == "bool" and op not in ("=", "<>"):
                raise self.error(f"{field.name} only takes = or <>", field.pos)
            return _OPS[op](col, self.coerce(field, kind, lit))
        expr, value = self.typed(self.prop(field), lit)
        return _OPS[op](expr, value)

    def like(self, expr: Like) -> ColumnElement[bool]:
        column = self.column(expr.field)
        if column is not None:
            col, kind = column
            if kind != "string":
                raise self.error(f"LIKE needs a string field, {expr.field.name} is not", expr.field.pos)
        else:
            col = self.prop(expr.field).text()
        pattern = expr.pattern.value
        like = col.ilike if expr.insensitive else col.like
        result: ColumnElement[bool] = like(pattern, escape="\\")
        return sa.not_(result) if expr.negated else result

    def in_list(self, expr: InList) -> ColumnElement[bool]:
        column = self.column(expr.field)
        if column is not None:
            col, kind = column
            values = [self.coerce(expr.field, kind, lit) for lit in expr.values]
            result: ColumnElement[bool] = col.in_(values)
        else:
            prop = self.prop(expr.field)
            numbers = [lit.value for lit in expr.values if lit.kind == "number"]
            strings = [self.typed(prop, lit)[1] for lit in expr.values if lit.kind != "number"]
            parts = []
            if numbers:
                parts.append(prop.number().in_(numbers))
            if strings:
                parts.append(prop.text().in_(strings))
            result = sa.or_(*parts)
        return sa.not_(result) if expr.negated else result

    def is_null(self, expr: IsNull) -> ColumnElement[bool]:
        column = self.column(expr.field)
        result = column[0].is_(None) if column is not None else self.prop(expr.field).is_null()
        return sa.not_(result) if expr.negated else result

    def starts_with(self, expr: StartsWith) -> ColumnElement[bool]:
        value = expr.value.value
        assert isinstance(value, str)
        prefix = value.rstrip("/")
        column = self.column(expr.field)
        if column is not None:
            col, kind = column
            if kind != "string":
                raise self.error(f"STARTSWITH needs a string field, {expr.field.name} is not", expr.field.pos)
            if col.key == "path":  # Nuxeo: the descendants, not the document itself
                return col.like(escape_like(prefix) + "/%", escape="\\")
        else:
            col = self.prop(expr.field).text()
        return sa.or_(col == prefix, col.like(escape_like(prefix) + "/%", escape="\\"))

    def between(self, expr: Between) -> ColumnElement[bool]:
        field = expr.field
        column = self.column(field)
        if column is not None:
            col, kind = column
            low, high = self.coerce(field, kind, expr.low), self.coerce(field, kind, expr.high)
        else:
            if (expr.low.kind == "number") != (expr.high.kind == "number"):
                raise self.error("BETWEEN bounds must both be numbers or both be strings", expr.high.pos)
            prop = self.prop(field)
            col, low = self.typed(prop, expr.low)
            high = self.typed(prop, expr.high)[1]
        result = col.between(low, high)
        return sa.not_(result) if expr.negated else result

    def constant(self, name: str, expr: Expr) -> ColumnElement[bool]:
        """Predicates on fields that have one value for every document here."""
        if name == "ecm:mixinType":  # no document has a facet
            if isinstance(expr, Compare) and expr.op in ("=", "<>"):
                return sa.true() if expr.op == "<>" else sa.false()
            if isinstance(expr, InList):
                return sa.true() if expr.negated else sa.false()
        elif isinstance(expr, Compare) and expr.op in ("=", "<>"):
            if expr.value.kind != "number" or expr.value.value not in (0, 1):
                raise self.error(f"{name} is a boolean: compare it with 1 or 0", expr.value.pos)
            return sa.true() if (expr.value.value == 0) == (expr.op == "=") else sa.false()
        assert not isinstance(expr, (And, Or, Not))
        raise self.error(f"unsupported predicate on {name}", expr.field.pos)

    # --- order and select ----------------------------------------------------------------------

    def order_keys(self) -> tuple[ColumnElement[Any], ...]:
        keys: list[ColumnElement[Any]] = []
        for key in self.query.order_by:
            column = self.column(key.field)
            if column is not None:
                exprs: Sequence[ColumnElement[Any]] = [column[0]]
            elif self.canonical(key.field).startswith("ecm:"):
                raise self.error(f"cannot order by {key.field.name}", key.field.pos)
            else:  # strings before numbers, each in its own order, on every database
                prop = self.prop(key.field)
                exprs = [prop.number(), prop.text()]
            keys.extend(self.ordered(e, key.descending) for e in exprs)
        keys.append(self.table.c.id)  # a total order: pages and ties are stable
        return tuple(keys)

    def ordered(self, expr: ColumnElement[Any], descending: bool) -> ColumnElement[Any]:
        # NULLs first ascending and last descending, as SQLite and MariaDB do natively.
        if descending:
            return expr.desc().nulls_last() if self.dialect == "postgresql" else expr.desc()
        return expr.asc().nulls_first() if self.dialect == "postgresql" else expr.asc()

    def selected(self) -> tuple[tuple[str, ColumnElement[Any]], ...] | None:
        if self.query.select is None:
            return None
        out: list[tuple[str, ColumnElement[Any]]] = []
        for field in self.query.select:
            column = self.column(field)
            if column is not None:
                out.append((self.canonical(field), column[0]))
            elif self.canonical(field).startswith("ecm:"):
                raise self.error(f"cannot select {field.name}", field.pos)
            else:
                out.append((field.name, self.prop(field).json()))
        return tuple(out)

    def build(self) -> CompiledQuery:
        query = self.query
        clauses: list[ColumnElement[bool]] = []
        if query.types:
            clauses.append(self.table.c.type.in_(list(query.types)))
        if query.where is not None:
            clauses.append(self.compile(query.where))
        where = sa.and_(sa.true(), *clauses) if clauses else sa.true()
        return CompiledQuery(query, where, self.order_keys(), query.limit, query.offset, self.selected())


def compile_query(query: Query, table: sa.Table, dialect: str) -> CompiledQuery:
    """Compile ``query`` against the documents ``table`` for ``dialect`` (``sqlite``, ``postgresql``,
    ``mysql``, ``mariadb``)."""
    return _Compiler(query, table, dialect).build()
