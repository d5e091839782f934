"""``redis://host:6379/0``: persistent queues shared by every node (Nuxeo's Redis WorkManager).

Reliable-queue pattern: a worker thread takes a Work only when it is free, by moving its entry
atomically from the queue into its own *claims* list (``RPOPLPUSH``/``BLMOVE``) and marking it
running in the same round trip. Each node refreshes a heartbeat (a deadline in a sorted set, Redis
clock) from a thread of its own; when a node's deadline passes, any other node moves the entries
it held back to the head of their queues. So no Work is lost when a worker dies between taking
and finishing it, a slow Work is never handed to a second node while its owner is alive, and it
is handed over ``heartbeat_timeout`` seconds after its owner died. Delivery is at-least-once.

URL query options: ``prefix`` (key prefix, default ``conveyor:work:``), ``heartbeat_timeout``
(seconds, default 10), ``heartbeat_interval`` (default a fifth of the timeout), ``max_recoveries``
(default 3: a Work re-queued from that many dead nodes goes to the dead letters instead of
running again, since it may be what kills them; 0 means the same as 1), ``codec`` (``json`` or
``msgpack``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

from conveyor.errors import BackendUnavailableError, ConfigurationError, WorkError, WorkQueueFullError
from conveyor.registry import redact_url
from conveyor.work import redis_keys, redis_scripts
from conveyor.work.api import QueueConfig, Scheduling, Work, WorkQueueMetrics, WorkState, _Runtime
from conveyor.work.codec import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, DeadLetter
from conveyor.work.dlq import DamagedDeadLetter, decode_letter
from conveyor.work.manager import WorkManager
from conveyor.work.redis_keys import RedisKeys
from conveyor.work.runner import Outcome

__all__ = ["RedisWorkManager"]

logger = logging.getLogger("conveyor.work")

_OPTIONS = (
    "prefix",
    "heartbeat_timeout",
    "heartbeat_interval",
    "codec",
    "block_timeout",
    "max_recoveries",
    "max_payload_depth",
    "max_payload_bytes",
)
_INT_OPTIONS = ("max_recoveries", "max_payload_depth", "max_payload_bytes")


@dataclass
class _RQueue:
    config: QueueConfig
    threads: list[threading.Thread] = field(default_factory=list)
    running: dict[str, _Runtime] = field(default_factory=dict)  # entry -> runtime, this node only
    stopping: bool = False


def _entry_id(entry: str) -> str:
    return entry.split("~", 1)[0]


class RedisWorkManager(WorkManager):
    """WorkManager with its queues in Redis: persistent, shared by nodes, crash-safe."""

    def __init__(
        self,
        client: redis.Redis,
        queues: Iterable[QueueConfig] = (),
        processing: Mapping[str, bool] | None = None,
        node_id: str | None = None,
        codec: str = "json",
        retry_delay: float = 0.1,
        max_retry_delay: float = 10.0,
        prefix: str = redis_keys.DEFAULT_PREFIX,
        heartbeat_timeout: float = 10.0,
        heartbeat_interval: float | None = None,
        block_timeout: float = 0.5,
        max_recoveries: int = 3,
        url: str = "",
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
        if heartbeat_timeout <= 0:
            raise ConfigurationError(f"heartbeat_timeout must be > 0, got {heartbeat_timeout!r}")
        self._r = client
        self._url = redact_url(url) if url else repr(client)
        self.keys = RedisKeys(prefix)
        self.heartbeat_timeout = float(heartbeat_timeout)
        self.heartbeat_interval = float(heartbeat_interval or heartbeat_timeout / 5)
        self.block_timeout = block_timeout
        self.max_recoveries = int(max_recoveries)
        self._queues = {qid: _RQueue(cfg) for qid, cfg in self._configs.items()}
        self._cond = threading.Condition(self._lock)
        self._stop_hb = threading.Event()
        self._hb_thread: threading.Thread | None = None
        s = client.register_script
        self._s_schedule = s(redis_scripts.SCHEDULE)
        self._s_started_head = s(redis_scripts.STARTED_HEAD)
        self._s_claim = s(redis_scripts.CLAIM)
        self._s_complete = s(redis_scripts.COMPLETE)
        self._s_suspend = s(redis_scripts.SUSPEND)
        self._s_cancel = s(redis_scripts.CANCEL)
        self._s_heartbeat = s(redis_scripts.HEARTBEAT)
        self._s_recover = s(redis_scripts.RECOVER)
        self._s_release = s(redis_scripts.RELEASE)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisWorkManager:
        """Build from ``redis://[:password@]host:port/db?prefix=...&heartbeat_timeout=...``."""
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        for name in _OPTIONS:
            if name in query and name not in options:
                value = query.pop(name)
                try:
                    options[name] = (
                        value
                        if name in ("prefix", "codec")
                        else int(value)
                        if name in _INT_OPTIONS
                        else float(value)
                    )
                except ValueError:
                    raise ConfigurationError(
                        f"work URL {redact_url(url)!r}: {name} must be a number, got {value!r}"
                    ) from None
            else:
                query.pop(name, None)
        driver_url = urlunsplit(parts._replace(query=urlencode(query)))
        try:
            client = redis.Redis.from_url(driver_url, socket_timeout=30, health_check_interval=30)
        except (ValueError, redis.RedisError) as exc:
            raise ConfigurationError(f"invalid Redis work URL {redact_url(url)!r}: {exc}") from exc
        return cls(client, url=url, **options)

    # --- helpers -------------------------------------------------------------------------------

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except redis.ConnectionError as exc:
            raise BackendUnavailableError(f"Redis WorkManager at {self._url}: cannot {what}: {exc}") from exc
        except redis.RedisError as exc:
            raise WorkError(f"Redis WorkManager at {self._url}: cannot {what}: {exc}") from exc

    def _qkeys(self, qid: str, thread: int) -> list[str]:
        k = self.keys
        return [
            k.sched(qid),
            k.run(qid),
            k.data(qid),
            k.claims(self.node_id, qid, thread),
            k.queue(qid),
            k.recovered(qid),
        ]

    # --- scheduling ----------------------------------------------------------------------------

    def _enqueue(self, queue_id: str, work: Work, data: bytes, scheduling: Scheduling) -> bool:
        k = self.keys
        cls = type(work)
        if scheduling is Scheduling.CANCEL_SCHEDULED:
            found = self._call(
                "cancel a Work",
                self._s_cancel,
                keys=[
                    k.sched(queue_id),
                    k.queue(queue_id),
                    k.data(queue_id),
                    k.count(queue_id),
                    k.run(queue_id),
                    k.cancel(queue_id),
                ],
                args=[work.id],
            )
            return bool(found)
        entry = work.id if (cls.idempotent or cls.coalescing) else f"{work.id}~{uuid.uuid4().hex[:12]}"
        cap = self._configs[queue_id].capacity
        status = self._call(
            "schedule a Work",
            self._s_schedule,
            keys=[
                k.sched(queue_id),
                k.queue(queue_id),
                k.run(queue_id),
                k.data(queue_id),
                k.count(queue_id),
                k.queues,
            ],
            args=[entry, data, scheduling.value, cap, int(cls.coalescing), int(cls.idempotent), queue_id],
        )
        status = status.decode() if isinstance(status, bytes) else str(status)
        if status == "full":
            raise WorkQueueFullError(
                f"work queue {queue_id!r} is full ({cap} Works waiting); Work {work.id} not scheduled"
            )
        return status in ("queued", "replaced")

    # --- workers -------------------------------------------------------------------------------

    def _start(self) -> None:
        self._call("ping", self._r.ping)
        self._call("load scripts", self._r.script_load, redis_scripts.STARTED_HEAD)
        # Claims left under this node id by a crashed earlier process (a fixed node.id) would
        # never expire, since this process keeps the id alive: put them back first.
        self._call("release old claims", self._recover, True, True)
        self._call("register the queues", self._r.sadd, self.keys.queues, *self._configs)
        self._heartbeat_once()
        self._hb_thread = threading.Thread(
            target=self._heartbeat_loop, name=f"conveyor-work-heartbeat-{self.node_id}", daemon=True
        )
        self._hb_thread.start()
        for qid, q in self._queues.items():
            for n in range(q.config.max_threads):
                t = threading.Thread(
                    target=self._worker,
                    args=(qid, n),
                    name=f"conveyor-work-{self.node_id}-{qid}-{n}",
                    daemon=True,
                )
                q.threads.append(t)
                t.start()

    def _wait_processing(self, q: _RQueue) -> bool:
        """Block while the queue is disabled on this node; False when the queue stops."""
        with self._cond:
            while not q.stopping and not self._processing[q.config.id]:
                self._cond.wait(1.0)
            return not q.stopping

    def _worker(self, qid: str, thread: int) -> None:
        q = self._queues[qid]
        # One connection per worker thread: no pool round trip per command, and a blocking
        # BLMOVE never holds a connection another thread needs.
        conn = redis.Redis(connection_pool=self._r.connection_pool, single_connection_client=True)
        try:
            while True:
                try:
                    self._work_loop(q, conn, self._qkeys(qid, thread))
                    return
                except Exception as exc:  # not expected: the thread is started again (counted)
                    if q.stopping:
                        logger.debug("work queue %s on %s: error on stop: %s", qid, self.node_id, exc)
                        return
                    self._worker_died(qid, exc)
                    time.sleep(1.0)
        finally:
            conn.close()

    def _work_loop(self, q: _RQueue, conn: redis.Redis, keys: list[str]) -> None:
        qid = q.config.id
        k = self.keys
        sched, run, data, claims, queue, recovered = keys
        self._call("register a claims list", self._r.hset, k.claim_lists(self.node_id), claims, qid)
        taken: list[Any] | None = None
        queue_empty = False
        while True:
            try:
                if taken is None:
                    if not self._wait_processing(q):
                        return
                    taken = self._take(keys, conn, queue_empty)
                    queue_empty = False
                    if taken is None:
                        continue
                status = taken[0].decode() if isinstance(taken[0], bytes) else str(taken[0])
                if status != "ok":
                    if status == "busy":
                        time.sleep(0.05)
                    taken = None
                    continue
                entry = taken[1].decode() if isinstance(taken[1], bytes) else str(taken[1])
                recoveries = int(taken[3] or 0) if len(taken) > 3 else 0
                counter: str | None
                if self._killed_too_often(qid, recoveries):
                    counter, letter = "completed", self._poison(qid, entry, taken[2], recoveries)
                else:
                    counter, letter = self._run(qid, q, entry, taken[2], conn, keys)
                if counter is None:  # suspended: already put back
                    taken = None
                    continue
                more = self._processing[qid] and not q.stopping
                res = self._s_complete(
                    keys=[sched, run, data, claims, queue, k.count(qid), k.cancel(qid), k.dlq, recovered],
                    args=[entry, self.node_id, counter, letter, "1" if more else "0"],
                    client=conn,
                )
                if res[0] == b"stale":
                    logger.warning(
                        "Work entry %s finished on %s after its claim was recovered by another node",
                        entry,
                        self.node_id,
                    )
                taken = None
                if more and len(res) > 1:
                    if res[1] == b"empty":
                        queue_empty = True
                    else:
                        taken = list(res[1:])
            except redis.RedisError as exc:
                taken = None
                if q.stopping:  # connections closed under a thread that outlived its shutdown
                    logger.debug("work queue %s on %s: Redis error on stop: %s", qid, self.node_id, exc)
                    return
                logger.error("work queue %s on %s: Redis error, retrying in 1s: %s", qid, self.node_id, exc)
                time.sleep(1.0)
                self._release_own(keys, conn)
            except Exception as exc:  # not expected (a bug, a hostile payload): the thread goes on
                self._worker_died(qid, exc)
                failed, taken = taken, None
                self._bury_taken(qid, conn, keys, failed, exc)

    def _bury_taken(
        self, qid: str, conn: redis.Redis, keys: list[str], taken: list[Any] | None, exc: Exception
    ) -> None:
        """Dead-letter the entry this thread had taken when ``exc`` was raised (it would fail the
        same way again); put it back in its queue when even that fails."""
        if taken is None or len(taken) < 3 or taken[0] not in (b"ok", "ok"):
            return
        entry = taken[1].decode() if isinstance(taken[1], bytes) else str(taken[1])
        payload = taken[2] if isinstance(taken[2], bytes) else str(taken[2]).encode()
        k = self.keys
        sched, run, data, claims, queue, recovered = keys
        try:
            type_name, _ = self.codec.peek(payload)
            letter = self._letter(self._dead_letter(qid, _entry_id(entry), type_name, payload, exc))
            self._s_complete(
                keys=[sched, run, data, claims, queue, k.count(qid), k.cancel(qid), k.dlq, recovered],
                args=[entry, self.node_id, "completed", letter, "0"],
                client=conn,
            )
        except Exception:
            logger.exception("work queue %s: cannot dead-letter entry %s, put back in its queue", qid, entry)
            time.sleep(1.0)
            self._release_own(keys, conn)

    def _release_own(self, keys: list[str], conn: redis.Redis) -> None:
        """Put back what this thread's claims list holds (nothing runs in the thread now)."""
        try:
            n = self._s_release(keys=[keys[0], keys[1], keys[3], keys[4]], args=[self.node_id], client=conn)
        except redis.RedisError as exc:
            logger.error("cannot release the claims of %s yet: %s", keys[3], exc)
            return
        if n:
            logger.warning("re-queued %d Work(s) left in %s by a Redis error", n, keys[3])

    def _take(self, keys: list[str], conn: redis.Redis, queue_empty: bool) -> list[Any] | None:
        if not queue_empty:
            res = self._s_claim(keys=keys, args=[self.node_id], client=conn)
            if res[0] != b"empty":
                return list(res)
        # Nothing waiting: block until something is pushed (the entry moves to this thread's
        # claims list atomically, so a crash right after loses nothing), and mark it running in
        # the same round trip (pipelined script that starts the head of the claims list).
        pipe = conn.pipeline(transaction=False)
        pipe.execute_command(  # type: ignore[no-untyped-call]
            "BLMOVE", keys[4], keys[3], "RIGHT", "LEFT", self.block_timeout
        )
        pipe.execute_command(  # type: ignore[no-untyped-call]
            "EVALSHA", self._s_started_head.sha, len(keys), *keys, self.node_id
        )
        _, started = pipe.execute(raise_on_error=False)
        if isinstance(started, redis.exceptions.NoScriptError):  # scripts flushed from Redis
            started = self._s_started_head(keys=keys, args=[self.node_id], client=conn)
        elif isinstance(started, Exception):
            raise started
        if started[0] == b"empty":
            return None
        return list(started)

    def _run(
        self, qid: str, q: _RQueue, entry: str, payload: bytes, conn: redis.Redis, keys: list[str]
    ) -> tuple[str | None, bytes]:
        """Run one taken entry; returns (counters, dead letter) or (None, "") when suspended."""
        try:
            work = self.codec.decode(payload)
        except Exception as exc:  # garbage, unknown type, bad fields, too deep or too big
            type_name, _ = self.codec.peek(payload)
            letter = self._dead_letter(qid, _entry_id(entry), type_name, payload, exc)
            return "completed", self._letter(letter)
        rt = _Runtime()
        work.__dict__["_rt"] = rt
        with self._cond:
            q.running[entry] = rt
            if q.stopping:
                rt.suspending.set()
        try:
            result = self._execute(qid, work)
        finally:
            with self._cond:
                q.running.pop(entry, None)
        self._outcome_log(qid, work, result)
        if result.outcome is Outcome.SUSPENDED:
            self._s_suspend(
                keys=[*keys[:5], self.keys.cancel(qid)],
                args=[entry, self.node_id, self._encode_or(work, payload)],
                client=conn,
            )
            self._notify()
            return None, b""
        if result.outcome is Outcome.CANCELED:
            return "canceled", b""
        if result.outcome is Outcome.FAILED:
            assert result.error is not None
            letter = self._dead_letter(
                qid,
                work.id,
                type(work).type_name,
                self._encode_or(work, payload),
                result.error,
                work.get_category(),
                failed=True,
            )
            return "completed,failed", self._letter(letter)
        return "completed", b""

    def _poison(self, qid: str, entry: str, payload: bytes, recoveries: int) -> bytes:
        type_name, _ = self.codec.peek(payload)
        error = self._crash_error(qid, recoveries)
        return self._letter(self._dead_letter(qid, _entry_id(entry), type_name, payload, error))

    def _letter(self, letter: DeadLetter) -> bytes:
        return self.codec.encode_dead_letter(letter)

    # --- heartbeat and recovery ----------------------------------------------------------------

    def _heartbeat_once(self) -> None:
        self._s_heartbeat(keys=[self.keys.nodes], args=[self.node_id, int(self.heartbeat_timeout * 1000)])

    def _recover(self, release_self: bool = False, count_self: bool = False) -> int:
        k = self.keys
        n: int = self._s_recover(
            keys=[k.nodes],
            args=[
                k.prefix,
                redis_keys.CLAIM_LISTS_PART,
                redis_keys.RUN_PART,
                redis_keys.SCHED_PART,
                redis_keys.QUEUE_PART,
                self.node_id if release_self else "",
                redis_keys.RECOVERED_PART,
                "1" if count_self else "0",
            ],
        )
        if n:
            logger.warning(
                "re-queued %d Work(s) held by %s", n, "this node" if release_self else "dead nodes"
            )
            self._notify()
        return n

    def _check_cancels(self) -> None:
        for qid, q in self._queues.items():
            with self._cond:
                entries = list(q.running)
            if not entries:
                continue
            flags = self._r.smismember(self.keys.cancel(qid), entries)
            for entry, flag in zip(entries, flags, strict=True):
                if flag:
                    with self._cond:
                        rt = q.running.get(entry)
                    if rt is not None:
                        rt.cancel = True
                        rt.suspending.set()

    def _heartbeat_loop(self) -> None:
        while not self._stop_hb.wait(self.heartbeat_interval):
            try:
                self._heartbeat_once()
                self._recover()
                self._check_cancels()
            except redis.RedisError as exc:
                logger.error("work heartbeat of %s failed: %s", self.node_id, exc)

    # --- dead letters --------------------------------------------------------------------------

    def dead_letters(self) -> list[DeadLetter]:
        """Every dead letter, oldest first; an entry that cannot be decoded is a ``DamagedDeadLetter``."""
        raw = self._call("read the dead letters", self._r.lrange, self.keys.dlq, 0, -1)
        return [decode_letter(self.codec, x, f"{self.keys.dlq}[{i}]") for i, x in enumerate(raw)]

    def rerun_failed(self, category: str | None = None, *, ids: Collection[str] | None = None) -> int:
        """Schedule the dead letters again (of ``category`` only, if given; with these Work ``ids``
        only, if given) and remove them; one whose Work cannot be scheduled is kept, logged."""
        raw = self._call("read the dead letters", self._r.lrange, self.keys.dlq, 0, -1)
        count = 0
        for index, item in enumerate(raw):
            letter = decode_letter(self.codec, item, f"{self.keys.dlq}[{index}]")
            if isinstance(letter, DamagedDeadLetter):  # skipped, left in the list as it is
                continue
            if category is not None and letter.category != category:
                continue
            if ids is not None and letter.id not in ids:
                continue
            work = self._letter_work(letter)
            if work is not None and self._r.lrem(self.keys.dlq, 1, item):
                try:
                    self.schedule(work, after_commit=False)
                except Exception as exc:  # a full queue, Redis down...: the letter stays, the rest go on
                    logger.error(
                        "dead letter %s (%s) could not be scheduled again, kept: %s: %s",
                        letter.id,
                        letter.type,
                        type(exc).__name__,
                        exc,
                    )
                    try:
                        self._r.rpush(self.keys.dlq, item)
                    except Exception:
                        logger.exception("dead letter %s could not be put back: lost", letter.id)
                    continue
                count += 1
        return count

    # --- observing -----------------------------------------------------------------------------

    def metrics(self, queue_id: str) -> WorkQueueMetrics:
        """Cluster-wide counts of ``queue_id``: waiting, running, completed, canceled."""
        self.queue_config(queue_id)
        k = self.keys
        pipe = self._r.pipeline(transaction=False)
        pipe.scard(k.sched(queue_id))
        pipe.hlen(k.run(queue_id))
        pipe.hmget(k.count(queue_id), "completed", "canceled", "failed", "dead_lettered")
        sched, running, (done, canceled, failed, lettered) = self._call("read metrics", pipe.execute)
        return WorkQueueMetrics(
            int(sched),
            int(running),
            int(done or 0),
            int(canceled or 0),
            queue_id,
            worker_restarts=self._restarts(queue_id),
            failed=int(failed or 0),
            dead_lettered=int(lettered or 0),
        )

    def get_work_state(self, work_id: str) -> WorkState:
        """SCHEDULED, RUNNING or UNKNOWN, from Redis (any node)."""
        for qid in self._configs:
            if self._call("read state", self._r.hexists, self.keys.run(qid), work_id):
                return WorkState.RUNNING
            if self._call("read state", self._r.sismember, self.keys.sched(qid), work_id):
                return WorkState.SCHEDULED
        return WorkState.UNKNOWN

    def find(self, work_id: str) -> Work | None:
        """The waiting or running (idempotent) Work with this id, rebuilt from Redis."""
        for qid in self._configs:
            data = self._call("read a Work", self._r.hget, self.keys.data(qid), work_id)
            if data is not None:
                return self.codec.decode(data)
        return None

    def _poll_interval(self) -> float:
        return 0.05

    # --- lifecycle -----------------------------------------------------------------------------

    def _processing_changed(self, queue_id: str, enabled: bool) -> None:
        with self._cond:
            self._cond.notify_all()

    def _suspend_queue(self, q: _RQueue) -> None:
        with self._cond:
            q.stopping = True
            for rt in q.running.values():
                rt.suspending.set()
            self._cond.notify_all()

    def _stop_queue(self, queue_id: str, timeout: float) -> bool:
        q = self._queues[queue_id]
        self._suspend_queue(q)
        deadline = time.monotonic() + timeout
        for t in q.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in q.threads)

    def _stop(self, timeout: float) -> bool:
        for q in self._queues.values():
            self._suspend_queue(q)
        deadline = time.monotonic() + timeout
        ok = True
        for q in self._queues.values():
            for t in q.threads:
                t.join(max(0.0, deadline - time.monotonic()))
                ok &= not t.is_alive()
        self._stop_hb.set()
        if self._hb_thread is not None:
            self._hb_thread.join(5)
        if self._started:
            try:
                # Works that did not stop in time go back to their queues now (they may run twice).
                self._recover(release_self=True)
            except redis.RedisError as exc:
                logger.error("cannot release the Works of %s: %s", self.node_id, exc)
        self._r.close()
        return ok

    def purge(self) -> int:
        """Delete every key under this manager's prefix (tests, tools); returns how many."""
        n = 0
        for pattern in self.keys.all_patterns():
            batch = list(self._r.scan_iter(match=pattern, count=500))
            if batch:
                n += int(self._r.delete(*batch))
        return n
