"""The Work contract: :class:`Work`, :class:`Scheduling`, :class:`WorkState`, metrics and queues.

A Work is a unit of background work. Subclass :class:`Work`, declare its state as annotated
public fields (as in a dataclass) and implement :meth:`Work.work`::

    class Resize(Work):
        category = "pictures"          # class-level settings
        retry_count = 2
        doc_id: str                    # state: public fields, stored as data
        width: int = 256

        def work(self) -> None:
            self.set_progress(0, 1)
            ...
            self.set_progress(1, 1)

Subclassing registers the class under its type name (``type_name``, default its
``__qualname__``); only registered classes can be rebuilt from a queue, and a Work is stored as
its type name plus its fields, never pickled. Delivery is at-least-once: a Work may run more
than once (after a crash, or a shutdown that interrupts it), so ``work()`` should be safe to repeat.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
import time
import uuid
from collections.abc import Awaitable
from typing import Any, ClassVar, dataclass_transform

from conveyor.errors import ConfigurationError

__all__ = [
    "DocumentLocation",
    "Progress",
    "QueueConfig",
    "Scheduling",
    "Work",
    "WorkQueueMetrics",
    "WorkState",
    "new_work_id",
]


def new_work_id() -> str:
    """A fresh random Work id (Nuxeo's ``nanoTime.random`` shape)."""
    return f"{time.monotonic_ns()}.{uuid.uuid4().int & 0x7FFFFFFF}"


class WorkState(enum.Enum):
    """Where a Work is: waiting in its queue, running, or neither (done, canceled, unknown)."""

    UNKNOWN = "UNKNOWN"
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"


class Scheduling(enum.Enum):
    """How :meth:`WorkManager.schedule` treats a Work whose id is already known (Nuxeo's values)."""

    ENQUEUE = "ENQUEUE"
    """Queue it (an idempotent Work already waiting is not queued twice)."""
    CANCEL_SCHEDULED = "CANCEL_SCHEDULED"
    """Cancel the waiting Work with this id (a running one is asked to stop); queue nothing."""
    IF_NOT_SCHEDULED = "IF_NOT_SCHEDULED"
    """Queue it only if no Work with this id is waiting."""
    IF_NOT_RUNNING_OR_SCHEDULED = "IF_NOT_RUNNING_OR_SCHEDULED"
    """Queue it only if no Work with this id is waiting or running."""


@dataclasses.dataclass(frozen=True)
class WorkQueueMetrics:
    """Counts for one queue: waiting, running now, completed and canceled so far.

    Compares as the 4 counts (``WorkQueueMetrics(0, 0, 5, 0)``), whatever the queue id.
    ``completed`` counts every Work that ended, whatever its outcome (as in Nuxeo): those that
    succeeded and those that went to the dead letters. Of them, ``dead_lettered`` went to the
    dead letters (for any cause: an error on their last attempt, bytes that could not be decoded,
    a Work that killed its process ``max_recoveries`` times) and ``failed`` ran and raised an
    error on their last attempt (``failed <= dead_lettered <= completed``); ``succeeded`` is
    ``completed - dead_lettered``. These two are counted since this version: Works that ended
    before are in ``completed`` only.
    ``worker_restarts``: worker threads of the queue that an unexpected error ended on this node
    and that were replaced (0 unless something is wrong: see the node's log).
    """

    scheduled: int = 0
    running: int = 0
    completed: int = 0
    canceled: int = 0
    queue_id: str = dataclasses.field(default="", compare=False)
    worker_restarts: int = dataclasses.field(default=0, compare=False)
    failed: int = dataclasses.field(default=0, compare=False)
    dead_lettered: int = dataclasses.field(default=0, compare=False)

    @property
    def succeeded(self) -> int:
        """Works that ended without going to the dead letters (``completed - dead_lettered``)."""
        return max(0, self.completed - self.dead_lettered)

    def as_tuple(self) -> tuple[int, int, int, int]:
        """``(scheduled, running, completed, canceled)``, the shape Nuxeo's tests assert."""
        return (self.scheduled, self.running, self.completed, self.canceled)


@dataclasses.dataclass(frozen=True)
class QueueConfig:
    """A work queue: its id, thread count, the categories it serves and its limits.

    ``capacity`` 0 means unbounded; ``processing`` False means this node queues but does not run
    the queue's Works (it can be overridden per node by the manager's ``processing`` mapping).
    ``max_recoveries``: a Work of this queue that killed its process (the process died while
    running it) that many times goes to the dead letters instead of running again (0 means the
    same as 1; None: the WorkManager's own setting, 3 by default; the in-memory ``threads://``
    manager loses its Works with its process instead).
    """

    id: str
    name: str | None = None
    max_threads: int = 4
    categories: tuple[str, ...] = ()
    processing: bool = True
    capacity: int = 0
    partitions: int | None = None
    max_recoveries: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id or not self.id.replace("_", "").isalnum():
            raise ConfigurationError(f"work queue id must be letters, digits and '_', got {self.id!r}")
        if not isinstance(self.max_threads, int) or self.max_threads < 1:
            raise ConfigurationError(
                f"work queue {self.id!r}: max_threads must be >= 1, got {self.max_threads!r}"
            )
        if not isinstance(self.capacity, int) or self.capacity < 0:
            raise ConfigurationError(f"work queue {self.id!r}: capacity must be >= 0, got {self.capacity!r}")
        if self.max_recoveries is not None and (
            type(self.max_recoveries) is not int or self.max_recoveries < 0
        ):
            raise ConfigurationError(
                f"work queue {self.id!r}: max_recoveries must be an int >= 0, got {self.max_recoveries!r}"
            )
        if isinstance(self.categories, str):
            object.__setattr__(self, "categories", (self.categories,))
        else:
            object.__setattr__(self, "categories", tuple(self.categories))


@dataclasses.dataclass(frozen=True)
class DocumentLocation:
    """The document a Work is about (repository and id, and whether the whole tree)."""

    repository: str
    doc_id: str
    is_tree: bool = False


@dataclasses.dataclass(frozen=True)
class Progress:
    """Progress of a running Work: ``current`` of ``total`` (``-1`` when indeterminate)."""

    current: int = -1
    total: int = -1

    @property
    def percent(self) -> float:
        """0-100, or -1 when indeterminate."""
        if self.total <= 0 or self.current < 0:
            return -1.0
        return min(100.0, 100.0 * self.current / self.total)


class _Runtime:
    """What a Work knows about its current execution (not part of its state)."""

    __slots__ = ("cancel", "progress", "status", "suspended", "suspending")

    def __init__(self) -> None:
        self.suspending = threading.Event()
        self.suspended = False
        self.cancel = False
        self.status: str | None = None
        self.progress = Progress()


_registry: dict[str, type[Work]] = {}
_registry_lock = threading.Lock()


def _field_id() -> str:
    return new_work_id()


@dataclass_transform(kw_only_default=True, eq_default=False, field_specifiers=(dataclasses.field,))
@dataclasses.dataclass(kw_only=True, eq=False)
class Work:
    """Base class of Works; subclasses are registered by type name and hold their state in fields.

    Class-level settings (override in a subclass): ``category`` (default: the class name; it
    picks the queue), ``title``, ``retry_count`` (extra attempts after a failure, with exponential
    backoff), ``idempotent`` (default True: a Work already waiting with the same id is not queued
    twice), ``coalescing`` (only the last scheduled of identical Works runs), ``type_name``.
    """

    type_name: ClassVar[str] = "Work"
    category: ClassVar[str | None] = None
    title: ClassVar[str | None] = None
    retry_count: ClassVar[int] = 0
    idempotent: ClassVar[bool] = True
    coalescing: ClassVar[bool] = False

    id: str = dataclasses.field(default_factory=_field_id)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(cls, kw_only=True, eq=False)
        if "type_name" not in cls.__dict__:
            cls.type_name = cls.__qualname__
        register_work_type(cls)

    # --- identity ------------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Work):
            return NotImplemented
        return type(self).type_name == type(other).type_name and self.id == other.id

    def __hash__(self) -> int:
        return hash((type(self).type_name, self.id))

    def get_category(self) -> str:
        """The category (``category`` or the class name); the queue is chosen from it."""
        return self.category or type(self).__name__

    def get_title(self) -> str:
        """A human title (``title`` or the type name and id)."""
        return self.title or f"{type(self).type_name} {self.id}"

    @property
    def partition_key(self) -> str:
        """Ordering key in partitioned queues: the document id if set, else the Work id."""
        doc = self.document
        return doc.doc_id if doc is not None else self.id

    # --- document ------------------------------------------------------------------------------

    def set_document(self, repository: str, doc_id: str, is_tree: bool = False) -> None:
        """Say which document this Work is about (stored with the Work)."""
        self.__dict__["_document"] = DocumentLocation(repository, doc_id, is_tree)

    @property
    def document(self) -> DocumentLocation | None:
        """The document set by :meth:`set_document`, if any."""
        doc: DocumentLocation | None = self.__dict__.get("_document")
        return doc

    # --- the job -------------------------------------------------------------------------------

    def work(self) -> Awaitable[None] | None:
        """Do the work (a plain method or ``async def``); raise to fail (and maybe retry)."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement work()")

    def cleanup(self, ok: bool, error: BaseException | None) -> None:
        """Called once after the last attempt, with its outcome; override to release resources."""

    # --- during work ---------------------------------------------------------------------------

    def _runtime(self) -> _Runtime:
        rt: _Runtime | None = self.__dict__.get("_rt")
        if rt is None:
            rt = _Runtime()
            self.__dict__["_rt"] = rt
        return rt

    def set_status(self, status: str | None) -> None:
        """A short human-readable status of the running Work."""
        self._runtime().status = status

    @property
    def status(self) -> str | None:
        """The last status set by the Work."""
        return self._runtime().status

    def set_progress(self, current: int, total: int = -1) -> None:
        """Report progress: ``current`` of ``total``."""
        self._runtime().progress = Progress(int(current), int(total))

    @property
    def progress(self) -> Progress:
        """The last progress reported."""
        return self._runtime().progress

    def is_suspending(self) -> bool:
        """True when the manager is shutting down: save state in fields, call ``suspended()``, return."""
        return self._runtime().suspending.is_set()

    def suspended(self) -> None:
        """Tell the manager the Work stopped early with its state saved in its fields.

        The manager puts the Work (with its fields as they are now) back in its queue, to be
        resumed by the next node that runs the queue.
        """
        self._runtime().suspended = True

    def is_suspended(self) -> bool:
        """True after :meth:`suspended` was called during this run."""
        return self._runtime().suspended

    def _reset_runtime(self) -> _Runtime:
        rt = _Runtime()
        self.__dict__["_rt"] = rt
        return rt


def register_work_type(cls: type[Work], name: str | None = None) -> None:
    """Register ``cls`` so Works of this type can be rebuilt from a queue (done by subclassing)."""
    type_name = name or cls.type_name
    if not isinstance(type_name, str) or not type_name:
        raise ConfigurationError(f"{cls!r}: type_name must be a non-empty string")
    with _registry_lock:
        old = _registry.get(type_name)
        if (
            old is not None
            and old is not cls
            and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__)
        ):
            raise ConfigurationError(
                f"Work type name {type_name!r} is already registered by "
                f"{old.__module__}.{old.__qualname__}; set type_name on {cls.__module__}.{cls.__qualname__}"
            )
        _registry[type_name] = cls


def work_type(name: str) -> type[Work] | None:
    """The Work class registered under ``name``, or None."""
    with _registry_lock:
        return _registry.get(name)


def registered_work_types() -> dict[str, type[Work]]:
    """Every registered Work type, by name."""
    with _registry_lock:
        return dict(_registry)
