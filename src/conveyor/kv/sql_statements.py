"""The SQL key-value store's statements, built once per table and dialect with bind parameters.

Building a SQLAlchemy statement costs more than running it on SQLite, so every hot statement is
built here once and executed with a parameter dict: ``p_store``, ``p_k`` (key bytes), ``p_v``
(value bytes), ``p_exp`` (new expiry or None), ``p_old`` (expected value bytes), ``p_now`` (epoch
seconds); :func:`select_many` takes ``p_k0`` … ``p_k{n-1}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

__all__ = ["Compiled", "Statements", "compile_for", "select_many"]


def _p(name: str, type_: Any = None) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=type_)


@dataclass(frozen=True)
class Statements:
    """The prebuilt statements of one key-value table on one dialect."""

    select_one: sa.Select[Any]
    select_locked: sa.Select[Any]
    upsert: Any
    insert_if_absent: Any | None  # None where the dialect cannot say "inserted or not" in one statement
    insert: sa.Insert
    update: sa.Update
    update_if: sa.Update
    delete: sa.Delete
    delete_if: sa.Delete
    set_ttl: sa.Update
    purge: sa.Delete

    @classmethod
    def build(cls, t: sa.Table, dialect: str) -> Statements:
        """The statements of table ``t`` for ``dialect`` (``sqlite``, ``postgresql``, ``mysql``, …)."""
        c = t.c
        now = _p("p_now", sa.Double())
        row = sa.and_(c.store == _p("p_store"), c.k == _p("p_k"))
        live = sa.or_(c.expires.is_(None), c.expires > now)
        same = c.v == _p("p_old", t.c.v.type)
        values = {"store": _p("p_store"), "k": _p("p_k"), "v": _p("p_v"), "expires": _p("p_exp", sa.Double())}
        new = {"v": _p("p_v"), "expires": _p("p_exp", sa.Double())}
        upsert: Any
        insert_if_absent: Any | None = None
        if dialect in ("mysql", "mariadb"):
            my = mysql.insert(t).values(values)
            upsert = my.on_duplicate_key_update(v=my.inserted.v, expires=my.inserted.expires)
        else:
            make = postgresql.insert if dialect == "postgresql" else sqlite.insert
            ins = make(t).values(values)
            keys = [c.store, c.k]
            upsert = ins.on_conflict_do_update(
                index_elements=keys, set_={"v": ins.excluded.v, "expires": ins.excluded.expires}
            )
            # Inserts, or replaces an expired row; the row count says whether it did.
            insert_if_absent = ins.on_conflict_do_update(
                index_elements=keys,
                set_={"v": ins.excluded.v, "expires": ins.excluded.expires},
                where=sa.and_(c.expires.is_not(None), c.expires <= now),
            )
        return cls(
            select_one=sa.select(c.v).where(row, live),
            select_locked=sa.select(c.v, c.expires).where(row).with_for_update(),
            upsert=upsert,
            insert_if_absent=insert_if_absent,
            insert=sa.insert(t).values(values),
            update=sa.update(t).where(row).values(new),
            update_if=sa.update(t).where(row, same, live).values(new),
            delete=sa.delete(t).where(row),
            delete_if=sa.delete(t).where(row, same, live),
            set_ttl=sa.update(t).where(row, live).values(expires=_p("p_exp", sa.Double())),
            purge=sa.delete(t).where(c.store == _p("p_store"), c.expires <= now),
        )


def select_many(t: sa.Table, n: int) -> sa.Select[Any]:
    """The live rows of ``n`` keys (``p_k0`` …) of store ``p_store`` in table ``t``."""
    c = t.c
    keys = [_p(f"p_k{i}") for i in range(n)]
    live = sa.or_(c.expires.is_(None), c.expires > _p("p_now", sa.Double()))
    return sa.select(c.k, c.v).where(c.store == _p("p_store"), c.k.in_(keys), live)


class Compiled(NamedTuple):
    """A statement's SQL text for one dialect, run on the driver's cursor without SQLAlchemy."""

    sql: str
    positional: tuple[str, ...] | None  # parameter order for positional paramstyles (SQLite's ``?``)

    def args(self, params: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """The driver arguments for ``params``."""
        if self.positional is None:
            return params
        return tuple(params[name] for name in self.positional)


def compile_for(statement: sa.Executable, dialect: sa.Dialect) -> Compiled:
    """``statement`` compiled once for ``dialect``."""
    compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    order = compiled.positiontup if dialect.positional else None
    return Compiled(compiled.string, None if order is None else tuple(order))
