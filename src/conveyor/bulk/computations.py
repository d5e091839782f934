"""The Bulk Service's computations and topology (Nuxeo's ``BulkServiceProcessor``).

::

    bulk/command -> [bulk/scroller] -> bulk/<action> (one stream per action) -> [bulk/<action>]
                         |                                                          |
                         +-------------------> bulk/status <-------------------------+
                                                   |
                                             [bulk/status] -> bulk/done

The scroller turns a command into buckets of ids and appends them (and its status deltas) at once,
so memory stays bounded however many ids a query selects; a crash re-scrolls the command, and the
buckets it sends again carry the same numbers. Action computations process a bucket in batches and
send one delta per bucket; the status computation merges the deltas into the ``bulk`` KV store,
counting each bucket once, and sends the full status to ``bulk/done`` when the command ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from conveyor.bulk.action import ActionContext, BulkAction
from conveyor.bulk.command import BulkCommand
from conveyor.bulk.scroller import ScrollContext, get_scroller, scroll_pages
from conveyor.bulk.status import BulkState, BulkStatus, StatusDelta, now
from conveyor.bulk.store import BulkStore, DamagedBulkStatus, StoredStatus
from conveyor.errors import BulkDecodeError, BulkError, ConveyorError
from conveyor.record import Record
from conveyor.stream import Computation, ComputationContext, Topology

if TYPE_CHECKING:
    from conveyor.log import LogManager
    from conveyor.log.api import LogAppender
    from conveyor.repository import Repository
    from conveyor.transient import TransientStore

__all__ = [
    "COMMAND_STREAM",
    "DONE_STREAM",
    "SCROLLER",
    "STATUS",
    "STATUS_STREAM",
    "ActionComputation",
    "ActionSpec",
    "BulkRuntime",
    "GroupCommit",
    "ScrollerComputation",
    "StatusComputation",
    "build_topology",
]

logger = logging.getLogger("conveyor.bulk")

COMMAND_STREAM = "bulk/command"
STATUS_STREAM = "bulk/status"
DONE_STREAM = "bulk/done"
SCROLLER = "bulk/scroller"
STATUS = "bulk/status"
MAX_SCROLL_SIZE = 4000
ABORT_CHECK_S = 0.2
CHECKPOINT_INTERVAL_MS = 100
_MESSAGE_MAX = 1000


@dataclass(frozen=True)
class ActionSpec:
    """A registered action with this service's settings applied."""

    cls: type[BulkAction]
    bucket_size: int
    batch_size: int
    concurrency: int
    partitions: int
    http_enabled: bool
    enabled: bool = True

    @property
    def name(self) -> str:
        """The action name."""
        return self.cls.name

    @property
    def stream(self) -> str:
        """The urn of its input stream."""
        return self.cls.input_stream()


@dataclass
class BulkRuntime:
    """What the computations share: stores, repository, logs, actions."""

    store: BulkStore
    log_manager: LogManager
    actions: Mapping[str, ActionSpec]
    repository: Repository | None = None
    transient_store: TransientStore | None = None
    codec: Any = None
    scroll_size: int = 1000
    _abort_cache: dict[str, tuple[float, bool]] = field(default_factory=dict)

    def is_ended(self, command_id: str, max_age_s: float = 0.0) -> bool:
        """True when the command is aborted, completed, unknown or its stored status is damaged
        (cached ``max_age_s`` seconds)."""
        cached = self._abort_cache.get(command_id)
        clock = time.monotonic()
        if cached is not None and clock - cached[0] < max_age_s:
            return cached[1]
        try:
            status = self.store.get_status(command_id)
        except BulkError:
            if not isinstance(self.store.listed_status(command_id), DamagedBulkStatus):
                raise
            # Its status cannot be read nor updated: nothing more is run for it until an abort
            # replaces the status (docs/operations.md, "A listing shows a damaged entry").
            ended = True
        else:
            ended = status.is_completed or status.state is BulkState.UNKNOWN
        if len(self._abort_cache) > 1000:
            self._abort_cache.clear()
        self._abort_cache[command_id] = (clock, ended)
        return ended


