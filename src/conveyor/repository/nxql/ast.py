"""The parsed form of an NXQL query: plain frozen dataclasses, each node keeping its offset."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal as TypingLiteral

__all__ = [
    "And",
    "Between",
    "Compare",
    "Expr",
    "Field",
    "InList",
    "IsNull",
    "Like",
    "Literal",
    "Not",
    "Or",
    "OrderKey",
    "Query",
    "StartsWith",
]

LiteralKind = TypingLiteral["string", "number", "timestamp"]


@dataclass(frozen=True)
class Field:
    """A field reference: ``ecm:path``, ``dc:title``, ``file:content/name``."""

    name: str
    pos: int


@dataclass(frozen=True)
class Literal:
    """A constant: a string, a number (int or float) or a timestamp (``DATE``/``TIMESTAMP``)."""

    value: str | int | float | datetime
    kind: LiteralKind
    pos: int


@dataclass(frozen=True)
class Compare:
    """``field op value`` with op one of ``= <> < <= > >=`` (``!=`` is read as ``<>``)."""

    field: Field
    op: str
    value: Literal


@dataclass(frozen=True)
class Like:
    """``field [NOT] LIKE|ILIKE pattern`` (``%`` and ``_`` wildcards, ``\\`` escapes)."""

    field: Field
    pattern: Literal
    negated: bool
    insensitive: bool


@dataclass(frozen=True)
class InList:
    """``field [NOT] IN (v1, v2, ...)``."""

    field: Field
    values: tuple[Literal, ...]
    negated: bool


@dataclass(frozen=True)
class IsNull:
    """``field IS [NOT] NULL``."""

    field: Field
    negated: bool


@dataclass(frozen=True)
class StartsWith:
    """``ecm:path STARTSWITH '/a/b'``: the descendants of ``/a/b``."""

    field: Field
    value: Literal


@dataclass(frozen=True)
class Between:
    """``field [NOT] BETWEEN low AND high`` (bounds included)."""

    field: Field
    low: Literal
    high: Literal
    negated: bool


@dataclass(frozen=True)
class And:
    """All of ``items``."""

    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    """Any of ``items``."""

    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    """Not ``item``."""

    item: Expr


Expr = Compare | Like | InList | IsNull | StartsWith | Between | And | Or | Not


@dataclass(frozen=True)
class OrderKey:
    """One ``ORDER BY`` key."""

    field: Field
    descending: bool


@dataclass(frozen=True)
class Query:
    """A whole query. ``select`` is None for ``*``; ``types`` is empty for ``FROM Document``."""

    text: str
    select: tuple[Field, ...] | None
    types: tuple[str, ...]
    where: Expr | None
    order_by: tuple[OrderKey, ...]
    limit: int | None
    offset: int | None
