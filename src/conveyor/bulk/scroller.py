"""Scrollers: how a command's query becomes the ids the action runs on.

A command names its scroller (``BulkCommand.scroller``; None: the action's ``default_scroller``):

=============== =====================================================================
``repository``  the query is NXQL, run on the repository (keyset pagination by id)
``sql``         the query is a SQL ``SELECT`` whose first column is the id, run on the
                repository's database
``list``        the query is the ids themselves, separated by commas, spaces or newlines
``file``        the query is the path of a text file with one id per line
generic         any function ``(query, params) -> iterable of str`` registered with
                :func:`bulk_scroller`, for items that are not documents
=============== =====================================================================
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from conveyor.bulk.command import BulkCommand
from conveyor.errors import BulkError, BulkValidationError, QueryError

if TYPE_CHECKING:
    from conveyor.repository import Repository

__all__ = [
    "FileScroller",
    "GenericScroller",
    "ListScroller",
    "RepositoryScroller",
    "ScrollContext",
    "Scroller",
    "SqlScroller",
    "bulk_scroller",
    "get_scroller",
    "register_scroller",
    "scroll_pages",
]


@dataclass(frozen=True)
class ScrollContext:
    """What a scroller may use: the service's repository (None if it has none)."""

    repository: Repository | None = None

    def require_repository(self, scroller: str) -> Repository:
        """The repository, or a BulkValidationError naming the scroller."""
        if self.repository is None:
            raise BulkValidationError(f"scroller {scroller!r} needs a repository; the service has none")
        return self.repository


@runtime_checkable
class Scroller(Protocol):
    """Turns a command's query into lists of ids."""

    def validate(self, command: BulkCommand, context: ScrollContext) -> None:
        """Raise BulkValidationError when the query cannot be scrolled (called before submit)."""

    def scroll(self, command: BulkCommand, context: ScrollContext, size: int) -> Iterator[list[str]]:
        """The ids, in lists of up to ``size``, in a stable order."""


Page = tuple[list[str], list[Any] | None]
"""A page of ids and their storage hints (one per id), or None when the scroller has none."""


def scroll_pages(
    scroller: Scroller, command: BulkCommand, context: ScrollContext, size: int
) -> Iterator[Page]:
    """The pages of ``scroller``, with storage hints when it gives them (a ``scroll_with_hints``
    method, as :class:`RepositoryScroller` has: optional, for the repository's bulk changes)."""
    with_hints = getattr(scroller, "scroll_with_hints", None)
    if with_hints is not None:
        pages: Iterator[Page] = with_hints(command, context, size)
        return pages
    return ((ids, None) for ids in scroller.scroll(command, context, size))


def _batches(ids: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(ids)
    while batch := list(islice(iterator, size)):
        yield batch


class RepositoryScroller:
    """NXQL on the repository (the default)."""

    def validate(self, command: BulkCommand, context: ScrollContext) -> None:
        try:
            context.require_repository("repository").check_query(command.query)
        except QueryError as exc:
            raise BulkValidationError(f"invalid query for bulk action {command.action!r}: {exc}") from exc

    def scroll(self, command: BulkCommand, context: ScrollContext, size: int) -> Iterator[list[str]]:
        return context.require_repository("repository").scroll_ids(command.query, batch_size=size)

    def scroll_with_hints(self, command: BulkCommand, context: ScrollContext, size: int) -> Iterator[Page]:
        """The pages of :meth:`scroll`, each with its ids' storage hints (SQLite rowids)."""
        return context.require_repository("repository").scroll_with_hints(command.query, batch_size=size)


_SQL_RE = re.compile(r"\s*(select|with)\b", re.IGNORECASE)


class SqlScroller:
    """A SQL ``SELECT`` on the repository's database; the first column of each row is an id.

    The query is run as given (it is the submitter's SQL, not user input to escape): only one
    statement, starting with SELECT or WITH, is accepted.
    """

    def validate(self, command: BulkCommand, context: ScrollContext) -> None:
        context.require_repository("sql")
        if not _SQL_RE.match(command.query) or ";" in command.query.strip().rstrip(";"):
            raise BulkValidationError(
                f"scroller 'sql' needs one SELECT statement, got {command.query[:80]!r}"
            )

    def scroll(self, command: BulkCommand, context: ScrollContext, size: int) -> Iterator[list[str]]:
        import sqlalchemy as sa

        engine = context.require_repository("sql").engine  # the repository's pool, read only
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True).execute(
                sa.text(command.query.strip().rstrip(";"))
            )
            while rows := result.fetchmany(size):
                yield [str(row[0]) for row in rows]


