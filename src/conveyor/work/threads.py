"""``threads://``: in-memory queues and thread pools (Nuxeo's WorkManagerImpl with memory queuing).

Not persistent: Works waiting or suspended at shutdown are lost when the process exits. For
tests, scripts and single-process apps; use ``redis://`` or the stream WorkManager to keep Works.
Failed Works go to the ``work/dlq`` log of the given log manager (an in-memory one by default),
one :class:`~conveyor.work.codec.DeadLetter` per record (key ``<category>:<work id>``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from conveyor.errors import ConfigurationError, WorkQueueFullError
from conveyor.work.api import QueueConfig, Scheduling, Work, WorkQueueMetrics, WorkState, _Runtime
from conveyor.work.codec import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, DeadLetter
from conveyor.work.dlq import DLQ_STREAM, LogDeadLetters
from conveyor.work.manager import WorkManager
from conveyor.work.runner import Outcome

__all__ = ["DLQ_STREAM", "ThreadsWorkManager"]

logger = logging.getLogger("conveyor.work")


@dataclass
class _Entry:
    work_id: str
    type_name: str
    category: str
    data: bytes


@dataclass
class _Queue:
    config: QueueConfig
    waiting: deque[_Entry] = field(default_factory=deque)
    by_id: dict[str, _Entry] = field(default_factory=dict)  # newest waiting entry of each id
    running: dict[str, list[_Runtime]] = field(default_factory=dict)
    completed: int = 0
    canceled: int = 0
    failed: int = 0
    dead_lettered: int = 0
    threads: list[threading.Thread] = field(default_factory=list)
    stopping: bool = False

    @property
    def running_count(self) -> int:
        return sum(len(v) for v in self.running.values())


class ThreadsWorkManager(LogDeadLetters, WorkManager):
    """In-memory WorkManager: one pool of ``max_threads`` threads per processed queue."""

    def __init__(
        self,
        queues: Iterable[QueueConfig] = (),
        processing: Mapping[str, bool] | None = None,
        node_id: str | None = None,
        codec: str = "json",
        retry_delay: float = 0.1,
        max_retry_delay: float = 10.0,
        log_manager: Any = None,
        max_payload_depth: int = DEFAULT_MAX_DEPTH,
        max_payload_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        super().__init__(
            queues,
            processing,
            node_id,
            codec,
            retry_delay,
            max_retry_delay,
            max_payload_depth=max_payload_depth,
            max_payload_bytes=max_payload_bytes,
        )
        self._cond = threading.Condition(self._lock)
        self._queues = {qid: _Queue(cfg) for qid, cfg in self._configs.items()}
        self._log_manager = log_manager
        self._unlogged: list[DeadLetter] = []  # letters the log could not take (kept, not lost)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> ThreadsWorkManager:
        """Build from ``threads://`` or ``threads://?max_payload_depth=N&max_payload_bytes=N``."""
        query = dict(parse_qsl(urlsplit(url).query))
        for key in ("max_payload_depth", "max_payload_bytes"):
            if key not in query:
                continue
            try:
                options.setdefault(key, int(query[key]))
            except ValueError:
                raise ConfigurationError(f"work URL {url!r}: {key} must be an integer") from None
        return cls(**options)

    # --- scheduling ----------------------------------------------------------------------------

    def _enqueue(self, queue_id: str, work: Work, data: bytes, scheduling: Scheduling) -> bool:
        with self._cond:
            q = self._queues[queue_id]
            wid = work.id
            if scheduling is Scheduling.CANCEL_SCHEDULED:
                return self._cancel(q, wid)
            if scheduling is Scheduling.IF_NOT_SCHEDULED and wid in q.by_id:
                return False
            if scheduling is Scheduling.IF_NOT_RUNNING_OR_SCHEDULED and (wid in q.by_id or wid in q.running):
                return False
            old = q.by_id.get(wid)
            cls = type(work)
            if old is not None and cls.coalescing:
                # The newest state replaces the waiting one, which counts as canceled.
                old.data = data
                q.canceled += 1
                return True
            if old is not None and cls.idempotent:
                return False
            if q.config.capacity and len(q.waiting) >= q.config.capacity:
                raise WorkQueueFullError(
                    f"work queue {queue_id!r} is full ({q.config.capacity} Works waiting); "
                    f"Work {wid} not scheduled"
                )
            entry = _Entry(wid, cls.type_name, work.get_category(), data)
            q.waiting.append(entry)
            q.by_id[wid] = entry
            self._cond.notify_all()
            return True

    def _cancel(self, q: _Queue, wid: str) -> bool:
        found = False
        entry = q.by_id.pop(wid, None)
        if entry is not None:
            q.waiting = deque(e for e in q.waiting if e.work_id != wid)
            q.canceled += 1
            found = True
        for rt in q.running.get(wid, []):
            rt.cancel = True
            rt.suspending.set()
            found = True
        return found

    # --- workers -------------------------------------------------------------------------------

    def _start(self) -> None:
        for qid, q in self._queues.items():
            for n in range(q.config.max_threads):
                t = threading.Thread(
                    target=self._worker,
                    args=(qid,),
                    name=f"conveyor-work-{self.node_id}-{qid}-{n}",
                    daemon=True,
                )
                q.threads.append(t)
                t.start()

    def _take(self, q: _Queue) -> _Entry | None:
        """The first waiting entry whose id is not running (caller holds the lock)."""
        for i, entry in enumerate(q.waiting):
            if entry.work_id not in q.running:
                del q.waiting[i]
                if q.by_id.get(entry.work_id) is entry:
                    del q.by_id[entry.work_id]
                return entry
        return None

    def _worker(self, queue_id: str) -> None:
        q = self._queues[queue_id]
        while True:
            with self._cond:
                entry = None
                while not q.stopping:
                    if self._processing[queue_id]:
                        entry = self._take(q)
                        if entry is not None:
                            break
                    self._cond.wait(1.0)
                if entry is None:
                    return
                rt = _Runtime()
                q.running.setdefault(entry.work_id, []).append(rt)
            self._notify()
            try:
                self._run_entry(q, entry, rt)
            except Exception as exc:  # not expected: the thread goes on, the entry is dead-lettered
                self._worker_died(queue_id, exc)
                self._to_dlq(
                    self._dead_letter(
                        queue_id, entry.work_id, entry.type_name, entry.data, exc, entry.category
                    )
                )
                with self._cond:
                    q.completed += 1
            finally:
                with self._cond:
                    lst = q.running.get(entry.work_id, [])
                    if rt in lst:
                        lst.remove(rt)
                    if not lst:
                        q.running.pop(entry.work_id, None)
                    self._cond.notify_all()
                self._notify()

    def _run_entry(self, q: _Queue, entry: _Entry, rt: _Runtime) -> None:
        qid = q.config.id
        try:
            work = self.codec.decode(entry.data)
        except Exception as exc:  # garbage, unknown type name, bad fields, too deep or too big
            self._to_dlq(
                self._dead_letter(qid, entry.work_id, entry.type_name, entry.data, exc, entry.category)
            )
            with self._cond:
                q.completed += 1
            return
        work.__dict__["_rt"] = rt
        if q.stopping:
            rt.suspending.set()
        result = self._execute(qid, work)
        self._outcome_log(qid, work, result)
        with self._cond:
            if result.outcome is Outcome.SUSPENDED:
                data = self._encode_or(work, entry.data)
                if entry.work_id not in q.by_id:
                    entry.data = data
                    q.waiting.appendleft(entry)
                    q.by_id[entry.work_id] = entry
                return
            if result.outcome is Outcome.CANCELED:
                q.canceled += 1
                return
            q.completed += 1
        if result.outcome is Outcome.FAILED:
            assert result.error is not None
            letter = self._dead_letter(
                qid,
                work.id,
                entry.type_name,
                self._encode_or(work, entry.data),
                result.error,
                entry.category,
                failed=True,
            )
            self._to_dlq(letter)

    # --- observing -----------------------------------------------------------------------------

    def metrics(self, queue_id: str) -> WorkQueueMetrics:
        """Waiting, running, completed and canceled counts of ``queue_id``."""
        self.queue_config(queue_id)
        with self._cond:
            q = self._queues[queue_id]
            return WorkQueueMetrics(
                len(q.waiting),
                q.running_count,
                q.completed,
                q.canceled,
                queue_id,
                worker_restarts=self._restarts(queue_id),
                failed=q.failed,
                dead_lettered=q.dead_lettered,
            )

    def _count_dead_letter(self, queue_id: str, failed: bool) -> None:
        with self._cond:
            q = self._queues[queue_id]
            q.dead_lettered += 1
            q.failed += failed

    def get_work_state(self, work_id: str) -> WorkState:
        """SCHEDULED, RUNNING or UNKNOWN."""
        with self._cond:
            for q in self._queues.values():
                if work_id in q.running:
                    return WorkState.RUNNING
                if work_id in q.by_id:
                    return WorkState.SCHEDULED
        return WorkState.UNKNOWN

    def find(self, work_id: str) -> Work | None:
        """The waiting Work with this id, rebuilt from its data, or None."""
        with self._cond:
            for q in self._queues.values():
                entry = q.by_id.get(work_id)
                if entry is not None:
                    return self.codec.decode(entry.data)
        return None

    # --- lifecycle -----------------------------------------------------------------------------

    def _processing_changed(self, queue_id: str, enabled: bool) -> None:
        with self._cond:
            self._cond.notify_all()

    def _stop_queue(self, queue_id: str, timeout: float) -> bool:
        q = self._queues[queue_id]
        with self._cond:
            q.stopping = True
            for rts in q.running.values():
                for rt in rts:
                    rt.suspending.set()
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for t in q.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in q.threads)

    def _stop(self, timeout: float) -> bool:
        with self._cond:
            for q in self._queues.values():
                q.stopping = True
                for rts in q.running.values():
                    for rt in rts:
                        rt.suspending.set()
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        ok = True
        for q in self._queues.values():
            for t in q.threads:
                t.join(max(0.0, deadline - time.monotonic()))
                ok &= not t.is_alive()
        return ok