class GroupCommit:
    """Checkpoints at most every ``interval_ms``, the last one by a timer.

    A checkpoint commits offsets (an fsync on a local log) and sends the produced deltas: once
    per bucket it cost more than the bucket's SQL. Records read since the last checkpoint are read
    again after a crash or a rebalance, which the bulk pipeline allows (idempotent actions, each
    bucket counted once).
    """

    TIMER = "bulk-checkpoint"

    def __init__(self, interval_ms: int = CHECKPOINT_INTERVAL_MS) -> None:
        self.interval_ms = interval_ms
        self._last_ms = 0
        self._armed = False

    def request(self, context: ComputationContext) -> None:
        """Checkpoint after this record if the last one is old enough, else by the timer."""
        clock = _now_ms()
        if clock - self._last_ms >= self.interval_ms:
            self.checkpoint(context, clock)
        elif not self._armed:
            context.set_timer(self.TIMER, self._last_ms + self.interval_ms)
            self._armed = True

    def checkpoint(self, context: ComputationContext, clock: int | None = None) -> None:
        """Checkpoint after the current record or timer (the timer's ``process_timer`` calls this)."""
        context.ask_for_checkpoint()
        if self._armed:
            context.remove_timer(self.TIMER)
            self._armed = False
        self._last_ms = _now_ms() if clock is None else clock


def _now_ms() -> int:
    return int(time.time() * 1000)


def _message(exc: BaseException, item: str | None = None) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if item is not None:
        text = f"{item}: {text}"
    return text[:_MESSAGE_MAX]


def encode_bucket(command_id: str, bucket: int, ids: list[str], hints: list[Any] | None = None) -> bytes:
    """A bucket record's data (Nuxeo's ``BulkBucket`` plus its number, and the ids' storage
    hints from the scroller when it has them: readers that do not know them ignore them)."""
    data: dict[str, Any] = {"commandId": command_id, "bucket": bucket, "ids": ids}
    if hints is not None:
        data["hints"] = hints
    try:
        return msgspec.json.encode(data)  # compact JSON, as json.dumps made it, several times faster
    except (TypeError, msgspec.EncodeError) as exc:
        raise BulkError(f"invalid bulk bucket: {exc}") from exc