_SEPARATORS = re.compile(r"[\s,]+")


class ListScroller:
    """The ids are the query itself, separated by commas or white space (Nuxeo's static scroll)."""

    def validate(self, command: BulkCommand, context: ScrollContext) -> None:
        if not command.query.strip():
            raise BulkValidationError("scroller 'list' needs ids in the query")

    def scroll(self, command: BulkCommand, context: ScrollContext, size: int) -> Iterator[list[str]]:
        return _batches((i for i in _SEPARATORS.split(command.query) if i), size)


class FileScroller:
    """The query is the path of a UTF-8 text file with one id per line (blank lines ignored)."""

    def validate(self, command: BulkCommand, context: ScrollContext) -> None:
        if not Path(command.query).is_file():
            raise BulkValidationError(f"scroller 'file': no file {command.query!r}")

    def scroll(self, command: BulkCommand, context: ScrollContext, size: int) -> Iterator[list[str]]:
        with open(command.query, encoding="utf-8") as lines:
            yield from _batches((s for line in lines if (s := line.strip())), size)


ItemFunction = Callable[[str, dict[str, Any]], Iterable[str]]


class GenericScroller:
    """Items that are not documents: ``function(query, params)`` yields their ids (or any keys)."""

    def __init__(
        self, function: ItemFunction, validator: Callable[[str, dict[str, Any]], None] | None = None
    ) -> None:
        self.function = function
        self.validator = validator

    def validate(self, command: BulkCommand, context: ScrollContext) -> None:
        if self.validator is not None:
            try:
                self.validator(command.query, command.params)
            except BulkValidationError:
                raise
            except (ValueError, TypeError) as exc:
                raise BulkValidationError(f"invalid query for scroller of {command.action!r}: {exc}") from exc

    def scroll(self, command: BulkCommand, context: ScrollContext, size: int) -> Iterator[list[str]]:
        return _batches((str(item) for item in self.function(command.query, command.params)), size)


_SCROLLERS: dict[str, Scroller] = {
    "repository": RepositoryScroller(),
    "document": RepositoryScroller(),
    "sql": SqlScroller(),
    "list": ListScroller(),
    "static": ListScroller(),
    "file": FileScroller(),
}
_LOCK = threading.Lock()


def register_scroller(name: str, scroller: Scroller) -> Scroller:
    """Register ``scroller`` as ``name`` (replacing any scroller of that name)."""
    if not isinstance(scroller, Scroller):
        raise BulkError(f"scroller {name!r} must have validate() and scroll(), got {scroller!r}")
    with _LOCK:
        _SCROLLERS[name] = scroller
    return scroller


def bulk_scroller(name: str) -> Callable[[ItemFunction], ItemFunction]:
    """Register a function ``(query, params) -> iterable of ids`` as the generic scroller ``name``."""

    def decorate(function: ItemFunction) -> ItemFunction:
        register_scroller(name, GenericScroller(function))
        return function

    return decorate


def get_scroller(name: str) -> Scroller:
    """The scroller registered as ``name``; BulkValidationError naming the known ones otherwise."""
    with _LOCK:
        found = _SCROLLERS.get(name)
        if found is None:
            raise BulkValidationError(f"unknown scroller {name!r}; known: {', '.join(sorted(_SCROLLERS))}")
        return found
