"""``ComputationRunner``: one thread running one computation instance over its partitions.

The loop, as Nuxeo's ComputationRunner: fire due timers, take the next record, mark the low
watermark, process it (retrying by the policy), check its flags (POISON_PILL: checkpoint and stop;
COMMIT: checkpoint), then checkpoint if asked. A checkpoint is, in this order: append the buffered
records, commit the input offsets, advance the low watermark. A crash anywhere before the commit
re-delivers the input: at-least-once, never a loss.

Records are read from the log in batches of up to ``READ_BATCH`` and processed one by one with
the loop above; a checkpoint commits, for each partition, the position right after the last
record processed (not the tailer's read position, which may be further on), all partitions in
one request. What was read and not processed when the thread stops is read again by the next
owner of its partitions.

Records are decoded here, one by one, not by the tailer: a record that cannot be decoded (a
``CodecError``, or any other error of the codec) is one failed record, retried and then
dead-lettered (its bytes kept) or stopping the computation as its policy says, like a record
whose processing raises; it never stops the reading of the records around it.

A retriable error of the layers below (``StorageError`` of a full or failing disk, a log server
that is down, a rebalance during a commit) raised while joining the group, reading, appending the
outputs or committing does not end the thread: it lets its partitions go, forgets what it read
and did not commit (the computation is created again), waits (exponential back-off, capped at
``OUTAGE_MAX_DELAY_S``, interrupted by a stop), opens its tailer again and goes on from the
last committed positions, as after a rebalance. So does a ``StorageError`` raised by the
computation itself once its policy's retries are exhausted: a full disk is not the record's fault.
Any other error ends the computation as before (``LogCorruptedError`` included: the operator
repairs the log, see docs/local-log.md).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

from conveyor.codec import BytesCodec, Codec, get_codec
from conveyor.errors import BackendUnavailableError, CodecError, RebalanceError, StorageError
from conveyor.log.api import LogAppender, LogTailer
from conveyor.log.names import Name
from conveyor.log.types import LogOffset, LogPartition, LogRecord
from conveyor.logcontext import current_log_context, log_context
from conveyor.record import Flag, Record, Watermark
from conveyor.stream.computation import Computation
from conveyor.stream.context import ComputationContext
from conveyor.stream.deadletter import DeadLetter
from conveyor.stream.watermark import WatermarkMonotonicInterval

if TYPE_CHECKING:
    from conveyor.stream.pool import ComputationPool

__all__ = ["ComputationRunner"]

logger = logging.getLogger("conveyor.stream")

CHECKPOINT_MAX_RETRY = 3
CHECKPOINT_PAUSE_S = 0.2
OUTAGE_FIRST_DELAY_S = 0.1
OUTAGE_MAX_DELAY_S = 5.0
"""Longest wait between two attempts to resume after a retriable error of the log (a full disk)."""
OUTAGE_REPORT_S = 60.0
"""While an outage lasts, its ERROR line is repeated at most this often."""
READ_BATCH = 100
"""Records taken from the log per read."""

# Plain ints: ``int & IntFlag`` goes through the enum's Python-level operator on every record.
_COMMIT = int(Flag.COMMIT)
_POISON_PILL = int(Flag.POISON_PILL)


class _Stop(Exception):
    """Internal: leave the loop now, without checkpoint."""


def _retriable(error: BaseException) -> bool:
    """True for an error the thread waits out (see module doc) rather than dying of it."""
    return not isinstance(error, _Stop) and (
        isinstance(error, BackendUnavailableError) or bool(getattr(error, "retriable", False))
    )


class ComputationRunner:
    """Runs one instance of a computation in its own thread (see module doc)."""

    def __init__(self, pool: ComputationPool, index: int, partitions: list[LogPartition] | None) -> None:
        self.pool = pool
        self.index = index
        self.subscribe = partitions is None
        self.partitions: list[LogPartition] = list(partitions or [])
        self.watermark = WatermarkMonotonicInterval()
        self.assigned = threading.Event()
        self._computation: Computation | None = None
        self._context: ComputationContext | None = None
        self._tailer: LogTailer[Any] | None = None
        self._codec: Codec[Any] = BytesCodec()  # of the inputs (set with the tailer)
        self._uncommitted = 0
        # Read ahead, not yet processed: self._batch[self._batch_index:].
        self._batch: list[LogRecord[Any]] = []
        self._batch_index = 0
        # Position to commit (next offset) by partition read since the last commit; the partition
        # of the last record is kept apart (``_partition``, ``_position``) so that a run of records
        # of one partition costs an identity check each, not a hash.
        self._dirty: dict[LogPartition, int] = {}
        self._partition: LogPartition | None = None
        self._position = 0
        self._local = ""
        self._appenders: dict[Name, LogAppender[Any]] = {}
        self._last_read = time.monotonic()
        self.holds_partitions = False
        """Whether this subscribed thread held partitions when it last looked (its own thread
        sets it; the pool's no-assignment watch reads it)."""
        self._log_fields: dict[str, Any] = {}
        # The outage being waited out (retriable errors of the log): since when, attempts, and
        # when it was last reported; None while all is well.
        self._outage_since: float | None = None
        self._outage_last = 0.0
        self._outage_attempts = 0
        self._outage_reported = 0.0
        self._thread = threading.Thread(target=self._run, name=f"{pool.name}-{index:02d}", daemon=True)

    # --- control (from other threads) ---------------------------------------------------------

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def join(self, timeout: float) -> None:
        """Wait for the thread to end."""
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """True while the thread runs."""
        return self._thread.is_alive()

    def signal_stop(self) -> None:
        """Tell the computation that a stop is coming (its ``signal_stop``)."""
        computation = self._computation
        if computation is not None:
            try:
                computation.signal_stop()
            except Exception:
                logger.exception("computation %s: signal_stop failed", self.pool.name)

    # --- the loop -----------------------------------------------------------------------------

    @property
    def _spare(self) -> bool:
        return bool(self.pool.spec.inputs) and not self.subscribe and not self.partitions

    def _run(self) -> None:
        with log_context(computation=self.pool.name, thread=self.index):
            # This thread's own context: the key of the record being processed is stored in it
            # (one dict store per record, not a new context per record on the hot path).
            self._log_fields = current_log_context()
            self._run_loop()

    def _run_loop(self) -> None:
        pool = self.pool
        try:
            try:
                self._setup()
            except Exception as exc:
                if not _retriable(exc):
                    raise
                self._recover(exc)
            while not pool.stop_event.is_set():
                try:
                    self._fire_timers()
                    if self._context is not None and self._context._termination_requested:
                        break
                    if pool.stop_event.is_set():
                        break
                    if self._tailer is None:
                        if pool.drain_event.is_set() and self._drained():
                            break
                        pool.stop_event.wait(self._idle_wait())
                        continue
                    if not self._read_and_process():
                        break
                except Exception as exc:
                    if not _retriable(exc):
                        raise
                    self._recover(exc)
        except _Stop:
            pass
        except Exception as exc:
            logger.exception(
                "computation %s: thread %d failed", pool.name, self.index, extra={"computation": pool.name}
            )
            pool.metrics.failed(exc)
            pool.fail(exc)
        finally:
            self._teardown()

    def _setup(self) -> None:
        pool = self.pool
        inputs = list(pool.spec.inputs.values())
        if inputs:
            # The tailer hands bytes: each record is decoded in _read_and_process, where a
            # failure is that record's failure, not the batch's.
            spec = pool.input_codec
            self._codec = (
                pool.log_manager.default_codec
                if spec is None
                else get_codec(spec)
                if isinstance(spec, str)
                else spec
            )
            raw = BytesCodec()
            if self.subscribe:
                self._tailer = pool.log_manager.subscribe(pool.group, inputs, codec=raw)
            elif self.partitions:
                self._tailer = pool.log_manager.create_tailer(pool.group, self.partitions, raw)
        self._new_context()
        self._check_joined()

    def holding(self) -> tuple[list[LogPartition], bool]:
        """The partitions this thread reads now, and whether the group gave it more that another
        reader still holds (asked from other threads)."""
        tailer = self._tailer
        if tailer is None:
            return [], False
        return tailer.assignments(), tailer.assignment_pending

    def _check_joined(self) -> None:
        """Set ``assigned`` once the tailer holds its partitions."""
        tailer = self._tailer
        # A Kafka subscriber joins its group inside a later read (``joined`` says when); memory
        # and local subscribers, and fixed tailers, hold their partitions from the start.
        if tailer is not None and self.subscribe:
            if not getattr(tailer, "joined", True):
                return
            self.partitions = tailer.assignments()
        self.assigned.set()

    def _new_context(self) -> None:
        pool = self.pool
        self._computation = pool.spec.factory()
        self._context = ComputationContext(pool.name, pool.spec.outputs, pool.policy, spare=self._spare)
        self._uncommitted = 0
        self._computation.init(self._context)

    def _teardown(self) -> None:
        if self._computation is not None:
            try:
                self._computation.destroy()
            except Exception:
                logger.exception("computation %s: destroy failed", self.pool.name)
        if self._tailer is not None:
            self._tailer.close()
        self.assigned.set()

    # --- outages: retriable errors of the log -------------------------------------------------

    def _recover(self, error: Exception) -> None:
        """Wait out a retriable error (see module doc) until the thread can go on; raises
        ``_Stop`` when stopped meanwhile, or a non-retriable error met on the way."""
        pool = self.pool
        while True:
            self._report_outage(error)
            if pool.spec.inputs:
                self._let_go()
            delay = min(OUTAGE_FIRST_DELAY_S * 2 ** min(self._outage_attempts - 1, 16), OUTAGE_MAX_DELAY_S)
            if pool.stop_event.wait(delay):
                raise _Stop() from error
            try:
                if pool.spec.inputs or self._context is None:
                    self._setup()
                else:  # a source: its buffered records are still there, send them again
                    self._checkpoint()
                return
            except Exception as exc:
                if not _retriable(exc):
                    raise
                error = exc

    def _report_outage(self, error: Exception) -> None:
        pool = self.pool
        clock = time.monotonic()
        self._outage_attempts += 1
        self._outage_last = clock
        if self._outage_since is None:
            self._outage_since = clock
        elif clock - self._outage_reported < OUTAGE_REPORT_S:
            logger.debug("computation %s: thread %d still waits: %s", pool.name, self.index, error)
            return
        self._outage_reported = clock
        pool.metrics.note_error(error)
        if self._outage_attempts == 1:
            what = "cannot go on"
        else:
            lasted = clock - self._outage_since
            what = f"still cannot go on after {self._outage_attempts} attempts over {lasted:.0f} s"
        logger.error(
            "computation %s: thread %d (consumer group %s, streams %s) %s: %s: %s; it waits for it to work "
            "again and resumes from the last committed position",
            pool.name,
            self.index,
            pool.group.urn,
            _streams(pool) or "none",
            what,
            type(error).__name__,
            error,
            extra={"computation": pool.name},
        )

    def _healthy(self) -> None:
        """The thread works again: end the outage, saying so if one was reported."""
        if self._outage_since is None:
            return
        pool = self.pool
        logger.info(
            "computation %s: thread %d of consumer group %s resumed after %d attempt(s) over %.1f s",
            pool.name,
            self.index,
            pool.group.urn,
            self._outage_attempts,
            time.monotonic() - self._outage_since,
            extra={"computation": pool.name},
        )
        self._outage_since, self._outage_attempts = None, 0

    def _let_go(self) -> None:
        """Close the tailer (its partitions go to the other members meanwhile) and forget what
        was read and not committed, and the computation with it: it is all read again."""
        tailer, self._tailer = self._tailer, None
        if tailer is not None:
            try:
                tailer.close()
            except Exception as exc:  # the tailer is dropped anyway
                logger.warning("computation %s: closing a tailer failed: %s", self.pool.name, exc)
        if self.subscribe:
            self.partitions = []
            self.holds_partitions = False
            self.assigned.clear()  # set again once the new tailer holds its partitions
        self._forget_reads()
        self._uncommitted = 0
        self.watermark = WatermarkMonotonicInterval()
        computation, self._computation, self._context = self._computation, None, None
        if computation is not None:
            try:
                computation.destroy()
            except Exception:
                logger.exception("computation %s: destroy failed", self.pool.name)

    def _idle_wait(self) -> float:
        wait = self.pool.read_timeout_s * 4
        if self._context is not None and not self._spare:
            timers = self._context.timers()
            if timers:
                wait = min(wait, max(0.0, (min(timers.values()) - _now_ms()) / 1000))
        return wait

    def _drained(self) -> bool:
        context = self._context
        return self._uncommitted == 0 and (context is None or context._buffer_size() == 0)

    def _caught_up(self) -> bool:
        """True when the group has committed every record of the partitions this thread reads."""
        # A read that found nothing is no proof: a Kafka fetch may answer before records
        # appended a moment ago show up, so ask the log where each partition ends.
        assert self._tailer is not None
        if not self.assigned.is_set():
            return False  # not in the group yet: its partitions are unknown
        pool = self.pool
        by_stream: dict[Name, list[int]] = {}
        for partition in self._tailer.assignments():
            by_stream.setdefault(partition.name, []).append(partition.partition)
        for stream, indexes in by_stream.items():
            lags = pool.log_manager.lag_per_partition(stream, pool.group)
            if any(lags[index].lag for index in indexes):
                return False
        return True

    def _read_and_process(self) -> bool:
        """Take the next record (reading a batch when none is left), process it; False to leave the loop."""
        pool = self.pool
        batch = self._batch
        index = self._batch_index
        if index >= len(batch):
            read = self._read_batch()
            if read is None:
                return True  # rebalanced
            if not read:
                return self._idle()
            batch, index = read, 0
        self._batch_index = index + 1
        item = batch[index]
        try:
            record = self._codec.decode(item.message)
        except Exception as exc:  # CodecError, RecursionError...: this record fails, not the thread
            return self._undecodable(item, exc)
        if not isinstance(record, Record):
            raise TypeError(
                f"computation {pool.name!r} read a {type(record).__name__} at {item.offset}, not a Record: "
                "the stream's codec must be a Record codec"
            )
        offset = item.offset
        if offset.partition is not self._partition:
            self._switch_partition(offset.partition)
        self._position = offset.offset + 1
        self._uncommitted += 1
        self.watermark.mark(record.watermark)
        assert self._context is not None
        self._context._last_offset = offset
        fields = self._log_fields
        fields["record_key"] = record.key
        try:
            return self._process(self._local, record, offset)
        finally:
            del fields["record_key"]

    def _undecodable(self, item: LogRecord[Any], error: Exception) -> bool:
        """A record read that its codec cannot decode: decoded again as the policy retries, then
        handled as a failed record (dead letter with its bytes, skip or stop); False to leave."""
        pool = self.pool
        offset = item.offset
        if offset.partition is not self._partition:
            self._switch_partition(offset.partition)
        self._position = offset.offset + 1
        self._uncommitted += 1
        assert self._context is not None
        self._context._last_offset = offset
        data = bytes(item.message)
        attempt = 1
        while pool.policy.should_retry(error, attempt) and not pool.stop_event.is_set():
            pool.metrics.add("retries")
            if pool.stop_event.wait(pool.policy.retry_delay(attempt)):
                raise _Stop() from error
            attempt += 1
            try:
                record = self._codec.decode(data)
            except Exception as exc:
                error = exc
                continue
            if isinstance(record, Record):  # decoded after all (the codec's state changed)
                self.watermark.mark(record.watermark)
                return self._process(self._local, record, offset)
            break
        bad = Record(f"undecodable@{offset}", data, 0)
        error = CodecError(
            f"computation {pool.name!r}: record at {offset} cannot be decoded with codec "
            f"{getattr(self._codec, 'name', type(self._codec).__name__)!r}: {type(error).__name__}: {error}"
        )
        return self._failed(self._local, bad, offset, error, attempt, skip=pool.policy.skip_undecodable)

    def _read_batch(self) -> list[LogRecord[Any]] | None:
        """Read the next records into the batch (empty when none came); None after a rebalance."""
        assert self._tailer is not None
        try:
            batch = self._tailer.read_batch(READ_BATCH, self.pool.read_timeout_s)
        except RebalanceError:
            # Partitions moved: what was read and not committed is read again by its new owner.
            self.partitions = self._tailer.assignments()
            self.holds_partitions = bool(self.partitions)
            self._forget_reads()
            self.watermark = WatermarkMonotonicInterval()
            if self._computation is not None:
                self._computation.destroy()
            self._new_context()
            return None
        if not self.assigned.is_set():
            self._check_joined()
        self._batch, self._batch_index = batch, 0
        if batch:
            self._last_read = time.monotonic()
            if self.subscribe and (not self.holds_partitions or self.pool._unassigned_warned):
                self.holds_partitions = True
                self.pool.watch_assignment()
        return batch

    def _idle(self) -> bool:
        """Nothing was read: False when draining and every input is processed and committed."""
        pool = self.pool
        if self.subscribe:
            self._watch_assignment()
        if (
            self._outage_since is not None
            and self._drained()
            and time.monotonic() - self._outage_last >= OUTAGE_REPORT_S
        ):
            self._healthy()  # nothing to write for a long time: over as far as this thread knows
        if not pool.drain_event.is_set() or not self._drained():
            return True
        if time.monotonic() - self._last_read < pool.starving_timeout_s:
            return True
        if self._caught_up():
            return False
        self._last_read = time.monotonic()  # not yet: look again after another starving timeout
        return True

    @property
    def in_outage(self) -> bool:
        """True while this thread waits out a retriable error of the log (see module doc)."""
        return self._outage_since is not None

    def _watch_assignment(self) -> None:
        """Note whether this thread holds partitions, for the pool's watch (see
        ``ComputationPool.watch_assignment``)."""
        if self._tailer is not None:
            self.holds_partitions = bool(self._tailer.assignments())
        self.pool.watch_assignment()

    def _switch_partition(self, partition: LogPartition) -> None:
        if self._partition is not None:
            self._dirty[self._partition] = self._position
        self._partition = partition
        self._local = self.pool.input_local[partition.name]

    def _forget_reads(self) -> None:
        """Drop what was read and not committed (it is read again from the committed offsets)."""
        self._batch, self._batch_index = [], 0
        self._dirty.clear()
        self._partition = None

    def _process(self, local: str, record: Record, offset: LogOffset) -> bool:
        """Process a record read, then checkpoint if its flags or the computation ask."""
        pool = self.pool
        assert self._context is not None
        if not self._process_with_retry(local, record, offset):
            return False
        flags = record.flags
        if flags & _POISON_PILL:
            logger.warning(
                "computation %s: poison pill on %s, stopping thread %d",
                pool.name,
                offset,
                self.index,
                extra={"computation": pool.name, "record_key": record.key},
            )
            self._checkpoint()
            return False
        context = self._context
        if context._checkpoint or flags & _COMMIT:
            context._checkpoint = False
            self._checkpoint()
        return not context._terminate

    # --- processing and failures --------------------------------------------------------------

    def _process_with_retry(self, local: str, record: Record, offset: LogOffset) -> bool:
        """Process ``record``; True to go on (processed or skipped), False when the computation stops."""
        pool = self.pool
        context = self._context
        computation = self._computation
        assert context is not None and computation is not None
        attempt = 0
        while True:
            attempt += 1
            snapshot = context._snapshot()
            started = time.perf_counter()
            try:
                computation.process_record(context, local, record)
            except Exception as exc:
                context._rollback(snapshot)
                context.cancel_ask_for_checkpoint()
                if pool.policy.should_retry(exc, attempt) and not pool.stop_event.is_set():
                    pool.metrics.add("retries")
                    computation.process_retry(context, exc)
                    if pool.stop_event.wait(pool.policy.retry_delay(attempt)):
                        raise _Stop() from exc
                    continue
                if isinstance(exc, StorageError):
                    raise  # a full or failing disk is not the record's fault: wait it out
                undecodable = pool.policy.skip_undecodable and isinstance(exc, CodecError)
                return self._failed(local, record, offset, exc, attempt, skip=undecodable)
            pool.metrics.processed(time.perf_counter() - started)
            return True

    def _failed(
        self,
        local: str,
        record: Record,
        offset: LogOffset,
        error: Exception,
        attempts: int,
        skip: bool = False,
    ) -> bool:
        pool = self.pool
        assert self._context is not None and self._computation is not None
        pool.metrics.failed(error)
        logger.error(
            "computation %s: record %r at %s failed after %d attempt(s): %s: %s",
            pool.name,
            record.key,
            offset,
            attempts,
            type(error).__name__,
            error,
            extra={"computation": pool.name, "record_key": record.key},
        )
        self._computation.process_failure(self._context, error)
        dlq = pool.dlq_appender()
        if dlq is not None:
            letter = DeadLetter(
                computation=pool.name,
                input_stream=offset.partition.name.urn,
                offset=str(offset),
                error_type=type(error).__name__,
                error=str(error),
                traceback="".join(traceback.format_exception(error)),
                attempts=attempts,
                record=record,
            )
            dlq.append(record.key, letter.to_record())
            pool.metrics.add("dead_letters")
        if skip or pool.policy.continue_on_failure or pool.take_skip_budget():
            pool.metrics.add("skipped")
            self._context.ask_for_checkpoint()
            return True
        pool.fail(error)
        return False

    # --- timers and checkpoints ---------------------------------------------------------------

    def _fire_timers(self) -> None:
        context = self._context
        computation = self._computation
        if context is None or computation is None or self._spare or context._next_timer > _now_ms():
            return
        for key, timestamp in context._due_timers(_now_ms()):
            try:
                computation.process_timer(context, key, timestamp)
            except Exception as exc:
                pool = self.pool
                pool.metrics.failed(exc)
                logger.exception(
                    "computation %s: timer %r failed", pool.name, key, extra={"computation": pool.name}
                )
                if not pool.policy.continue_on_failure:
                    pool.fail(exc)
                    raise _Stop() from exc
                continue
            self.pool.metrics.add("timers")
            if context._take_checkpoint_request():
                self._checkpoint()
            if context._termination_requested:
                return

    def _checkpoint(self) -> None:
        """Send buffered records, then commit offsets, then advance the low watermark."""
        context = self._context
        assert context is not None
        low = self.watermark.low.value or context._source_low_watermark
        # Only a checkpoint that writes something proves that an outage is over.
        writes = self._uncommitted > 0 or context._buffer_size() > 0
        last_error: Exception | None = None
        for attempt in range(CHECKPOINT_MAX_RETRY):
            try:
                self._send(context, low)
                if self._tailer is not None:
                    self._commit()
                break
            except Exception as exc:
                if self._outage_since is not None and _retriable(exc):
                    raise  # still the same outage: back off rather than retry here
                last_error = exc
                logger.warning(
                    "computation %s: checkpoint failed (attempt %d): %s",
                    self.pool.name,
                    attempt + 1,
                    exc,
                    extra={"computation": self.pool.name},
                )
                if self.pool.stop_event.wait(CHECKPOINT_PAUSE_S * (2**attempt)):
                    raise _Stop() from exc
        else:
            assert last_error is not None
            raise last_error
        self._uncommitted = 0
        self.watermark.checkpoint()
        self.pool.metrics.add("checkpoints")
        if self._outage_since is not None and writes:
            self._healthy()

    def _commit(self) -> None:
        """Commit, in one request, the position after the last record processed of each partition
        read since the last commit (the others did not move)."""
        assert self._tailer is not None
        dirty = self._dirty
        if self._partition is not None:
            dirty[self._partition] = self._position
            self._partition = None
        if dirty:
            self._tailer.commit_offsets([LogOffset(p, o) for p, o in dirty.items()])
            dirty.clear()

    def _send(self, context: ComputationContext, low: int) -> None:
        for stream, records in context._buffered().items():
            if not records:
                continue
            fill = low or Watermark.of_now().value
            batch = [(r.key, r if r.watermark else dataclasses.replace(r, watermark=fill)) for r in records]
            appender = self._appenders.get(stream)
            if appender is None:
                appender = self._appenders[stream] = self.pool.appender(stream)
            appender.append_many(batch)
            # Sent: a retry of the checkpoint must not send them twice.
            records.clear()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _streams(pool: ComputationPool) -> str:
    return ", ".join(sorted(stream.urn for stream in pool.spec.inputs.values()))
