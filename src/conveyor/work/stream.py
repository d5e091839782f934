"""``stream``: Works in ``work/<queue>`` logs, consumed by a group shared by every node (Nuxeo's
StreamWorkManager).

Each queue is a log ``work/<queue id>`` (``partitions`` from the queue config, by default
``max(4, 2 * max_threads)``) read by the consumer group ``work/<queue id>``: every node that
processes the queue holds one subscriber in that group, so the partitions are shared out among
the nodes, and a node with the queue disabled only appends to it. The subscriber is read by
whichever of the queue's ``max_threads`` threads is free, one record at a time (no prefetch: a
Work is taken only by a free thread). A record is a
:class:`~conveyor.work.stream_state.WorkRecord` (the Work encoded by the Work codec, never
pickled). Offsets are committed lazily (every ``commit_every`` finished records or
``commit_interval`` seconds, when idle, on a rebalance and at shutdown) and only past records
whose Work is finished (:class:`~conveyor.work.offsets.OffsetTracker`), so a Work in flight when
its node dies is read again by the node that gets the partition next (at-least-once); one that
was finished is skipped, its state saying so.

Which records are still wanted, and who runs them, is kept per Work id in a key-value store (the
node's ``kv_store("work")``, else an in-process one): that is what makes cancel, coalescing,
idempotent Works, the ``IF_NOT_*`` modes and the metrics work without reading the log, and what
keeps a running Work from being run by a second node while its owner's heartbeat is fresh.

With ``store_state=false`` (Nuxeo's ``nuxeo.stream.work.storestate.enabled=false``) no state is
kept per Work: a record is run as it is read, with no claim, so a Work costs no KV operation
(coalescing Works one write and one read of their latest copy); ``scheduled`` comes from the
logs' lag. Cancel, ``find``, ``get_work_state`` (beyond Works running on this node) and the
``IF_NOT_*`` schedulings need the state and are refused or unknown; idempotent Works are not
deduplicated (each copy runs, which an idempotent Work allows; Nuxeo's rule, skipping an id among
the last 50 run by the node, would also skip a re-run of a failed Work); a Work can run twice at
once only when its partition moves to another node while it runs.

A Work that kills its process (kill -9, ``os._exit``, a segfault, the OOM killer) is read again by
the next reader of its partition. With the state, each take-over of a Work from a dead owner is
counted in its state; without it, a reader notes in the KV store, every ``_HORIZON_STEP``
records of a partition, an offset that no record it starts reaches (the partition's horizon),
and the next reader counts the starts of each record below that horizon (the only ones an
earlier reader may have started) under its partition and offset, and forgets them once it is
done; so the normal path costs one KV write per ``_HORIZON_STEP`` records. A Work whose readers
died ``max_recoveries`` times while running it (0: once; without the state at least twice, since
a first count may be of a reader that died before starting it) goes to the dead letters instead
of running again.

URL: ``stream`` (a node's own log and KV store) or ``stream://?log=local:///data/log&kv=...``
with options ``prefix``, ``claim_timeout``, ``heartbeat_interval``, ``poll_interval``, ``codec``,
``max_record_bytes``, ``commit_every``, ``commit_interval``, ``store_state``, ``max_recoveries``.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgspec

from conveyor.codec import BytesCodec
from conveyor.errors import (
    ConfigurationError,
    ConveyorError,
    LogClosedError,
    RebalanceError,
    WorkError,
    WorkQueueFullError,
)
from conveyor.flags import parse_flag
from conveyor.log.api import LogAppender, LogManager, LogTailer
from conveyor.log.names import Name
from conveyor.log.types import LogOffset, LogPartition, LogRecord
from conveyor.work.api import QueueConfig, Scheduling, Work, WorkQueueMetrics, WorkState, _Runtime
from conveyor.work.codec import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, DeadLetter, WorkPayloadError
from conveyor.work.dlq import LogDeadLetters
from conveyor.work.manager import WorkManager
from conveyor.work.offsets import OffsetTracker
from conveyor.work.runner import Outcome
from conveyor.work.stream_state import KV, LocalKV, WorkRecord, WorkStateStore, WorkStatus

__all__ = ["StreamWorkManager", "queue_log"]

logger = logging.getLogger("conveyor.work")
_READ_ERROR_LOG_INTERVAL_S = 60.0
"""Seconds between two log lines of the same error reading a queue's log."""

_record_enc = msgspec.msgpack.Encoder()
_record_dec = msgspec.msgpack.Decoder(WorkRecord)

_OPTIONS = {
    "log",
    "kv",
    "prefix",
    "claim_timeout",
    "heartbeat_interval",
    "poll_interval",
    "codec",
    "max_record_bytes",
    "commit_every",
    "commit_interval",
    "store_state",
    "max_payload_depth",
    "max_payload_bytes",
    "max_recoveries",
}
_RAN_TTL = 3600.0  # seconds an untracked coalescing Work's "latest copy ran" mark is kept
# Times a record whose handling fails with an error that is not a backend's (retriable) is read
# again before it goes to the dead letters (a Work that cannot be decoded goes at once).
_RECORD_RETRIES = 3
# Records of a partition between two moves of its horizon (store_state=false): one KV write per
# that many records; after a reader dies, its successor counts the starts of at most that many
# records past the committed offset beyond those it had read.
_HORIZON_STEP = 128


# Sleeps of a reader polling a local log between two looks at its files (appends by other
# processes are seen at the next look; the log's own tailer backs off the same way).
_FIRST_WAIT = 0.00005
_MAX_WAIT = 0.001
_HOT_FOR = 0.05  # seconds after a record during which the reader keeps looking every _FIRST_WAIT
_IDLE_AFTER = 0.2  # seconds without a record after which the reader is idle
_IDLE_WAIT = 0.01


def queue_log(queue_id: str) -> Name:
    """The log (and consumer group) of a queue: ``work/<queue id>``."""
    return Name.of("work", queue_id)


def _token() -> str:
    return uuid.uuid4().hex[:16]


class _Verdict:
    """What a consumer does with a record (see ``_claim``)."""

    def __init__(
        self, name: str, takes_waiting: bool = False, deaths: int = 0, holder: str = "", recoveries: int = 0
    ) -> None:
        self.name = name
        self.takes_waiting = takes_waiting
        self.deaths = deaths  # > 0: dead-letter it, it was in flight on that many dead owners
        self.holder = holder  # taken over from this dead owner, for the recoveries-th time
        self.recoveries = recoveries

    def __repr__(self) -> str:
        return self.name


_RUN = _Verdict("run")  # take over the claim of a dead owner
_RUN_WAITING = _Verdict("run-waiting", takes_waiting=True)  # a waiting copy: scheduled - 1
_SKIP = _Verdict("skip")  # canceled, coalesced or already done: commit and move on
_SKIP_CANCELED = _Verdict("skip-canceled")  # its dead owner had been asked to cancel it
_WAIT = _Verdict("wait")  # the same Work runs elsewhere: wait for it
_STOP = _Verdict("stop")  # stopping while waiting: leave the record uncommitted


