"""The WorkManager: run Works later, reliably, on per-queue thread pools (Nuxeo's WorkManager).

``open_work_manager(url, queues=..., processing=...)`` picks the implementation by URL:
``threads://`` (in memory), ``redis://host:6379/0?prefix=conveyor:work:`` (persistent queues
shared by every node), ``stream`` (the default: Works in ``work/<queue>`` logs, state in a
key-value store).
A node (:class:`conveyor.Conveyor`) passes its own settings: ``open_work_manager(node)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from conveyor.errors import ConfigurationError, UnknownWorkTypeError, WorkError, WorkQueueFullError
from conveyor.registry import BackendRegistry
from conveyor.work.api import (
    DocumentLocation,
    Progress,
    QueueConfig,
    Scheduling,
    Work,
    WorkQueueMetrics,
    WorkState,
    register_work_type,
    registered_work_types,
    work_type,
)
from conveyor.work.codec import DeadLetter, WorkPayloadError
from conveyor.work.manager import DEFAULT_QUEUE, WorkManager
from conveyor.work.threads import ThreadsWorkManager

__all__ = [
    "DEFAULT_QUEUE",
    "DeadLetter",
    "DocumentLocation",
    "Progress",
    "QueueConfig",
    "Scheduling",
    "ThreadsWorkManager",
    "UnknownWorkTypeError",
    "Work",
    "WorkError",
    "WorkManager",
    "WorkPayloadError",
    "WorkQueueFullError",
    "WorkQueueMetrics",
    "WorkState",
    "open_work_manager",
    "register_work_type",
    "registered_work_types",
    "work_registry",
    "work_type",
]

work_registry = BackendRegistry(
    "work",
    {
        "threads": "conveyor.work.threads:ThreadsWorkManager",
        "memory": "conveyor.work.threads:ThreadsWorkManager",
        "redis": "conveyor.work.redis_manager:RedisWorkManager",
        "rediss": "conveyor.work.redis_manager:RedisWorkManager",
        "stream": "conveyor.work.stream:StreamWorkManager",
    },
)


def open_work_manager(
    source: Any = "threads://",
    queues: Iterable[QueueConfig] = (),
    processing: Mapping[str, bool] | None = None,
    **options: Any,
) -> WorkManager:
    """A WorkManager for a URL (``threads://``, ``redis://...``, ``stream``) or for a node.

    Given a :class:`conveyor.Conveyor` node, the URL, queues and processing switches come from
    its ``[work]`` settings, and the node's id and log manager are used. The manager is not
    started: call ``start()`` (a node does it in ``node.start()``).
    """
    if not isinstance(source, str):
        return _from_node(source, **options)
    cls = work_registry.resolve(source)
    manager: WorkManager = cls.from_url(source, queues=tuple(queues), processing=processing, **options)
    return manager


def _from_node(node: Any, **options: Any) -> WorkManager:
    settings = node.settings.work
    queues = tuple(
        QueueConfig(
            id=q.id,
            name=q.name,
            max_threads=q.max_threads,
            categories=tuple(q.categories),
            processing=q.processing,
            capacity=q.capacity,
            partitions=q.partitions,
            max_recoveries=q.max_recoveries,
        )
        for q in settings.queues
    )
    url = node.url(settings.url) if "{" in settings.url else settings.url
    cls = work_registry.resolve(url)
    options.setdefault("node_id", node.node_id)
    if getattr(cls, "needs_node", False):
        options.setdefault("node", node)
    elif url.startswith(("threads", "memory")):
        options.setdefault("log_manager", lambda: node.log_manager)
    try:
        manager: WorkManager = cls.from_url(
            url, queues=queues, processing=dict(settings.processing), **options
        )
    except TypeError as exc:
        raise ConfigurationError(f"work: cannot open {url!r}: {exc}") from exc
    return manager
