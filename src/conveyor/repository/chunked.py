"""A statement run over many chunks of ids, its SQL rendered once per chunk length."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.dml import UpdateBase

__all__ = ["IDS", "ChunkedStatement"]

IDS = "ids"
"""The name of the expanding bind parameter that takes each chunk."""


class _Param:
    """A parameter given at each execution (by name), converted by ``process``."""

    __slots__ = ("name", "process")

    def __init__(self, name: str, process: Callable[[Any], Any] | None) -> None:
        self.name = name
        self.process = process

    def value(self, params: Mapping[str, Any]) -> Any:
        value = params[self.name]
        return value if self.process is None else self.process(value)


class ChunkedStatement:
    """``stmt`` (with an expanding ``ids`` parameter) executed once per chunk of ids.

    SQLAlchemy renders an expanding ``IN`` list, and converts its parameters, on every execution:
    for 1000 ids that cost a third of a bulk ``UPDATE`` on SQLite. Here the SQL and the constant
    parameters are prepared once per chunk length and sent to the driver as they are; ``varying``
    names the parameters given at each execution. Dialects with named parameters run the
    statement the ordinary way. Meant to be kept and reused (the statement must not change).
    """

    def __init__(self, stmt: UpdateBase, dialect: Dialect, varying: Sequence[str] = ()) -> None:
        self._stmt = stmt
        self._dialect = dialect
        self._varying = tuple(varying)
        self._positional = bool(dialect.positional)
        self._compiled = stmt.compile(dialect=dialect) if self._positional else None
        # chunk length -> (sql, parameters before the ids, after them, whether some vary)
        self._rendered: dict[int, tuple[str, list[Any], list[Any], bool]] = {}

    def _render(self, count: int) -> tuple[str, list[Any], list[Any], bool]:
        compiled = self._compiled
        assert compiled is not None
        names = [f"{IDS}_{i}" for i in range(1, count + 1)]
        placeholders: dict[str, Any] = {name: None for name in self._varying}
        state = compiled.construct_expanded_state({**placeholders, IDS: names})
        order = list(state.positiontup or [])
        first = order.index(names[0]) if count else len(order)
        processors = self._processors()
        values: list[Any] = []
        for name in order[:first] + order[first + count :]:
            process = processors.get(name)
            if name in placeholders:
                values.append(_Param(name, process))
            else:
                value = state.parameters[name]
                values.append(process(value) if process is not None else value)
        varies = any(isinstance(v, _Param) for v in values)
        rendered = (state.statement, values[:first], values[first:], varies)
        self._rendered[count] = rendered
        return rendered

    def _processors(self) -> dict[str, Callable[[Any], Any]]:
        compiled = self._compiled
        assert compiled is not None
        found: dict[str, Callable[[Any], Any]] = {}
        for name, bind in compiled.binds.items():
            process = bind.type.dialect_impl(self._dialect).bind_processor(self._dialect)
            if process is not None:
                found[name] = process
        return found

    def execute(self, conn: Connection, ids: Sequence[str], params: Mapping[str, Any] | None = None) -> int:
        """Run the statement on ``ids`` (one chunk of strings) with the ``varying`` ``params``,
        in ``conn``'s transaction; the row count."""
        params = params or {}
        if not self._positional:
            return int(conn.execute(self._stmt, {**params, IDS: list(ids)}).rowcount)
        sql, before, after, varies = self._rendered.get(len(ids)) or self._render(len(ids))
        if varies:
            before = [v.value(params) if isinstance(v, _Param) else v for v in before]
            after = [v.value(params) if isinstance(v, _Param) else v for v in after]
        return int(conn.exec_driver_sql(sql, (*before, *ids, *after)).rowcount)