@dataclass
class _Queue:
    config: QueueConfig
    name: Name
    appender: LogAppender[Any]
    lock: threading.Lock = field(default_factory=threading.Lock)
    running: dict[str, list[_Runtime]] = field(default_factory=dict)
    tokens: dict[str, tuple[str, _Runtime]] = field(default_factory=dict)  # token -> (id, runtime)
    threads: list[threading.Thread] = field(default_factory=list)  # of every consumer still alive
    stop: threading.Event = field(default_factory=threading.Event)  # of the current consumer
    in_hand: int = 0  # records read and not done with by this node's consumers
    consumer: _Consumer | None = None
    appended: threading.Event = field(default_factory=threading.Event)  # set by each append here
    running_count: int = 0  # Works running here
    published_running: int = 0  # the count last written to the shared state
    publish_lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Horizon:
    """What a consumer knows of the horizon of one partition (``store_state=false``)."""

    epoch: int  # the tracker's epoch of the partition when it was read
    careful_below: int  # the horizon when read: records below it may have been started before
    value: int  # the horizon as stored: no record at or past it was started
    raw: Any  # the stored value (what a move compares with)


@dataclass
class _Starts:
    """Starts of records counted by a consumer (``store_state=false``, see ``_redeliveries``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    horizons: dict[LogPartition, _Horizon] = field(default_factory=dict)
    counted: dict[LogOffset, int] = field(default_factory=dict)  # counted here, not done yet


@dataclass
class _Consumer:
    """One start of a queue on this node: a subscriber read by whichever of the queue's
    ``max_threads`` threads is free (the reader holds ``read_lock``), and the offsets to commit."""

    stop: threading.Event
    tracker: OffsetTracker
    read_lock: threading.Lock = field(default_factory=threading.Lock)
    tailer: LogTailer[Any] | None = None
    live: int = 0  # threads not ended yet
    closed: bool = False  # the log manager was closed under it
    last_read: float = 0.0  # when a record was last read (monotonic)
    starts: _Starts = field(default_factory=_Starts)


class _CommitOnRevoke:
    """Commits what is finished on partitions leaving this node (called inside ``read``)."""

    def __init__(self, manager: StreamWorkManager, consumer: _Consumer) -> None:
        self.manager = manager
        self.consumer = consumer

    def on_partitions_revoked(self, partitions: Collection[LogPartition]) -> None:
        """Commit them while still ours (where the backend still allows it)."""
        self.manager._commit(self.consumer, list(partitions))

    def on_partitions_assigned(self, partitions: Collection[LogPartition]) -> None:
        """Nothing to do: reading resumes at the committed offsets."""

    def on_partitions_lost(self, partitions: Collection[LogPartition]) -> None:
        """Nothing can be committed on them any more."""
        for partition in partitions:
            self.consumer.tracker.forget(partition)


class StreamWorkManager(LogDeadLetters, WorkManager):
    """The persistent WorkManager over the log layer (see module doc).

    ``log_manager``: where the ``work/<queue>`` logs live (a log manager or a callable returning
    one; default: a private ``memory://``). ``kv``: the shared state (a key-value store; default: an
    in-process :class:`LocalKV`). ``claim_timeout``: seconds without heartbeat after which a
    node is dead and its running Works are taken over; ``heartbeat_interval``: how often a node
    beats; ``poll_interval``: how long a consumer waits for a record before checking for shutdown;
    ``commit_every`` / ``commit_interval``: how many finished records, or seconds, between two
    commits of the consumer group's offsets (a crash re-reads at most that many finished records,
    which their state then skips). ``store_state``: keep a state per Work (see module doc).
    ``max_recoveries``: after a Work's owner died while running it that many times (0 means the
    same as 1), the next node dead-letters it instead of running it (a queue's own wins).
    """

    needs_node = True

    def __init__(
        self,
        queues: Iterable[QueueConfig] = (),
        processing: Mapping[str, bool] | None = None,
        node_id: str | None = None,
        codec: str = "json",
        retry_delay: float = 0.1,
        max_retry_delay: float = 10.0,
        log_manager: LogManager | Callable[[], LogManager] | None = None,
        kv: KV | None = None,
        prefix: str = "",
        claim_timeout: float = 5.0,
        heartbeat_interval: float = 1.0,
        poll_interval: float = 0.2,
        max_record_bytes: int = 1 << 20,
        owns_log_manager: bool = False,
        commit_every: int = 1000,
        commit_interval: float = 0.2,
        store_state: bool = True,
        max_payload_depth: int = DEFAULT_MAX_DEPTH,
        max_payload_bytes: int = DEFAULT_MAX_BYTES,
        max_recoveries: int = 3,
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
        if type(max_recoveries) is not int or max_recoveries < 0:
            raise ConfigurationError(
                f"stream WorkManager: max_recoveries must be an int >= 0, got {max_recoveries!r}"
            )
        self.max_recoveries = max_recoveries
        if not claim_timeout > 0 or not heartbeat_interval > 0 or not poll_interval > 0:
            raise ConfigurationError(
                "stream WorkManager: claim_timeout, heartbeat_interval and poll_interval must be > 0, "
                f"got {claim_timeout!r}, {heartbeat_interval!r}, {poll_interval!r}"
            )
        if heartbeat_interval >= claim_timeout:
            raise ConfigurationError(
                f"stream WorkManager: heartbeat_interval ({heartbeat_interval}) must be shorter than "
                f"claim_timeout ({claim_timeout})"
            )
        if log_manager is None:
            from conveyor.log import open_log_manager

            log_manager = open_log_manager("memory://")
            owns_log_manager = True
        elif not isinstance(log_manager, LogManager):
            log_manager = log_manager()
        self._log_manager: LogManager = log_manager
        self._polled = _is_polled(log_manager)
        self._owns_log_manager = owns_log_manager
        self._unlogged: list[DeadLetter] = []
        self.claim_timeout = float(claim_timeout)
        self.heartbeat_interval = float(heartbeat_interval)
        self.poll_interval = float(poll_interval)
        if type(max_record_bytes) is not int or max_record_bytes < 1:
            raise ConfigurationError(
                f"stream WorkManager: max_record_bytes must be an int >= 1, got {max_record_bytes!r}"
            )
        self.max_record_bytes = max_record_bytes
        if type(commit_every) is not int or commit_every < 1 or not commit_interval >= 0:
            raise ConfigurationError(
                "stream WorkManager: commit_every must be an int >= 1 and commit_interval >= 0, "
                f"got {commit_every!r}, {commit_interval!r}"
            )
        self.commit_every = commit_every
        self.commit_interval = float(commit_interval)
        if not isinstance(store_state, bool):
            raise ConfigurationError(f"stream WorkManager: store_state must be a bool, got {store_state!r}")
        self.store_state = store_state
        self.owner = f"{self.node_id}#{uuid.uuid4().hex[:8]}"
        self._state = WorkStateStore(kv if kv is not None else LocalKV(), prefix)
        self._rr = itertools.count()
        self._beating = threading.Event()
        self._heart: threading.Thread | None = None
        self._finished = False
        self._read_errors: dict[str, tuple[str, float]] = {}  # per queue: last read error, logged when
        self._read_errors_lock = threading.Lock()
        self._queues: dict[str, _Queue] = {}
        for qid, cfg in self._configs.items():
            name = queue_log(qid)
            partitions = cfg.partitions or max(4, 2 * cfg.max_threads)
            log_manager.create_if_not_exists(name, partitions)
            appender = log_manager.appender(name, codec=BytesCodec())
            self._queues[qid] = _Queue(cfg, name, appender)
        if self._state.created and store_state:
            # A new state over logs that may hold Works already (the state was lost, or never
            # shared): what the queues hold counts as scheduled; those records will run.
            for qid, q in self._queues.items():
                lag = log_manager.lag(q.name, q.name).lag
                if lag:
                    self._state.add(qid, "scheduled", lag)

    @classmethod
    def from_url(
        cls,
        url: str,
        queues: Iterable[QueueConfig] = (),
        processing: Mapping[str, bool] | None = None,
        node: Any = None,
        **options: Any,
    ) -> StreamWorkManager:
        """Build from ``stream`` or ``stream://?log=URL&kv=URL&...`` (and a node, if given)."""
        parts = urlsplit(url)
        if parts.scheme not in ("", "stream") or (parts.scheme == "" and parts.path != "stream"):
            raise ConfigurationError(f"not a stream WorkManager URL: {url!r}")
        query = dict(parse_qsl(parts.query))
        unknown = set(query) - _OPTIONS
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) {sorted(unknown)} in work URL {url!r}; known: {sorted(_OPTIONS)}"
            )
        for key in ("claim_timeout", "heartbeat_interval", "poll_interval", "commit_interval"):
            if key in query:
                try:
                    options.setdefault(key, float(query[key]))
                except ValueError:
                    raise ConfigurationError(f"work URL {url!r}: {key} must be a number") from None
        for key in (
            "max_record_bytes",
            "commit_every",
            "max_recoveries",
            "max_payload_depth",
            "max_payload_bytes",
        ):
            if key in query:
                try:
                    options.setdefault(key, int(query[key]))
                except ValueError:
                    raise ConfigurationError(f"work URL {url!r}: {key} must be an integer") from None
        for key in ("prefix", "codec"):
            if key in query:
                options.setdefault(key, query[key])
        if "store_state" in query:
            flag = parse_flag(f"work URL {url!r}: store_state", query["store_state"])
            options.setdefault("store_state", flag)
        if "log" in query and "log_manager" not in options:
            from conveyor.log import open_log_manager

            options["log_manager"] = open_log_manager(query["log"])
            options["owns_log_manager"] = True
        elif node is not None:
            options.setdefault("log_manager", lambda: node.log_manager)
        if "kv" in query and "kv" not in options:
            options["kv"] = _open_kv(query["kv"])
        elif node is not None and "kv" not in options:
            options["kv"] = _node_kv(node)
        return cls(queues, processing, **options)

    # --- scheduling ----------------------------------------------------------------------------

    def _enqueue(self, queue_id: str, work: Work, data: bytes, scheduling: Scheduling) -> bool:
        q = self._queues[queue_id]
        wid = work.id
        if not self.store_state:
            return self._enqueue_untracked(q, work, data, scheduling)
        if scheduling is Scheduling.CANCEL_SCHEDULED:
            return self._cancel(wid)
        cls = type(work)
        token = _token()
        capacity = q.config.capacity
        record = self._record(wid, token, data)
        inline = None if record.external else data

        def change(st: WorkStatus | None) -> tuple[Any, tuple[bool, int]]:
            waiting = list(st.waiting) if st is not None else []
            running = dict(st.running) if st is not None else {}
            if scheduling is Scheduling.IF_NOT_SCHEDULED and waiting:
                return WorkStateStore.KEEP, (False, 0)
            if scheduling is Scheduling.IF_NOT_RUNNING_OR_SCHEDULED and (
                waiting or any(self._alive(o) for o in running.values())
            ):
                return WorkStateStore.KEEP, (False, 0)
            replaced = 0
            if waiting and cls.coalescing:
                replaced = len(waiting)
                waiting = [token]
            elif waiting and cls.idempotent:
                return WorkStateStore.KEEP, (False, 0)
            else:
                if capacity and self._state.count(queue_id, "scheduled") >= capacity:
                    raise WorkQueueFullError(
                        f"work queue {queue_id!r} is full ({capacity} Works waiting); "
                        f"Work {wid} not scheduled"
                    )
                waiting.append(token)
            # A copy of a Work taken over from dead owners keeps their count (see _claim).
            recoveries = st.recoveries if st is not None else 0
            return WorkStatus(queue_id, waiting, running, inline, recoveries=recoveries), (True, replaced)

        try:
            # A new id has no state yet: try that first (one round trip instead of two).
            accepted, replaced = self._state.update(wid, change, guess=None)
        except BaseException:
            if record.external:
                self._state.drop_external(wid, token)
            raise
        if not accepted:
            if record.external:
                self._state.drop_external(wid, token)
            return False
        self._state.add(queue_id, "scheduled", 1 - replaced)
        if replaced:
            self._state.add(queue_id, "canceled", replaced)
        try:
            self._append(q, record, work)
        except Exception:
            self._forget_token(wid, token)
            self._state.add(queue_id, "scheduled", -1)
            if record.external:
                self._state.drop_external(wid, token)
            raise
        return True

    def _enqueue_untracked(self, q: _Queue, work: Work, data: bytes, scheduling: Scheduling) -> bool:
        """Append ``work`` with no state (``store_state=false``)."""
        if scheduling is not Scheduling.ENQUEUE:
            raise WorkError(
                f"Scheduling.{scheduling.name} needs the state of each Work, which this stream "
                "WorkManager does not keep (store_state=false): use Scheduling.ENQUEUE, or "
                f"store_state=true; Work {work.id} not scheduled"
            )
        capacity = q.config.capacity
        if capacity and self._waiting(q, self._running_elsewhere(q)) >= capacity:
            raise WorkQueueFullError(
                f"work queue {q.config.id!r} is full ({capacity} Works waiting); Work {work.id} not scheduled"
            )
        token = _token()
        coalescing = type(work).coalescing
        record = self._record(work.id, token, data, untracked=True, coalescing=coalescing)
        if coalescing:  # before the append: a reader of this copy must find it the latest
            self._state.set_latest(work.id, token)
        try:
            self._append(q, record, work)
        except Exception:
            if record.external:
                self._state.drop_external(work.id, token)
            raise
        return True

    def _record(
        self, work_id: str, token: str, data: bytes, untracked: bool = False, coalescing: bool = False
    ) -> WorkRecord:
        """The record of a Work: inline, or (too big) with the Work stored in the KV store."""
        if len(data) <= self.max_record_bytes:
            return WorkRecord(work_id, token, time.time(), data, False, untracked, coalescing)
        self._state.put_external(work_id, token, data)
        return WorkRecord(work_id, token, time.time(), b"", True, untracked, coalescing)

    def _append(self, q: _Queue, record: WorkRecord, work: Work | None) -> None:
        doc = work.document if work is not None else None
        key: str | int = doc.doc_id if doc is not None else next(self._rr) % q.appender.size()
        q.appender.append(key, _record_enc.encode(record))
        q.appended.set()

    def _forget_token(self, work_id: str, token: str) -> None:
        def change(st: WorkStatus | None) -> tuple[Any, None]:
            if st is None or token not in st.waiting:
                return WorkStateStore.KEEP, None
            st.waiting.remove(token)
            return (None if st.empty else st), None

        self._state.update(work_id, change)

    def _cancel(self, work_id: str) -> bool:
        def change(st: WorkStatus | None) -> tuple[Any, tuple[int, str, bool]]:
            if st is None or st.empty:
                return WorkStateStore.KEEP, (0, "", False)
            n = len(st.waiting)
            if not st.running:
                return None, (n, st.queue, False)
            # Running copies are asked to stop: their node sees it at its next heartbeat.
            canceling = sorted(set(st.canceling) | set(st.running))
            remote = any(self._alive(o) for o in st.running.values())
            return WorkStatus(st.queue, [], st.running, None, canceling), (n, st.queue, remote)

        canceled, queue_id, running_elsewhere = self._state.update(work_id, change)
        if canceled:
            self._state.add(queue_id, "scheduled", -canceled)
            self._state.add(queue_id, "canceled", canceled)
        found_running = False
        for q in self._queues.values():
            with q.lock:
                for rt in q.running.get(work_id, []):
                    rt.cancel = True
                    rt.suspending.set()
                    found_running = True
        return canceled > 0 or found_running or running_elsewhere

    def _poll_cancels(self) -> None:
        """Stop the Works running here that another node canceled."""
        for q in self._queues.values():
            with q.lock:
                running = list(q.tokens.items())
            for token, (work_id, rt) in running:
                st = self._state.status(work_id)
                if st is not None and token in st.canceling:
                    rt.cancel = True
                    rt.suspending.set()

    # --- consuming -----------------------------------------------------------------------------

    def _start(self) -> None:
        self._state.beat(self.owner, ttl=self.claim_timeout * 2)
        self._heart = threading.Thread(
            target=self._heartbeat, name=f"conveyor-work-{self.node_id}-heartbeat", daemon=True
        )
        self._heart.start()
        for qid in self._queues:
            if self._processing[qid]:
                self._start_queue(qid)

    def _heartbeat(self) -> None:
        # Beats until shutdown, and on while Works that did not stop in time still run (so that
        # nobody takes them over while they may still finish).
        while True:
            if self._beating.wait(self.heartbeat_interval):
                # Stopping: beat on at the same pace (not in a loop) while consumers remain.
                consumers = [t for q in self._queues.values() for t in q.threads]
                if self._join(consumers, time.monotonic() + self.heartbeat_interval):
                    return
            try:
                self._state.beat(self.owner, ttl=self.claim_timeout * 2)
                if self.store_state:
                    self._poll_cancels()
                for qid, q in self._queues.items():  # back after being forgotten as dead
                    if any(t.is_alive() for t in q.threads):
                        self._state.join(qid, self.owner)
                    self._publish_running(q)
            except Exception:
                logger.exception("work heartbeat of %s failed", self.owner)

    def _consumers_alive(self) -> bool:
        return any(t.is_alive() for q in self._queues.values() for t in q.threads)

    def _alive(self, owner: str) -> bool:
        return self._state.alive(owner, self.claim_timeout)

    def _start_queue(self, queue_id: str) -> None:
        q = self._queues[queue_id]
        with self._lock:
            self._state.join(queue_id, self.owner)
            with q.lock:
                current = q.consumer
                if current is not None and not current.stop.is_set() and current.live:
                    return
                stop = threading.Event()
                consumer = _Consumer(stop, OffsetTracker(self.commit_every, self.commit_interval))
                q.stop = stop
                q.consumer = consumer
            try:
                consumer.tailer = self._open_tailer(q, consumer)
            except Exception:
                logger.exception("work queue %s: cannot open a consumer", q.config.id)
                return
            threads = [
                threading.Thread(
                    target=self._consume,
                    args=(q, consumer),
                    name=f"conveyor-work-{self.node_id}-{queue_id}-{n}",
                    daemon=True,
                )
                for n in range(q.config.max_threads)
            ]
            with q.lock:
                consumer.live = len(threads)
                q.threads = [t for t in q.threads if t.is_alive()] + threads
            for t in threads:
                t.start()

    def _open_tailer(self, q: _Queue, consumer: _Consumer) -> LogTailer[Any]:
        manager = self._log_manager
        if manager.capabilities.subscribe:
            listener = _CommitOnRevoke(self, consumer)
            return manager.subscribe(q.name, q.name, listener=listener, codec=BytesCodec())
        # No group rebalancing in this backend: this node reads every partition.
        partitions = [LogPartition(q.name, p) for p in range(manager.size(q.name))]
        return manager.create_tailer(q.name, partitions, codec=BytesCodec())

    def _consume(self, q: _Queue, consumer: _Consumer) -> None:
        """One of the queue's threads: take a record when free, run it, say it is finished."""
        stop = consumer.stop
        try:
            while not stop.is_set() and not consumer.closed:
                try:
                    rec = self._take(q, consumer)
                except Exception as exc:  # not expected: the thread goes on (counted)
                    self._worker_died(q.config.id, exc)
                    stop.wait(self.poll_interval)
                    continue
                if rec is None:
                    continue
                try:
                    try:
                        done = self._deliver(q, consumer, rec, stop)
                    except Exception as exc:
                        done = self._retry_record(q, consumer, rec, stop, exc)
                    if not done:
                        break  # left in flight: its offset is not committed, it is read again later
                    consumer.tracker.finished(rec.offset.partition, rec.offset.offset)
                finally:
                    with q.lock:
                        q.in_hand -= 1
                    self._notify()
        finally:
            with q.lock:
                consumer.live -= 1
                last = consumer.live == 0
            if last:
                self._close_consumer(consumer)
                self._publish_running(q)
            self._notify()

    def _log_read_error(self, q: _Queue, exc: Exception) -> None:
        """Log a failed read of ``q``'s log: with its traceback when the error is new, then the same
        error at most once a minute (damage in a local log fails every read, every poll interval)."""
        text = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        with self._read_errors_lock:
            last = self._read_errors.get(q.config.id)
            if last is not None and last[0] == text and now - last[1] < _READ_ERROR_LOG_INTERVAL_S:
                return
            self._read_errors[q.config.id] = (text, now)
        if last is not None and last[0] == text:
            logger.error("work queue %s: reading %s still fails: %s", q.config.id, q.name.urn, text)
        else:
            logger.error("work queue %s: reading %s failed", q.config.id, q.name.urn, exc_info=exc)

    def _take(self, q: _Queue, consumer: _Consumer) -> LogRecord[Any] | None:
        """The next record to run, read by this (free) thread; None when there is none now."""
        if not consumer.read_lock.acquire(timeout=self.poll_interval):
            return None
        try:
            tailer = consumer.tailer
            if consumer.stop.is_set() or consumer.closed or tailer is None:
                return None
            tracker = consumer.tracker
            if tracker.due():
                self._commit(consumer)
            try:
                rec = self._read(q, consumer, tailer) if self._polled else tailer.read(self.poll_interval)
            except RebalanceError:
                tracker.rebalanced()
                return None
            except LogClosedError:
                consumer.closed = True  # the log manager was closed under us: nothing more to read
                return None
            except Exception as exc:
                self._log_read_error(q, exc)
                consumer.stop.wait(self.poll_interval)
                return None
            if rec is None:
                if tracker.dirty:
                    self._commit(consumer)
                self._publish_running(q)
                return None
            # In hand before it counts as read: await_completion never sees it as neither.
            with q.lock:
                q.in_hand += 1
            if not tracker.read(rec.offset.partition, rec.offset.offset):
                with q.lock:
                    q.in_hand -= 1
                return None  # read again after a rebalance, and running or done here
            return rec
        finally:
            consumer.read_lock.release()

    def _read(self, q: _Queue, consumer: _Consumer, tailer: LogTailer[Any]) -> LogRecord[Any] | None:
        """``tailer.read(poll_interval)`` for a log that is polled (``local://``): an append by this
        process wakes the reader at once instead of at its next look at the files."""
        now = time.monotonic()
        deadline = now + self.poll_interval
        delay = _FIRST_WAIT
        appended = q.appended
        while True:
            appended.clear()
            rec = tailer.read(0)
            if rec is not None:
                consumer.last_read = time.monotonic()
                return rec
            if consumer.stop.is_set():
                return None
            now = time.monotonic()
            if now >= deadline:
                return None
            # Idle readers look less often: many of them polling every millisecond would take
            # the GIL from busy threads.
            since = now - consumer.last_read
            cap = _FIRST_WAIT if since < _HOT_FOR else _MAX_WAIT if since < _IDLE_AFTER else _IDLE_WAIT
            appended.wait(min(delay, cap, deadline - now))
            delay = min(delay * 2, cap)

    def _commit(self, consumer: _Consumer, among: list[LogPartition] | None = None) -> None:
        """Commit the partitions whose records read so far are all finished (read lock held)."""
        tailer, tracker = consumer.tailer, consumer.tracker
        if tailer is None or consumer.closed:
            return
        # A record committed is never read again: what it counted must be written first.
        self._flush_counts()
        for partition in tracker.committable(among):
            try:
                tailer.commit(partition)
            except ConfigurationError:
                tracker.forget(partition)  # no longer ours: the rebalance is reported by read
                continue
            except LogClosedError:
                consumer.closed = True
                return
            except Exception:
                logger.exception("work queue: committing %s failed", partition)
                return
            tracker.committed(partition)
        if among is None:
            tracker.tried()

    def _close_consumer(self, consumer: _Consumer) -> None:
        """The last thread of ``consumer`` ended: commit what is finished, release the partitions."""
        with consumer.read_lock:
            tailer = consumer.tailer
            if tailer is None:
                return
            try:
                self._commit(consumer)
                self._lower_horizons(consumer)
            except Exception:
                logger.exception("work queue: last commit failed")
            finally:
                consumer.tailer = None
                tailer.close()

    def _handle(self, q: _Queue, raw: bytes, stop: threading.Event) -> bool:
        """Run one record; False when stopping left it unhandled (not to be committed)."""
        qid = q.config.id
        try:
            record = _record_dec.decode(raw)
        except Exception as exc:  # DecodeError, ValidationError, RecursionError...: the bytes, for good
            error = WorkPayloadError(f"not a Work record of {q.name.urn!r}: {type(exc).__name__}: {exc}")
            self._to_dlq(self._dead_letter(qid, "?", "?", bytes(raw), error))
            self._state.add_later(qid, "completed", 1)
            return True
        # In hand (counted by _take) from its read until its end: between the claim and the
        # start it counts as neither scheduled nor running, and await_completion must not take
        # that for idle.
        return self._claim_and_run(q, record, stop)

    def _retry_record(
        self, q: _Queue, consumer: _Consumer, rec: LogRecord[Any], stop: threading.Event, exc: Exception
    ) -> bool:
        """``rec`` failed with ``exc``: handle it again here after ``poll_interval`` (it stays in
        hand meanwhile: the queue is not idle), a backend's error (``retriable``) as long as it
        lasts, any other ``_RECORD_RETRIES`` times, then dead-letter it. False when stopping left
        it unhandled (not to be committed)."""
        failures = 0
        while True:
            failures += 1
            if self._failed_for_good(q, rec, exc, failures):
                return True
            if stop.wait(self.poll_interval):
                return False
            try:
                return self._deliver(q, consumer, rec, stop)
            except Exception as again:
                exc = again

    def _failed_for_good(self, q: _Queue, rec: LogRecord[Any], exc: Exception, failures: int) -> bool:
        """Log a failed handling of ``rec``; True when it was dead-lettered instead of retried."""
        qid = q.config.id
        if isinstance(exc, ConveyorError) and exc.retriable:
            logger.error("work queue %s: record at %s failed, retried: %s", qid, rec.offset, exc)
            return False
        if failures <= _RECORD_RETRIES:
            logger.error(
                "work queue %s: record at %s failed (%d/%d), retried",
                qid,
                rec.offset,
                failures,
                _RECORD_RETRIES,
                exc_info=exc,
            )
            return False
        raw = bytes(rec.message)
        work_id, type_name, data = "?", "?", raw
        record: WorkRecord | None = None
        error = f"{type(exc).__name__}: {exc} (record at {rec.offset} failed {failures} times)"
        try:
            record = _record_dec.decode(raw)
            work_id, data = record.id, record.data
            if record.external:
                data = b""  # until read: a payload not in the letter stays in the KV store
                data = self._state.get_external(record.id, record.token) or b""
            type_name, _ = self.codec.peek(data)
        except Exception:
            pass
        if record is not None and record.external and not data:
            error += f"; its payload is kept in the KV store (key x:{record.id}:{record.token})"
            record = msgspec.structs.replace(record, external=False)  # released, payload kept
        try:
            self._to_dlq(self._dead_letter(qid, work_id, type_name, data, error))
            if record is not None:
                self._release(record)
            self._state.add_later(qid, "completed", 1)
        except Exception:
            logger.exception(
                "work queue %s: record at %s dead-lettered, its state not cleared", qid, rec.offset
            )
        return True

    def _idle(self, queue_id: str) -> bool:
        q = self._queues[queue_id]
        # Busy here is busy: no need to read the shared state (await_completion asks at every
        # Work that ends).
        if q.in_hand or q.running_count or not super()._idle(queue_id):
            return False
        # A record read here between the first look and the metrics is in hand now (it counts
        # in hand before it stops counting as waiting); the metrics may have missed it.
        return q.in_hand == 0 and q.running_count == 0

    def _claim_and_run(self, q: _Queue, record: WorkRecord, stop: threading.Event) -> bool:
        qid = q.config.id
        verdict = self._untracked_verdict(record) if record.untracked else self._claim(q, record, stop)
        if verdict is _STOP:
            return False
        if verdict.deaths:
            self._bury(q, record, verdict.deaths)
            return True
        if verdict.holder:
            logger.warning(
                "work queue %s: Work %s taken over from %s, whose heartbeat stopped while it ran "
                "(%d time(s); max_recoveries=%d)",
                qid,
                record.id,
                verdict.holder,
                verdict.recoveries,
                self._max_recoveries(qid),
            )
        if verdict is _SKIP or verdict is _SKIP_CANCELED:
            if record.external:
                self._state.drop_external(record.id, record.token)
            if verdict is _SKIP_CANCELED:
                self._state.add_later(qid, "canceled", 1)
                self._notify()
            return True
        rt = _Runtime()
        with q.lock:
            q.running.setdefault(record.id, []).append(rt)
            q.tokens[record.token] = (record.id, rt)
        # Running before no longer waiting: another node's await_completion never sees neither.
        self._count_running(q, 1)
        if verdict.takes_waiting:
            self._state.add(qid, "scheduled", -1)
        self._notify()
        try:
            self._run(q, record, rt, stop)
        finally:
            with q.lock:
                lst = q.running.get(record.id, [])
                if rt in lst:
                    lst.remove(rt)
                if not lst:
                    q.running.pop(record.id, None)
                q.tokens.pop(record.token, None)
            self._count_running(q, -1)
            self._notify()
        return True

    def _bury(self, q: _Queue, record: WorkRecord, deaths: int) -> None:
        """Dead-letter, without running it, a Work that was in flight on ``deaths`` dead owners."""
        qid = q.config.id
        data = self._state.get_external(record.id, record.token) if record.external else record.data
        self._letter_and_release(qid, record, data, self._crash_error(qid, deaths))
        self._notify()

    def _letter_and_release(
        self, qid: str, record: WorkRecord, data: bytes | None, error: BaseException | str
    ) -> None:
        """Dead-letter a claimed Work that is not to run, then release it (in that order: a crash
        in between leaves it claimed, to be found again, never lost) and count it completed."""
        type_name, _ = self.codec.peek(data) if data else ("?", "?")
        self._to_dlq(self._dead_letter(qid, record.id, type_name, data or b"", error))
        self._release(record)
        self._state.add_later(qid, "completed", 1)

    def _deliver(self, q: _Queue, consumer: _Consumer, rec: LogRecord[Any], stop: threading.Event) -> bool:
        """Handle one record read (see ``_handle``); without the state, count its starts when an
        earlier reader may have started it, and dead-letter it instead when its readers died
        ``max_recoveries`` times while running it."""
        if self.store_state:  # counted in the Work's state (see _claim)
            return self._handle(q, rec.message, stop)
        starts = self._redeliveries(consumer, rec.offset)
        if not starts:
            return self._handle(q, rec.message, stop)
        qid, partition, offset = q.config.id, rec.offset.partition.partition, rec.offset.offset
        # The first start of the record (before the horizon was read) was not counted: each one
        # counted here follows the death (or the departure) of a reader that had started it.
        if starts > 1:
            logger.warning(
                "work queue %s: record at %s started again after its reader died (%d time(s); "
                "max_recoveries=%d)",
                qid,
                rec.offset,
                starts,
                self._max_recoveries(qid),
            )
        # A first count may be of a record the dead reader only read past (below the horizon,
        # never started): dead-lettering on it would bury healthy Works behind a crash, so
        # without the state a Work needs 2 counted deaths at least (max_recoveries 0 and 1 act as 2).
        if starts > 1 and self._killed_too_often(qid, starts) and self._bury_record(q, rec.message, starts):
            # Kept a while: read again before its offset is committed, it is dead-lettered again.
            self._state.delivered(qid, partition, offset, keep=(starts, _RAN_TTL))
            done = True
        else:
            done = self._handle(q, rec.message, stop)
            if done:
                self._state.delivered(qid, partition, offset)
        with consumer.starts.lock:
            consumer.starts.counted.pop(rec.offset, None)
        return done

    def _bury_record(self, q: _Queue, raw: bytes, deaths: int) -> bool:
        """Dead-letter an untracked record started ``deaths`` times by readers that died; False
        when it is not to be run anyway (garbage, a coalesced copy): ``_handle`` decides."""
        try:
            record = _record_dec.decode(raw)
        except Exception:
            return False
        if self._untracked_verdict(record) is not _RUN:
            return False
        self._bury(q, record, deaths)
        return True

    def _redeliveries(self, consumer: _Consumer, offset: LogOffset) -> int:
        """How many readers started the record at ``offset`` after one had read past it and
        died (this one included), or 0 when no earlier reader can have started it (no KV
        operation, but a move of the horizon every ``_HORIZON_STEP`` records)."""
        partition = offset.partition
        qid, index = partition.name.name, partition.partition
        starts = consumer.starts
        with starts.lock:
            counted = starts.counted.get(offset)
            if counted is not None:  # read again here (its handling failed): not a new start
                return counted
            epoch = consumer.tracker.epoch(partition)
            h = starts.horizons.get(partition)
            if h is None or h.epoch != epoch:  # a new assignment: what was learnt is stale
                raw, value = self._state.horizon(qid, index)
                h = starts.horizons[partition] = _Horizon(epoch, value, value, raw)
            if offset.offset >= h.value:
                # Stored before the record starts: whoever reads the partition next knows that
                # records from here on may have been started.
                target = offset.offset + _HORIZON_STEP
                while True:
                    now = self._state.move_horizon(qid, index, h.raw, target)
                    if now is None:
                        h.raw, h.value = target, target
                        break
                    h.raw, h.value = now
                    if h.value > offset.offset:  # moved past it by another reader meanwhile
                        break
            if offset.offset >= h.careful_below:
                return 0
        count = self._state.redelivered(qid, index, offset.offset)
        with starts.lock:
            starts.counted[offset] = count
        return count

    def _lower_horizons(self, consumer: _Consumer) -> None:
        """At a clean stop: bring the horizon of each partition this consumer read and committed
        in full back to its committed offset, so the next reader counts no starts above it."""
        starts = consumer.starts
        with starts.lock:
            horizons = dict(starts.horizons)
        for partition, position in consumer.tracker.settled().items():
            h = horizons.get(partition)
            if h is None:
                continue
            lower = max(position, h.careful_below)
            if lower < h.value:
                self._state.move_horizon(partition.name.name, partition.partition, h.raw, lower)

    def _untracked_verdict(self, record: WorkRecord) -> _Verdict:
        """Run a record written without state, unless a later copy of its coalescing Work was
        scheduled (then it counts as canceled)."""
        if record.coalescing:
            latest = self._state.latest(record.id)
            if latest == "ran:" + record.token:
                return _SKIP  # read again (a crash, a rebalance) after it ran: counted already
            if latest is not None and latest != record.token:
                return _SKIP_CANCELED
        return _RUN

    def _claim(self, q: _Queue, record: WorkRecord, stop: threading.Event) -> _Verdict:
        """Take the claim on ``record`` for this manager, or say why not."""
        pre_birth = record.at < self._state.born
        token = record.token

        def change(st: WorkStatus | None) -> tuple[Any, _Verdict]:
            if st is None:
                if pre_birth:  # written before the state existed: it cannot know it, run it
                    return WorkStatus(q.config.id, [], {token: self.owner}), _RUN_WAITING
                return WorkStateStore.KEEP, _SKIP
            holder = st.running.get(token)
            if holder is not None:
                if holder == self.owner and token not in q.tokens:
                    return st, _RUN  # claimed here, then its setup failed (a backend): ours again
                if self._alive(holder):
                    return WorkStateStore.KEEP, _WAIT
                if token in st.canceling:  # canceled while its dead owner ran it: drop it
                    del st.running[token]
                    st.canceling.remove(token)
                    return (None if st.empty else st), _SKIP_CANCELED
                st.running[token] = self.owner  # its owner died: take the Work over
                st.recoveries += 1
                if self._killed_too_often(q.config.id, st.recoveries):
                    # Claimed first, dead-lettered then released: a crash in between finds it
                    # held by a dead owner again, and dead-letters it again, never runs it.
                    return st, _Verdict("poison", deaths=st.recoveries)
                return st, _Verdict("run-recovered", holder=holder, recoveries=st.recoveries)
            if token in st.waiting or pre_birth:
                if any(self._alive(o) for o in st.running.values()):
                    return WorkStateStore.KEEP, _WAIT  # never two runs of one Work id at once
                if token in st.waiting:
                    st.waiting.remove(token)
                st.running[token] = self.owner
                if not st.waiting:
                    st.data = None
                return st, _RUN_WAITING
            return WorkStateStore.KEEP, _SKIP

        # The state as the scheduler wrote it, when nothing happened to it since.
        guess = WorkStatus(q.config.id, [token], {}, None if record.external else record.data)
        while True:
            verdict = self._state.update(record.id, change, guess=guess)
            if verdict is not _WAIT:
                break
            if stop.wait(self.poll_interval):
                return _STOP
        return verdict  # the caller counts a waiting copy taken (see _claim_and_run)

    def _count_running(self, q: _Queue, delta: int) -> None:
        """Count Works starting (+1) or ending (-1) here.

        The shared count (what other nodes' ``metrics`` and ``await_completion`` read) is written
        at once only when it says 0 while a Work runs here; otherwise when the queue goes idle
        and at each heartbeat. So it may say Works run here a moment after they ended, never
        the other way round, and a busy queue costs no state write per Work for it.
        """
        with q.publish_lock:
            with q.lock:
                q.running_count += delta
                count = q.running_count
            if count > 0 and q.published_running == 0:
                self._state.set_running(q.config.id, self.owner, count)
                q.published_running = count

    def _flush_counts(self) -> None:
        """Write the completed and canceled counts kept back (failures are logged: they stay
        kept for the next try)."""
        try:
            self._state.flush()
        except Exception:
            logger.exception("work manager %s: cannot write its completed/canceled counts", self.owner)

    def _publish_running(self, q: _Queue) -> None:
        """Write the count of Works running here to the shared state, if it changed, and the
        counts kept back (failures are logged: the next heartbeat tries again)."""
        with q.publish_lock:
            # Flushed under the lock: a Work ending meanwhile waits here to count itself out, so
            # no node reads "nothing runs" before the completion of that Work is written.
            self._flush_counts()
            count = q.running_count
            if count == q.published_running:
                return
            try:
                self._state.set_running(q.config.id, self.owner, count)
            except Exception:
                logger.exception("work queue %s: cannot publish its running count", q.config.id)
                return
            q.published_running = count

    def _run(self, q: _Queue, record: WorkRecord, rt: _Runtime, stop: threading.Event) -> None:
        qid = q.config.id
        data: bytes | None = record.data
        try:
            if record.external:
                data = self._state.get_external(record.id, record.token)
                if data is None:
                    raise WorkPayloadError(
                        f"Work {record.id} was too big for a record and its payload is no longer in "
                        "the KV store (key x:<id>:<token>); it cannot be run"
                    )
            assert data is not None
            work = self.codec.decode(data)
        except Exception as exc:  # garbage, unknown type, bad fields, too deep or big, payload gone
            if not isinstance(exc, WorkError) or exc.retriable:
                # Not the bytes (a backend, a bug): retried, then dead-lettered (see
                # _retry_record); the claim stays ours meanwhile (see _claim).
                raise
            self._letter_and_release(qid, record, data, exc)
            return
        work.__dict__["_rt"] = rt
        if stop.is_set():
            rt.suspending.set()
        result = self._execute(qid, work)
        self._outcome_log(qid, work, result)
        if result.outcome is Outcome.SUSPENDED:
            self._resuspend(q, record, work, data)
            return
        self._release(record)
        if result.outcome is Outcome.CANCELED:
            self._state.add_later(qid, "canceled", 1)
            return
        self._state.add_later(qid, "completed", 1)
        if result.outcome is Outcome.FAILED:
            assert result.error is not None
            letter = self._dead_letter(
                qid,
                work.id,
                type(work).type_name,
                self._encode_or(work, data),
                result.error,
                work.get_category(),
                failed=True,
            )
            self._to_dlq(letter)

    def _resuspend(self, q: _Queue, record: WorkRecord, work: Work, read: bytes) -> None:
        """Put a suspended Work, with its fields as they are now (as ``read`` when they no longer
        encode), back at the end of its queue."""
        data = self._encode_or(work, read)
        token = _token()
        new = self._record(record.id, token, data, record.untracked, record.coalescing)
        if record.untracked:
            # A coalescing Work scheduled again meanwhile: that later copy runs, not this one.
            if not record.coalescing or self._state.replace_latest(record.id, record.token, token):
                self._append(q, new, work)
            elif new.external:
                self._state.drop_external(record.id, token)
            self._release(record)
            return

        def add(st: WorkStatus | None) -> tuple[Any, None]:
            st = st or WorkStatus(q.config.id)
            st.waiting.append(token)
            st.data = None if new.external else data
            return st, None

        # The new copy is wanted before it is written, and our claim on the old one is kept
        # until then: a reader of the new copy waits for us; a crash re-runs the old copy.
        self._state.update(record.id, add)
        self._state.add(q.config.id, "scheduled", 1)
        self._append(q, new, work)
        self._release(record)

    def _release(self, record: WorkRecord) -> None:
        if record.untracked:
            if record.coalescing:
                # Not deleted: an older copy still being taken by another thread, or read
                # again after a crash, must still find that it is not the latest.
                self._state.replace_latest(record.id, record.token, "ran:" + record.token, _RAN_TTL)
            if record.external:
                self._state.drop_external(record.id, record.token)
            return

        def change(st: WorkStatus | None) -> tuple[Any, None]:
            if st is None or record.token not in st.running:
                return WorkStateStore.KEEP, None
            del st.running[record.token]
            if record.token in st.canceling:
                st.canceling.remove(record.token)
            return (None if st.empty else st), None

        self._state.update(record.id, change)
        if record.external:
            self._state.drop_external(record.id, record.token)

    # --- observing -----------------------------------------------------------------------------

    def metrics(self, queue_id: str) -> WorkQueueMetrics:
        """Waiting, running (on every live node), completed and canceled counts of ``queue_id``."""
        self.queue_config(queue_id)
        q = self._queues[queue_id]
        if self.store_state:
            # Waiting read before running: a Work counts as running (here and in the shared
            # state) before it stops counting as waiting, so a Work starting between the two
            # reads is seen in one or the other, never in neither.
            scheduled = max(0, self._state.count(queue_id, "scheduled"))
            running = self._running(q)
        else:
            running = self._running(q)
            scheduled = self._waiting(q, running - q.running_count)
        return WorkQueueMetrics(
            scheduled,
            running,
            self._state.count(queue_id, "completed"),
            self._state.count(queue_id, "canceled"),
            queue_id,
            worker_restarts=self._restarts(queue_id),
            failed=self._state.count(queue_id, "failed"),
            dead_lettered=self._state.count(queue_id, "dead_lettered"),
        )

    def _count_dead_letter(self, queue_id: str, failed: bool) -> None:
        # with the completed count it goes with (deferred the same way)
        self._state.add_later(queue_id, "dead_lettered", 1)
        if failed:
            self._state.add_later(queue_id, "failed", 1)

    def _waiting(self, q: _Queue, remote_running: int) -> int:
        """Records of ``q`` not read yet (``store_state=false``): past the read position of this
        node on the partitions it reads, past the group's committed offset on the others, less
        the Works running on other nodes (``remote_running``)."""
        consumer = q.consumer
        positions = consumer.tracker.positions() if consumer is not None and consumer.live else {}
        own = 0
        others = 0
        for index, lag in enumerate(self._log_manager.lag_per_partition(q.name, q.name)):
            position = positions.get(LogPartition(q.name, index))
            if position is None:
                others += lag.lag
            else:
                own += max(0, lag.upper_offset - position)
        if others:
            # A Work running elsewhere is not committed past: it is in the others' lag.
            others = max(0, others - remote_running)
        return own + others

    def _running(self, q: _Queue) -> int:
        """Works of ``q`` running on every live node (this one's count as it knows it)."""
        return self._state.running(q.config.id, self.claim_timeout, (self.owner, q.running_count))

    def _running_elsewhere(self, q: _Queue) -> int:
        """Works of ``q`` running on the other live nodes."""
        return self._running(q) - q.running_count

    def get_work_state(self, work_id: str) -> WorkState:
        """RUNNING (on a live node), SCHEDULED or UNKNOWN (with ``store_state=false``: RUNNING
        for a Work running on this node, else UNKNOWN)."""
        if not self.store_state:
            running = any(work_id in q.running for q in self._queues.values())
            return WorkState.RUNNING if running else WorkState.UNKNOWN
        st = self._state.status(work_id)
        if st is None:
            return WorkState.UNKNOWN
        if any(self._alive(o) for o in st.running.values()):
            return WorkState.RUNNING
        if st.waiting:
            return WorkState.SCHEDULED
        return WorkState.UNKNOWN

    def find(self, work_id: str) -> Work | None:
        """The waiting Work with this id (its last scheduled state), or None (always None with
        ``store_state=false``)."""
        if not self.store_state:
            return None
        st = self._state.status(work_id)
        if st is None or not st.waiting:
            return None
        data = st.data if st.data is not None else self._state.get_external(work_id, st.waiting[-1])
        return self.codec.decode(data) if data is not None else None

    # --- lifecycle -----------------------------------------------------------------------------

    def _processing_changed(self, queue_id: str, enabled: bool) -> None:
        if not self.started:
            return
        if enabled:
            self._start_queue(queue_id)
        else:
            self._signal_stop(self._queues[queue_id])

    def _signal_stop(self, q: _Queue) -> None:
        with q.lock:
            q.stop.set()
            for rts in q.running.values():
                for rt in rts:
                    rt.suspending.set()

    def _join(self, threads: Iterable[threading.Thread], deadline: float) -> bool:
        ok = True
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
            ok &= not t.is_alive()
        return ok

    def _stop_queue(self, queue_id: str, timeout: float) -> bool:
        q = self._queues[queue_id]
        self._signal_stop(q)
        return self._join(list(q.threads), time.monotonic() + timeout)

    def _stop(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for q in self._queues.values():
            self._signal_stop(q)
        self._join([t for q in self._queues.values() for t in q.threads], deadline)
        self._beating.set()
        return self._finish(deadline)

    def _await_stopped(self, timeout: float) -> bool:
        return self._finish(time.monotonic() + timeout)

    def _finish(self, deadline: float) -> bool:
        """Wait for the consumers (and the heartbeat) until ``deadline``; leave once they ended."""
        ok = self._join([t for q in self._queues.values() for t in q.threads], deadline)
        if not ok or self._finished:
            return ok
        if self._heart is not None:
            self._heart.join(max(0.0, deadline - time.monotonic()))
        self._finished = True
        try:
            if self._started:
                self._flush_counts()
                # Every Work of ours is done or back in its queue: nothing to take over from us.
                self._state.leave(self.owner, self._queues)
        except Exception as exc:  # still a member: the others take our Works over once we look dead
            logger.error("work manager %s: cannot leave the queues: %s", self.owner, exc, exc_info=True)
            ok = False
        finally:
            if self._owns_log_manager:
                self._log_manager.close()
        return ok


def _is_polled(log_manager: LogManager) -> bool:
    """Whether readers of ``log_manager`` find new records by polling files (``local://``)."""
    try:
        from conveyor.log.local import LocalLogManager
    except ImportError:
        return False
    return isinstance(log_manager, LocalLogManager)


def _open_kv(url: str) -> KV:
    if url.startswith("local:"):  # ``local:NAME``: an in-process store shared by name
        return LocalKV.named(url[len("local:") :])
    try:
        from conveyor.kv import open_kv_store  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise ConfigurationError(f"work URL: kv={url!r} needs conveyor.kv, which is not available") from exc
    store: Any = open_kv_store(url, "work")
    kv: KV = store
    return kv


def _node_kv(node: Any) -> KV | None:
    try:
        store: Any = node.kv_store("work")
    except ImportError:
        logger.info("no conveyor.kv in this build: the stream WorkManager keeps its state in memory")
        return None
    kv: KV = store
    return kv