def decode_bucket_hints(data: bytes) -> tuple[str, int, list[str], dict[str, Any] | None]:
    """``(command_id, bucket number, ids, storage hints by id or None)`` of a bucket record."""
    try:
        loaded = msgspec.json.decode(data)
        ids = loaded["ids"]
        if not all(type(i) is str for i in ids):
            ids = [str(i) for i in ids]
        hints = loaded.get("hints")
        by_id = dict(zip(ids, hints, strict=True)) if isinstance(hints, list) else None
        return str(loaded["commandId"]), int(loaded["bucket"]), ids, by_id
    except (msgspec.DecodeError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise BulkDecodeError(f"invalid bulk bucket record: {exc}") from exc


class ScrollerComputation(Computation):
    """``bulk/command`` -> buckets on the action streams, deltas on ``bulk/status``."""

    def __init__(self, runtime: BulkRuntime, outputs: int) -> None:
        super().__init__(SCROLLER, inputs=1, outputs=outputs)
        self.runtime = runtime
        self._appenders: dict[str, LogAppender[Any]] = {}

    def _append(self, stream: str, items: list[tuple[str, Record]]) -> None:
        appender = self._appenders.get(stream)
        if appender is None:
            appender = self.runtime.log_manager.appender(stream, self.runtime.codec)
            self._appenders[stream] = appender
        appender.append_many([(key, record) for key, record in items])

    def _status(self, delta: BulkStatus, bucket_count: int | None = None) -> None:
        data = StatusDelta(delta, bucket_count=bucket_count).encode()
        self._append(STATUS_STREAM, [(delta.command_id, Record(delta.command_id, data))])

    def process_record(self, context: ComputationContext, input_stream: str, record: Record) -> None:
        context.ask_for_checkpoint()
        command = BulkCommand.decode(record.data)
        runtime = self.runtime
        if runtime.is_ended(command.id):
            logger.debug("bulk command %s ended or unknown: not scrolled", command.id)
            return
        spec = runtime.actions.get(command.action)
        if spec is None:
            self._status(
                BulkStatus.delta_of(
                    command.id,
                    state=BulkState.COMPLETED,
                    error_count=1,
                    completed_time=now(),
                    error_message=f"no bulk action {command.action!r} on this node",
                )
            )
            return
        self._status(
            BulkStatus.delta_of(command.id, state=BulkState.SCROLLING_RUNNING, scroll_start_time=now())
        )
        scroll_started = time.monotonic()
        logger.info("bulk command %s started: action %s, scrolling", command.id, command.action)
        bucket_size = command.bucket_size or spec.bucket_size
        size = min(max(runtime.scroll_size, bucket_size), MAX_SCROLL_SIZE)
        limit = command.query_limit
        sequential = bool(command.sequential)
        total = buckets = 0
        limit_reached = False
        pending: list[str] = []
        # The pending ids' storage hints, None once a page came without them.
        pending_hints: list[Any] | None = []

        def flush(force: bool) -> None:
            nonlocal pending, pending_hints, buckets
            out: list[tuple[str, Record]] = []
            while len(pending) >= bucket_size or (force and pending):
                ids, pending = pending[:bucket_size], pending[bucket_size:]
                hints = None
                if pending_hints is not None:
                    hints, pending_hints = pending_hints[:bucket_size], pending_hints[bucket_size:]
                key = command.id if sequential else f"{command.id}:{buckets}"
                out.append((key, Record(key, encode_bucket(command.id, buckets, ids, hints))))
                buckets += 1
            if out:
                self._append(spec.stream, out)

        try:
            scroller = get_scroller(command.scroller or spec.cls.default_scroller)
            for ids, hints in scroll_pages(scroller, command, ScrollContext(runtime.repository), size):
                if limit is not None and total + len(ids) >= limit:
                    limit_reached = total + len(ids) > limit
                    ids = ids[: limit - total]
                if hints is None or len(hints) < len(ids):
                    pending_hints = None
                elif pending_hints is not None:
                    pending_hints.extend(hints[: len(ids)])
                pending.extend(ids)
                total += len(ids)
                flush(False)
                if limit is not None and total >= limit:
                    break
                if runtime.is_ended(command.id, ABORT_CHECK_S):
                    logger.info("bulk command %s aborted while scrolling", command.id)
                    break
            flush(True)
        except Exception as exc:
            if isinstance(exc, ConveyorError) and exc.retriable:
                raise
            logger.warning(
                "bulk command %s (%s): scroll failed after %d ids: %s", command.id, command.action, total, exc
            )
            end = now()
            self._status(
                BulkStatus.delta_of(
                    command.id,
                    state=BulkState.COMPLETED,
                    error_count=1,
                    error_message=_message(exc),
                    scroll_end_time=end,
                    completed_time=end,
                    total=total,
                ),
                bucket_count=buckets,
            )
            return
        self._status(
            BulkStatus.delta_of(
                command.id,
                state=BulkState.RUNNING,
                total=total,
                scroll_end_time=now(),
                query_limit_reached=limit_reached,
            ),
            bucket_count=buckets,
        )
        logger.info(
            "bulk command %s scrolled: action %s, total %d in %d bucket(s), %.1f s%s",
            command.id,
            command.action,
            total,
            buckets,
            time.monotonic() - scroll_started,
            " (query limit reached)" if limit_reached else "",
        )

    def destroy(self) -> None:
        # The manager's appenders are shared by every computation of the process and closed with
        # the manager: closing them here (as a rebalance does) broke the others' checkpoints.
        self._appenders.clear()


class ActionComputation(Computation):
    """``bulk/<action>``: runs the action on each bucket, in batches; one delta per bucket."""

    def __init__(self, runtime: BulkRuntime, spec: ActionSpec) -> None:
        super().__init__(spec.stream, inputs=1, outputs=1)
        self.runtime = runtime
        self.spec = spec
        self.action = spec.cls()
        self._commands: dict[str, BulkCommand] = {}
        self._attempts: dict[str, int] = {}
        self._commits = GroupCommit()

    def process_timer(self, context: ComputationContext, key: str, timestamp: int) -> None:
        if key == GroupCommit.TIMER:
            self._commits.checkpoint(context)

    def _command(self, command_id: str) -> BulkCommand | None:
        command = self._commands.get(command_id)
        if command is None:
            command = self.runtime.store.get_command(command_id)
            if command is not None:
                if len(self._commands) > 100:
                    self._commands.clear()
                self._commands[command_id] = command
        return command

    def process_record(self, context: ComputationContext, input_stream: str, record: Record) -> None:
        command_id, bucket, ids, hints = decode_bucket_hints(record.data)
        self._commits.request(context)
        command = self._command(command_id)
        if command is None or self.runtime.is_ended(command_id, ABORT_CHECK_S):
            return
        start = now()
        ctx = ActionContext(
            command, bucket, self.runtime.repository, self.runtime.transient_store, hints=hints
        )
        key = f"{command_id}:{bucket}"
        try:
            processed = self._run(ctx, ids)
        except Exception as exc:
            attempts = self._attempts.get(key, 0) + 1
            retriable = isinstance(exc, ConveyorError) and exc.retriable
            if retriable and attempts <= context.policy.max_retries:
                self._attempts[key] = attempts
                raise
            processed = len(ids)
            ctx.errors[:] = [(i, _message(exc)) for i in ids]
        self._attempts.pop(key, None)
        delta = BulkStatus.delta_of(
            command_id,
            processed=processed,
            error_count=len(ctx.errors),
            error_message=f"{ctx.errors[0][0]}: {ctx.errors[0][1]}"[:_MESSAGE_MAX] if ctx.errors else None,
            processing_start_time=start,
            processing_end_time=now(),
        )
        context.produce_record("o1", Record(command_id, StatusDelta(delta, bucket=bucket).encode()))

    def _run(self, ctx: ActionContext, ids: list[str]) -> int:
        action, runtime = self.action, self.runtime
        batch_size = ctx.command.batch_size or self.spec.batch_size
        params = ctx.command.params
        processed = 0
        action.start_bucket(ctx)
        for i in range(0, len(ids), batch_size):
            if i and runtime.is_ended(ctx.command.id, ABORT_CHECK_S):
                break
            batch = ids[i : i + batch_size]
            try:
                action.compute(ctx, batch, params)
            except Exception as exc:
                if isinstance(exc, ConveyorError) and exc.retriable:
                    raise
                if len(batch) == 1:
                    ctx.report_error(batch[0], _message(exc))
                else:  # find the ids that fail, one by one
                    for item in batch:
                        try:
                            action.compute(ctx, [item], params)
                        except Exception as item_exc:
                            if isinstance(item_exc, ConveyorError) and item_exc.retriable:
                                raise
                            ctx.report_error(item, _message(item_exc))
            processed += len(batch)
        action.end_bucket(ctx)
        return processed


class StatusComputation(Computation):
    """``bulk/status``: merges deltas into the KV store; full status to ``bulk/done`` at the end."""

    def __init__(self, runtime: BulkRuntime) -> None:
        super().__init__(STATUS, inputs=1, outputs=1)
        self.runtime = runtime
        self._commits = GroupCommit()

    def process_timer(self, context: ComputationContext, key: str, timestamp: int) -> None:
        if key == GroupCommit.TIMER:
            self._commits.checkpoint(context)

    def process_record(self, context: ComputationContext, input_stream: str, record: Record) -> None:
        self._commits.request(context)
        message = StatusDelta.decode(record.data)
        delta = message.status
        runtime = self.runtime
        command: BulkCommand | None = None
        ended = False

        def change(stored: StoredStatus) -> bool:
            nonlocal command, ended
            status = stored.status
            if message.bucket is not None and not stored.mark_bucket(message.bucket):
                return False  # a bucket delivered again: counted already
            if message.bucket_count is not None:
                stored.bucket_count = message.bucket_count
            was_ended = status.is_completed
            status.merge(delta)
            if not status.is_completed and status.is_fully_processed:
                command = command or runtime.store.get_command(delta.command_id)
                self._complete(command, status)
            ended = not was_ended and status.is_completed
            return True

        try:
            updated = runtime.store.update(delta.command_id, change)
        except BulkError:
            found = runtime.store.listed_status(delta.command_id)
            if not isinstance(found, DamagedBulkStatus):
                raise
            # Retrying cannot mend it, and would hold up the deltas behind it on the partition.
            logger.error(
                "bulk command %s: status delta not merged, the stored status is damaged (%s); "
                "'conveyor bulk abort %s' replaces it with an ABORTED status",
                delta.command_id,
                found.error_message,
                delta.command_id,
            )
            return
        if updated is None:
            logger.debug("status delta of unknown bulk command %s skipped", delta.command_id)
            return
        stored, _ = updated
        if ended or (delta.state is BulkState.ABORTED and stored.status.state is BulkState.ABORTED):
            status = stored.status
            _log_end(status)
            context.produce_record("o1", Record(status.command_id, status.encode()))
            self._commits.checkpoint(context)  # listeners of bulk/done hear of it now
            command = command or runtime.store.get_command(delta.command_id)
            spec = runtime.actions.get(status.action or "")
            if command is not None and spec is not None and spec.cls.exclusive:
                runtime.store.release_exclusive(command.action, command.repository, command.id)

    def _complete(self, command: BulkCommand | None, status: BulkStatus) -> None:
        spec = self.runtime.actions.get(status.action or "")
        if command is not None and spec is not None and spec.cls.has_completion():
            ctx = ActionContext(command, -1, self.runtime.repository, self.runtime.transient_store)
            try:
                result = spec.cls().complete(ctx, status)
            except Exception as exc:
                if isinstance(exc, ConveyorError) and exc.retriable:
                    raise
                logger.exception("bulk command %s: completion of %s failed", command.id, command.action)
                status.error_count += 1
                status.error_message = status.error_message or _message(exc)
            else:
                if result is not None:
                    status.result = dict(result)
        status.state = BulkState.COMPLETED
        status.completed_time = now()


def _log_end(status: BulkStatus) -> None:
    start, end = status.submit_time, status.completed_time
    duration = f"{(end - start).total_seconds():.1f} s" if start is not None and end is not None else "?"
    logger.info(
        "bulk command %s ended %s: action %s, processed %d/%d, %d error(s), %d skipped, %s since submit",
        status.command_id,
        status.state.value,
        status.action,
        status.processed,
        status.total,
        status.error_count,
        status.skip_count,
        duration,
    )


def build_topology(runtime: BulkRuntime) -> Topology:
    """The topology of the Bulk Service for ``runtime``'s enabled actions."""
    specs = [spec for spec in runtime.actions.values() if spec.enabled]
    streams = [spec.stream for spec in specs]
    scroller_outputs = [f"o{i}:{stream}" for i, stream in enumerate(streams, 1)]
    scroller_outputs.append(f"o{len(streams) + 1}:{STATUS_STREAM}")
    outputs = len(scroller_outputs)
    builder = Topology.builder().add_computation(
        lambda: ScrollerComputation(runtime, outputs), [f"i1:{COMMAND_STREAM}", *scroller_outputs]
    )
    for spec in specs:
        builder.add_computation(
            lambda spec=spec: ActionComputation(runtime, spec),  # type: ignore[misc]
            [f"i1:{spec.stream}", f"o1:{STATUS_STREAM}"],
        )
    builder.add_computation(lambda: StatusComputation(runtime), [f"i1:{STATUS_STREAM}", f"o1:{DONE_STREAM}"])
    return builder.build()
