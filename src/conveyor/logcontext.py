"""Context added to log records (``queue``, ``computation``, ``work_id`` ...), for every layer.

Lives at the bottom of the layers so the WorkManager and the stream runners can tag what they
log; the runtime's formatters (``conveyor.runtime.logging``) print it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

__all__ = ["current_log_context", "log_context"]

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "conveyor_log_context", default=None
)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every log record emitted in this block (this thread / task)."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def current_log_context() -> dict[str, Any]:
    """The fields in context here (empty outside any :func:`log_context`)."""
    return _context.get() or {}
