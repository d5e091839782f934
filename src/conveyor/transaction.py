"""Transactions for after-commit actions: ``with conveyor.transaction(): wm.schedule(work)``.

A :class:`Transaction` collects *synchronizations* (a pair of callbacks) that run when it ends:
the commit callbacks when it commits, the rollback callbacks when it rolls back. The WorkManager
registers one per Work scheduled with ``after_commit=True``, so a Work is queued only when the
transaction commits and dropped when it rolls back (Nuxeo's JTA ``Synchronization``).

The current transaction lives in a :mod:`contextvars` variable, so it follows threads and asyncio
tasks the way a caller expects. Nesting joins the outer transaction (JTA's REQUIRED propagation):
an inner block that exits with an exception marks the whole transaction rollback-only, and only the
outermost block commits or rolls back.

``conveyor.transaction(session)`` binds to an SQLAlchemy :class:`~sqlalchemy.orm.Session`
instead: the callbacks run on the session's ``after_commit`` / ``after_rollback`` events, so Works
scheduled in the block are queued when ``session.commit()`` succeeds.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
import types
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from conveyor.errors import ConveyorError

__all__ = [
    "Transaction",
    "TransactionError",
    "current_transaction",
    "register_synchronization",
    "transaction",
]

logger = logging.getLogger("conveyor.transaction")

Callback = Callable[[], None]

_current: contextvars.ContextVar[Transaction | None] = contextvars.ContextVar(
    "conveyor_transaction", default=None
)


class TransactionError(ConveyorError):
    """A transaction is used after it ended, or a commit callback failed."""


class Transaction:
    """An after-commit scope: callbacks run once, on commit or on rollback."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._on_commit: list[Callback] = []
        self._on_rollback: list[Callback] = []
        self._rollback_only = False
        self._status = "active"

    @property
    def status(self) -> str:
        """``active``, ``committed`` or ``rolledback``."""
        return self._status

    @property
    def active(self) -> bool:
        """True until the transaction commits or rolls back."""
        return self._status == "active"

    @property
    def rollback_only(self) -> bool:
        """True when the transaction can only roll back."""
        return self._rollback_only

    def set_rollback_only(self) -> None:
        """Make the end of the transaction a rollback, whatever happens."""
        self._rollback_only = True

    def register(self, on_commit: Callback | None = None, on_rollback: Callback | None = None) -> None:
        """Run ``on_commit`` after a commit, ``on_rollback`` after a rollback."""
        with self._lock:
            if not self.active:
                raise TransactionError(f"transaction already {self._status}")
            if on_commit is not None:
                self._on_commit.append(on_commit)
            if on_rollback is not None:
                self._on_rollback.append(on_rollback)

    def commit(self) -> None:
        """Commit (or roll back when rollback-only) and run the matching callbacks.

        Every commit callback runs even if one fails; the first failure is then raised as a
        :class:`TransactionError`.
        """
        if self._rollback_only:
            self.rollback()
            return
        callbacks = self._finish("committed")
        errors: list[BaseException] = []
        for callback in callbacks:
            try:
                callback()
            except Exception as exc:  # the others must still run
                logger.exception("after-commit callback failed")
                errors.append(exc)
        if errors:
            raise TransactionError(f"{len(errors)} after-commit callback(s) failed: {errors[0]}") from errors[
                0
            ]

    def rollback(self) -> None:
        """Roll back: drop the commit callbacks, run the rollback ones."""
        for callback in self._finish("rolledback"):
            try:
                callback()
            except Exception:  # a rollback must always complete
                logger.exception("after-rollback callback failed")

    def _finish(self, status: str) -> list[Callback]:
        with self._lock:
            if not self.active:
                raise TransactionError(f"transaction already {self._status}")
            self._status = status
            callbacks = self._on_commit if status == "committed" else self._on_rollback
            self._on_commit, self._on_rollback = [], []
            return callbacks

    def __repr__(self) -> str:
        return f"<Transaction {self._status}{' rollback-only' if self._rollback_only else ''}>"


class _SessionTransaction(Transaction):
    """A transaction that ends when an SQLAlchemy session commits or rolls back."""

    # Listeners cannot be removed while SQLAlchemy dispatches the event that fired them, so the
    # ones that fired are removed when the next transaction binds to the same session.
    _stale: weakref.WeakKeyDictionary[Any, list[_SessionTransaction]] = weakref.WeakKeyDictionary()

    def __init__(self, session: Any) -> None:
        super().__init__()
        from sqlalchemy import event

        self._session = session
        self._event = event
        for old in self._stale.pop(session, []):
            old._detach()
        event.listen(session, "after_commit", self._after_commit)
        event.listen(session, "after_rollback", self._after_rollback)

    def _detach(self) -> None:
        for name, fn in (("after_commit", self._after_commit), ("after_rollback", self._after_rollback)):
            if self._event.contains(self._session, name, fn):
                self._event.remove(self._session, name, fn)

    def _ended(self) -> None:
        self._stale.setdefault(self._session, []).append(self)

    def _after_commit(self, session: Any) -> None:
        if self.active:
            self._ended()
            self.commit()

    def _after_rollback(self, session: Any) -> None:
        if self.active:
            self._ended()
            self.rollback()

    def abandon(self) -> None:
        """The block failed before the session ended: drop everything."""
        if self.active:
            self._ended()
            self.rollback()


def current_transaction() -> Transaction | None:
    """The active transaction of this context, or None."""
    tx = _current.get()
    return tx if tx is not None and tx.active else None


def register_synchronization(on_commit: Callback, on_rollback: Callback | None = None) -> bool:
    """Defer ``on_commit`` to the commit of the current transaction.

    Returns False (and calls nothing) when no transaction is active: the caller acts at once.
    """
    tx = current_transaction()
    if tx is None:
        return False
    tx.register(on_commit, on_rollback)
    return True


@contextmanager
def transaction(session: Any = None) -> Iterator[Transaction]:
    """Open (or join) a transaction; Works scheduled inside are queued on commit.

    Without ``session``: the block commits when it exits normally and rolls back when it raises;
    a nested block joins the outer one. With an SQLAlchemy ``session``: the block's Works are
    queued when the session commits and dropped when it rolls back (or when the block raises).

    >>> import conveyor
    >>> done = []
    >>> with conveyor.transaction() as tx:
    ...     tx.register(lambda: done.append("committed"))
    ...     done.append("inside")
    >>> done
    ['inside', 'committed']
    """
    outer = current_transaction()
    if session is None and outer is not None:
        token = _current.set(outer)
        try:
            yield outer
        except BaseException:
            outer.set_rollback_only()
            raise
        finally:
            _current.reset(token)
        return

    if session is not None:
        stx = _SessionTransaction(session)
        token = _current.set(stx)
        try:
            yield stx
        except BaseException:
            stx.abandon()
            raise
        finally:
            _current.reset(token)
        return

    tx = Transaction()
    token = _current.set(tx)
    try:
        yield tx
    except BaseException:
        _current.reset(token)
        tx.rollback()
        raise
    _current.reset(token)
    tx.commit()


class _CallableModule(types.ModuleType):
    # Importing ``conveyor.transaction`` binds the *module* as attribute ``transaction`` of the
    # ``conveyor`` package, shadowing the re-exported function; making the module callable keeps
    # ``conveyor.transaction()`` working whichever wins.
    def __call__(self, session: Any = None) -> AbstractContextManager[Transaction]:
        return transaction(session)


sys.modules[__name__].__class__ = _CallableModule
