"""Partitioned append-only logs with consumer groups (Nuxeo's LogManager), chosen by URL.

``open_log_manager("local:///var/conveyor/log")`` (memory-mapped segment files, the embedded
default), ``"memory://"`` (in-process, for tests) or ``"kafka://host:9092?prefix=nuxeo-"``.
"""

from __future__ import annotations

from typing import Any

from conveyor.errors import BackendUnavailableError, ConfigurationError, ConveyorError
from conveyor.log.api import LogAppender, LogCapabilities, LogManager, LogTailer
from conveyor.log.names import Name
from conveyor.log.types import (
    LogLag,
    LogOffset,
    LogPartition,
    LogRecord,
    RebalanceListener,
    java_string_hash,
    partition_for_key,
)
from conveyor.registry import BackendRegistry, redact_url

__all__ = [
    "LogAppender",
    "LogCapabilities",
    "LogLag",
    "LogManager",
    "LogOffset",
    "LogPartition",
    "LogRecord",
    "LogTailer",
    "Name",
    "RebalanceListener",
    "java_string_hash",
    "log_registry",
    "open_log_manager",
    "partition_for_key",
]

log_registry = BackendRegistry(
    "log",
    {
        "memory": "conveyor.log.memory:MemoryLogManager",
        "local": "conveyor.log.local:LocalLogManager",
        "file": "conveyor.log.local:LocalLogManager",
        "kafka": "conveyor.log.kafka:KafkaLogManager",
    },
)


def open_log_manager(url: str, **options: Any) -> LogManager:
    """Open the log manager for ``url``; ``options`` override settings of the URL query."""
    cls = log_registry.resolve(url)
    try:
        manager: LogManager = cls.from_url(url, **options)
    except ConveyorError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"cannot open log {redact_url(url)!r}: {exc}") from exc
    except OSError as exc:
        raise BackendUnavailableError(f"cannot open log {redact_url(url)!r}: {exc}") from exc
    return manager
