"""The WorkManager contract and what every implementation shares.

Queues, categories, per-node processing switches, after-commit scheduling and the execution of
one Work (with its outcome recorded) live here; an implementation only stores and hands out
Works (:class:`~conveyor.work.threads.ThreadsWorkManager`,
:class:`~conveyor.work.redis_manager.RedisWorkManager`, :class:`~conveyor.work.stream.StreamWorkManager`).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import traceback
import uuid
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping

from conveyor.errors import ConfigurationError, WorkError
from conveyor.transaction import register_synchronization
from conveyor.work.api import QueueConfig, Scheduling, Work, WorkQueueMetrics, WorkState, work_type
from conveyor.work.codec import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DEPTH,
    MAX_TRACEBACK_CHARS,
    DeadLetter,
    WorkCodec,
    get_work_codec,
)
from conveyor.work.runner import Outcome, RunResult, run_work

__all__ = ["DEFAULT_QUEUE", "WorkManager"]

logger = logging.getLogger("conveyor.work")

DEFAULT_QUEUE = "default"
DEFAULT_MAX_RECOVERIES = 3


def default_node_id() -> str:
    """``hostname-pid-random``: unique per process, readable in logs."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


class WorkManager(ABC):
    """Schedules Works into queues and runs them on per-queue thread pools.

    ``queues``: the queue configurations (a ``default`` queue with 4 threads is added when
    absent); ``processing``: per-node switches by queue id, ``"*"`` matching every queue (so
    ``{"*": False, "pictures": True}`` makes a node that runs only ``pictures``);
    ``retry_delay`` / ``max_retry_delay``: exponential backoff between attempts of a failing Work;
    ``max_payload_depth`` / ``max_payload_bytes``: the bounds of an encoded Work (nesting levels of
    its fields, bytes), checked by ``schedule`` and when a Work is read from its queue.
    """

    max_recoveries: int = DEFAULT_MAX_RECOVERIES
    """Times a Work may kill its process (the process died while running it): the next node that
    finds it after that many deaths dead-letters it instead of running it again (persistent
    implementations; 0 means the same as 1; a queue's ``max_recoveries`` overrides it)."""

    def __init__(
        self,
        queues: Iterable[QueueConfig] = (),
        processing: Mapping[str, bool] | None = None,
        node_id: str | None = None,
        codec: str = "json",
        retry_delay: float = 0.1,
        max_retry_delay: float = 10.0,
        *,
        max_payload_depth: int = DEFAULT_MAX_DEPTH,
        max_payload_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        configs: dict[str, QueueConfig] = {}
        for cfg in queues:
            if not isinstance(cfg, QueueConfig):
                raise ConfigurationError(f"work queues must be QueueConfig, got {cfg!r}")
            if cfg.id in configs:
                raise ConfigurationError(f"duplicate work queue id {cfg.id!r}")
            configs[cfg.id] = cfg
        if DEFAULT_QUEUE not in configs:
            configs[DEFAULT_QUEUE] = QueueConfig(DEFAULT_QUEUE, max_threads=4)
        self._configs = configs
        self._categories: dict[str, str] = {}
        for cfg in configs.values():
            for category in cfg.categories:
                if category in self._categories and self._categories[category] != cfg.id:
                    raise ConfigurationError(
                        f"category {category!r} is in two queues: "
                        f"{self._categories[category]!r} and {cfg.id!r}"
                    )
                self._categories[category] = cfg.id
        switches = dict(processing or {})
        for key in switches:
            if key != "*" and key not in configs:
                raise ConfigurationError(
                    f"work processing: unknown queue id {key!r}; queues: {', '.join(configs)}"
                )
        self._processing = {qid: self._resolve_processing(cfg, switches) for qid, cfg in configs.items()}
        self.node_id = node_id or default_node_id()
        self.codec: WorkCodec = get_work_codec(codec, max_payload_depth, max_payload_bytes)
        self._worker_restarts: dict[str, int] = {}
        if retry_delay < 0 or max_retry_delay < 0:
            raise ConfigurationError("retry_delay and max_retry_delay must be >= 0")
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._lock = threading.RLock()
        self._changed = threading.Condition(threading.Lock())
        self._started = False
        self._shutdown = False

    @staticmethod
    def _resolve_processing(cfg: QueueConfig, switches: Mapping[str, bool]) -> bool:
        if cfg.id in switches:
            return bool(switches[cfg.id])
        if "*" in switches:
            return bool(switches["*"])
        return cfg.processing

    # --- queues --------------------------------------------------------------------------------

    def queue_ids(self) -> list[str]:
        """The ids of every configured queue."""
        return list(self._configs)

    def queue_config(self, queue_id: str) -> QueueConfig:
        """The configuration of ``queue_id``; :class:`WorkError` when unknown."""
        try:
            return self._configs[queue_id]
        except KeyError:
            raise WorkError(f"unknown work queue {queue_id!r}; queues: {', '.join(self._configs)}") from None

    def category_queue(self, category: str | None) -> str:
        """The queue serving ``category`` (``default`` when none does)."""
        if category is None:
            return DEFAULT_QUEUE
        return self._categories.get(category, DEFAULT_QUEUE)

    def is_processing_enabled(self, queue_id: str | None = None) -> bool:
        """Whether this node runs ``queue_id`` (any queue, when None)."""
        if queue_id is None:
            return any(self._processing.values())
        self.queue_config(queue_id)
        return self._processing[queue_id]

    def enable_processing(self, queue_id: str | None, enabled: bool) -> None:
        """Start or stop running ``queue_id`` (every queue when None or ``"*"``) on this node."""
        ids = list(self._configs) if queue_id in (None, "*") else [queue_id]
        for qid in ids:
            assert qid is not None
            self.queue_config(qid)
            self._processing[qid] = bool(enabled)
            self._processing_changed(qid, bool(enabled))

    # --- scheduling ----------------------------------------------------------------------------

    def schedule(
        self, work: Work, after_commit: bool = True, scheduling: Scheduling = Scheduling.ENQUEUE
    ) -> bool:
        """Queue ``work`` in the queue of its category.

        With ``after_commit`` (the default) inside :func:`conveyor.transaction` the Work is queued
        when the transaction commits and dropped on rollback; outside a transaction it is queued
        now. Returns False when the scheduling mode skipped it (an idempotent duplicate, or
        ``IF_NOT_*`` found it), True otherwise.
        """
        if not isinstance(work, Work):
            raise WorkError(f"schedule() takes a Work, got {type(work).__name__}")
        if not isinstance(scheduling, Scheduling):
            raise WorkError(f"scheduling must be a Scheduling value, got {scheduling!r}")
        cls = type(work)
        if work_type(cls.type_name) is not cls:
            raise WorkError(
                f"Work class {cls.__module__}.{cls.__qualname__} "
                f"is not the one registered as {cls.type_name!r}"
            )
        queue_id = self.category_queue(work.get_category())
        data = self.codec.encode(work) if scheduling is not Scheduling.CANCEL_SCHEDULED else b""

        def on_commit() -> None:
            self._schedule_now(queue_id, work, data, scheduling)

        if after_commit and register_synchronization(on_commit):
            return True
        return self._schedule_now(queue_id, work, data, scheduling)

    def _schedule_now(self, queue_id: str, work: Work, data: bytes, scheduling: Scheduling) -> bool:
        if self._shutdown:
            raise WorkError(f"WorkManager {self.node_id} is shut down: cannot schedule Work {work.id}")
        accepted = self._enqueue(queue_id, work, data, scheduling)
        self._notify()
        return accepted

    @abstractmethod
    def _enqueue(self, queue_id: str, work: Work, data: bytes, scheduling: Scheduling) -> bool: ...

    # --- observing -----------------------------------------------------------------------------

    @abstractmethod
    def metrics(self, queue_id: str) -> WorkQueueMetrics:
        """Scheduled (waiting), running, completed and canceled counts of ``queue_id``."""

    def get_work_state(self, work_id: str) -> WorkState:
        """SCHEDULED, RUNNING or UNKNOWN (done, canceled or never seen)."""
        return WorkState.UNKNOWN

    def find(self, work_id: str) -> Work | None:
        """The waiting or running Work with this id, rebuilt from its queue, or None."""
        return None

    def await_completion(self, queue_id: str | None = None, timeout: float = 30.0) -> bool:
        """Wait until ``queue_id`` (every queue when None) has no waiting nor running Work.

        Returns False when ``timeout`` seconds pass first.
        """
        ids = [queue_id] if queue_id is not None else list(self._configs)
        for qid in ids:
            self.queue_config(qid)
        deadline = time.monotonic() + timeout
        while True:
            if all(self._idle(qid) for qid in ids):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._changed:
                self._changed.wait(min(remaining, self._poll_interval()))

    def _idle(self, queue_id: str) -> bool:
        m = self.metrics(queue_id)
        return m.scheduled == 0 and m.running == 0

    def _poll_interval(self) -> float:
        return 0.05

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> WorkManager:
        """Start the worker threads of the queues this node processes (idempotent)."""
        with self._lock:
            if self._shutdown:
                raise WorkError(f"WorkManager {self.node_id} is shut down; create a new one")
            if not self._started:
                self._start()
                self._started = True
        return self

    @property
    def started(self) -> bool:
        """True between :meth:`start` and :meth:`shutdown`."""
        return self._started and not self._shutdown

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Stop: running Works are asked to suspend (saved back to their queue when persistent).

        Returns True when every worker thread stopped within ``timeout`` seconds, False when
        they did not or the shutdown could not finish (a backend down, the disk full: logged
        at ERROR with the cause); never raises. Works it could not release are taken over by
        the other nodes (or this one when it restarts) and may run again.
        """
        with self._lock:
            again = self._shutdown
            self._shutdown = True
        try:
            if again:  # waits for what did not stop in time the first time
                return self._await_stopped(timeout)
            ok = self._stop(timeout)
        except Exception as exc:
            logger.error("WorkManager %s could not finish its shutdown: %s", self.node_id, exc, exc_info=True)
            ok = False
        self._notify()
        return ok

    def _await_stopped(self, timeout: float) -> bool:
        """Hook: wait up to ``timeout`` for threads a first shutdown left running."""
        return True

    def shutdown_queue(self, queue_id: str, timeout: float = 10.0) -> bool:
        """Stop running ``queue_id`` on this node (its Works suspend); True if done in time."""
        self.queue_config(queue_id)
        self._processing[queue_id] = False
        return self._stop_queue(queue_id, timeout)

    def close(self) -> None:
        """Same as ``shutdown()``."""
        self.shutdown()

    def __enter__(self) -> WorkManager:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    @abstractmethod
    def _start(self) -> None: ...

    @abstractmethod
    def _stop(self, timeout: float) -> bool: ...

    @abstractmethod
    def _stop_queue(self, queue_id: str, timeout: float) -> bool: ...

    def _processing_changed(self, queue_id: str, enabled: bool) -> None:
        """Hook: processing of ``queue_id`` was switched on this node."""

    # --- dead letters --------------------------------------------------------------------------

    @abstractmethod
    def dead_letters(self) -> list[DeadLetter]:
        """The Works that failed for good (or could not be decoded), oldest first."""

    @abstractmethod
    def rerun_failed(self, category: str | None = None, *, ids: Collection[str] | None = None) -> int:
        """Schedule again the failed Works (of ``category`` only, if given; with these Work ``ids``
        only, if given); returns how many."""

    def _letter_work(self, letter: DeadLetter) -> Work | None:
        """The Work of a dead letter, or None (logged) when it still cannot be decoded."""
        try:
            return self.codec.decode(letter.data)
        except Exception as exc:  # the codec raises WorkErrors only; never let one letter stop a rerun
            logger.warning(
                "dead letter %s (%s) still cannot be decoded, kept: %s", letter.id, letter.type, exc
            )
            return None

    def _max_recoveries(self, queue_id: str) -> int:
        """The ``max_recoveries`` of ``queue_id``: its own, else the manager's."""
        limit = self._configs[queue_id].max_recoveries
        return self.max_recoveries if limit is None else limit

    def _killed_too_often(self, queue_id: str, deaths: int) -> bool:
        """Whether a Work that was in flight on ``deaths`` dead processes is to be dead-lettered
        instead of run again: it killed its process ``max_recoveries`` times (0 counts as 1)."""
        return deaths >= max(1, self._max_recoveries(queue_id))

    def _crash_error(self, queue_id: str, deaths: int) -> str:
        """The error of a Work dead-lettered for having been in flight on ``deaths`` dead nodes."""
        return (
            f"Work killed its process {deaths} times: it was in flight on a node that died {deaths} "
            f"times (max_recoveries={self._max_recoveries(queue_id)}); not run again, it may be what "
            "kills the nodes"
        )

    # --- running one Work ----------------------------------------------------------------------

    def _worker_died(self, queue_id: str, exc: BaseException) -> None:
        """A worker thread of ``queue_id`` was ended by an unexpected error: logged and counted
        (``metrics().worker_restarts``); the caller replaces it."""
        with self._lock:
            self._worker_restarts[queue_id] = self._worker_restarts.get(queue_id, 0) + 1
        logger.error(
            "work queue %s on %s: a worker thread failed and is replaced: %s: %s",
            queue_id,
            self.node_id,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )

    def _restarts(self, queue_id: str) -> int:
        """Worker threads of ``queue_id`` replaced on this node after an unexpected error."""
        return self._worker_restarts.get(queue_id, 0)

    def _encode_or(self, work: Work, fallback: bytes) -> bytes:
        """The bytes of ``work`` as it is now, or ``fallback`` (the bytes it was read from) when its
        fields no longer encode (logged): a dead letter or a suspended Work is never lost for it."""
        try:
            return self.codec.encode(work)
        except WorkError as exc:
            logger.error("Work %s %s: kept as it was read: %s", type(work).type_name, work.id, exc)
            return fallback

    def _execute(self, queue_id: str, work: Work) -> RunResult:
        """Run ``work`` now in this thread, with the runtime the caller gave it."""
        rt = work._runtime()
        if self._shutdown:
            rt.suspending.set()
        return run_work(work, rt, self.retry_delay, self.max_retry_delay)

    def _dead_letter(
        self,
        queue_id: str,
        work_id: str,
        type_name: str,
        data: bytes,
        error: BaseException | str,
        category: str | None = None,
        *,
        failed: bool = False,
    ) -> DeadLetter:
        """The dead letter of a Work (``failed``: it ran and raised ``error`` on its last attempt),
        counted in the queue's metrics (:meth:`_count_dead_letter`)."""
        message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        trace = ""
        if isinstance(error, BaseException) and error.__traceback__ is not None:
            trace = "".join(traceback.format_exception(error))[-MAX_TRACEBACK_CHARS:]
        logger.error(
            "Work %s %s in queue %s goes to the dead letters: %s", type_name, work_id, queue_id, message
        )
        self._count_dead_letter(queue_id, failed)
        return DeadLetter(
            queue=queue_id,
            id=work_id,
            type=type_name,
            error=message,
            data=data,
            category=category,
            failed_at=time.time(),
            traceback=trace,
        )

    def _count_dead_letter(self, queue_id: str, failed: bool) -> None:
        """Hook: count one more dead letter of ``queue_id`` (and a failed Work when ``failed``) in
        ``metrics()``; the Redis implementation counts them with the letter, in Redis."""

    def _outcome_log(self, queue_id: str, work: Work, result: RunResult) -> None:
        if result.outcome is Outcome.FAILED:
            logger.error(
                "Work %s %s failed after %d attempt(s): %r",
                type(work).type_name,
                work.id,
                result.attempts,
                result.error,
            )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} node={self.node_id} queues={list(self._configs)}>"
