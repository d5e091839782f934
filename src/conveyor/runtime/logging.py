"""Structured logging for nodes: text, ``key=value`` or JSON lines, with the node id in context.

Code adds context with :func:`log_context` (e.g. ``queue``, ``computation``, ``work_id``,
``key``); every record logged inside the block carries it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from conveyor.logcontext import current_log_context, log_context

__all__ = ["configure_logging", "log_context"]


class _ContextFilter(logging.Filter):
    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.conveyor_context = {"node": self.node_id, **current_log_context()}
        return True


class _KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            **getattr(record, "conveyor_context", {}),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return " ".join(f"{k}={_quote(v)}" for k, v in fields.items())


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname,
            "logger": record.name,
            **getattr(record, "conveyor_context", {}),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return json.dumps(fields, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = getattr(record, "conveyor_context", {})
        extra = " ".join(f"{k}={v}" for k, v in context.items() if k != "node")
        base = super().format(record)
        return f"{base} [{context.get('node', '')}{' ' + extra if extra else ''}]"


def _quote(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or "=" in text or '"' in text or not text) else text


def configure_logging(node_id: str, fmt: str = "text", level: str = "INFO") -> None:
    """Send the ``conveyor`` loggers to stderr in ``fmt`` (text, kv or json) at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter(node_id))
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    elif fmt == "kv":
        handler.setFormatter(_KeyValueFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("conveyor")
    for old in [h for h in logger.handlers if getattr(h, "_conveyor", False)]:
        logger.removeHandler(old)
    handler._conveyor = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
