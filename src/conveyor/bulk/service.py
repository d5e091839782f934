"""``BulkService``: submit bulk commands, follow them, abort them, get their results."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from conveyor.bulk.action import BulkAction, registered_actions
from conveyor.bulk.command import BulkCommand
from conveyor.bulk.computations import (
    COMMAND_STREAM,
    DONE_STREAM,
    SCROLLER,
    STATUS,
    STATUS_STREAM,
    ActionSpec,
    BulkRuntime,
    build_topology,
)
from conveyor.bulk.scroller import ScrollContext, get_scroller
from conveyor.bulk.status import BulkState, BulkStatus, StatusDelta, now
from conveyor.bulk.store import BulkStore, DamagedBulkStatus
from conveyor.errors import BulkError, BulkExclusiveError, BulkValidationError, CodecError, NoRetryError
from conveyor.log.names import Name
from conveyor.record import Record
from conveyor.stream import ComputationPolicy, Settings, StreamProcessor, Topology

if TYPE_CHECKING:
    from conveyor.kv import KeyValueStore
    from conveyor.log import LogManager
    from conveyor.log.api import LogAppender
    from conveyor.repository import Repository
    from conveyor.transient import Blob, TransientStore

__all__ = ["BulkService", "DoneListener"]

logger = logging.getLogger("conveyor.bulk")


def _stopped(what: str, stop: Callable[[], object]) -> bool:
    """``stop()``'s answer as a bool (None: True); False, logged at ERROR with the cause, when it raised."""
    try:
        result = stop()
    except Exception as exc:
        logger.error("bulk service: %s could not stop: %s", what, exc, exc_info=True)
        return False
    return result is None or bool(result)


COMMAND_PARTITIONS = 2
STATUS_PARTITIONS = 2
# Bytes that cannot be decoded (CodecError, BulkDecodeError) are never retried and always skipped
# with an ERROR naming their offset: on bulk/status above all, where any other failure stops the
# computation, one such record would otherwise hold every command behind it.
_UNDECODABLE = (NoRetryError, CodecError)
SCROLLER_POLICY = ComputationPolicy(
    max_retries=3, delay_s=1.0, max_delay_s=10.0, continue_on_failure=True, abort_on=_UNDECODABLE
)
ACTION_POLICY = ComputationPolicy(
    max_retries=3, delay_s=0.5, max_delay_s=10.0, continue_on_failure=True, abort_on=_UNDECODABLE
)
STATUS_POLICY = ComputationPolicy(
    max_retries=20, delay_s=1.0, max_delay_s=60.0, abort_on=_UNDECODABLE, skip_undecodable=True
)
_POLL_S = (0.01, 0.05)


def _positive(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BulkValidationError(f"{what} must be a positive int, got {value!r}")
    return value


class DoneListener:
    """Calls ``callback(status)`` for each command that ends (tails ``bulk/done`` from now on)."""

    def __init__(self, log_manager: LogManager, codec: Any, callback: Callable[[BulkStatus], None]) -> None:
        self._callback = callback
        self._stop = threading.Event()
        group = Name.of("bulk", "listener-" + uuid.uuid4().hex[:12])
        self._tailer = log_manager.create_tailer(group, DONE_STREAM, codec)
        self._tailer.to_end()
        self._thread = threading.Thread(target=self._loop, name="bulk-done-listener", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                item = self._tailer.read(0.1)
                if item is None or not isinstance(item.message, Record):
                    continue
                try:
                    self._callback(BulkStatus.decode(item.message.data))
                except Exception:
                    logger.exception("bulk done listener failed")
        finally:
            self._tailer.close()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop listening; True when the thread ended within ``timeout``."""
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()


class BulkService:
    """The Bulk Action Framework: runs actions over the ids a query selects, in buckets.

    Built on a log manager (streams ``bulk/*``), a KV store (the ``bulk`` store: commands and
    statuses), the repository the built-in actions change, and a transient store (csvExport's
    files). ``start()`` runs the computations in this process (unless ``processing=False``: a
    submit-only client, which ``start_processing()`` turns into a processing one); any number of
    processes sharing the same logs and stores share the work.
    """

    def __init__(
        self,
        log_manager: LogManager,
        kv_store: KeyValueStore,
        repository: Repository | None = None,
        transient_store: TransientStore | None = None,
        *,
        actions: Iterable[type[BulkAction]] | None = None,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        processing: bool = True,
        codec: Any = None,
        scroller_concurrency: int = 1,
        status_concurrency: int = 1,
        scroll_size: int = 1000,
    ) -> None:
        classes = list(actions) if actions is not None else list(registered_actions().values())
        self._specs = {cls.name: self._spec(cls, (overrides or {}).get(cls.name, {})) for cls in classes}
        unknown = set(overrides or {}) - set(self._specs)
        if unknown:
            raise BulkValidationError(f"bulk overrides for unknown actions {sorted(unknown)}")
        self.log_manager = log_manager
        self.kv_store = kv_store
        self.repository = repository
        self.transient_store = transient_store
        self.processing = processing
        self.codec = codec
        self.store = BulkStore(kv_store)
        self.runtime = BulkRuntime(
            self.store,
            log_manager,
            self._specs,
            repository,
            transient_store,
            codec,
            _positive(scroll_size, "scroll_size"),
        )
        self._scroller_concurrency = _positive(scroller_concurrency, "scroller_concurrency")
        self._status_concurrency = _positive(status_concurrency, "status_concurrency")
        self._processor: StreamProcessor | None = None
        self._appender: LogAppender[Any] | None = None
        self._status_appender: LogAppender[Any] | None = None
        self._listeners: list[DoneListener] = []
        self._lock = threading.Lock()
        self._started = False
        self._closed = False

    @staticmethod
    def _spec(action: type[BulkAction], override: Mapping[str, Any]) -> ActionSpec:
        allowed = {"bucket_size", "batch_size", "concurrency", "partitions", "http_enabled", "enabled"}
        extra = set(override) - allowed - {"name"}
        if extra:
            raise BulkValidationError(f"bulk action {action.name!r}: unknown settings {sorted(extra)}")

        def pick(name: str) -> Any:
            value = override.get(name)
            return getattr(action, name) if value is None else value

        return ActionSpec(
            action,
            _positive(pick("bucket_size"), f"{action.name}.bucket_size"),
            _positive(pick("batch_size"), f"{action.name}.batch_size"),
            _positive(pick("concurrency"), f"{action.name}.concurrency"),
            _positive(pick("partitions"), f"{action.name}.partitions"),
            bool(pick("http_enabled")),
            bool(override.get("enabled", True)),
        )

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def topology(self) -> Topology:
        """The computations and streams of the pipeline."""
        return build_topology(self.runtime)

    def settings(self) -> Settings:
        """The stream settings the pipeline runs with."""
        partitions = {COMMAND_STREAM: COMMAND_PARTITIONS, STATUS_STREAM: STATUS_PARTITIONS, DONE_STREAM: 1}
        concurrency = {SCROLLER: self._scroller_concurrency, STATUS: self._status_concurrency}
        policies = {SCROLLER: SCROLLER_POLICY, STATUS: STATUS_POLICY}
        for spec in self._specs.values():
            partitions[spec.stream] = spec.partitions
            concurrency[spec.stream] = spec.concurrency
            policies[spec.stream] = ACTION_POLICY
        return Settings(
            concurrency=1,
            partitions=1,
            codec=self.codec,
            stream_partitions=partitions,
            computation_concurrency=concurrency,
            computation_policies=policies,
            subscribe=None,
        )

    @property
    def processor(self) -> StreamProcessor | None:
        """The running stream processor (None when not processing here)."""
        return self._processor

    def start(self) -> BulkService:
        """Create the streams and, unless submit-only, start the computations. Idempotent."""
        with self._lock:
            if self._closed:
                raise BulkError("the bulk service is closed")
            if self._started:
                return self
            self._started = True
            settings = self.settings()
            for stream in (COMMAND_STREAM, STATUS_STREAM, DONE_STREAM):
                self.log_manager.create_if_not_exists(stream, settings.partitions_of(stream))
            if self.processing:
                self._start_processor(settings)
        return self

    def start_processing(self) -> BulkService:
        """Run the computations in this process from now on (a node starting); idempotent.

        Starts the service first when needed; a service made with ``processing=False`` becomes a
        processing one.
        """
        self.start()
        with self._lock:
            if self._closed:
                raise BulkError("the bulk service is closed")
            self.processing = True
            if self._processor is None:
                self._start_processor(self.settings())
        return self

    def _start_processor(self, settings: Settings) -> None:
        processor = StreamProcessor(self.log_manager, self.topology, settings, name="bulk")
        processor.start()
        self._processor = processor
        logger.info("bulk service processing here: actions %s", ", ".join(self.actions()))

    def close(self, timeout: float = 10.0) -> bool:
        """Stop the computations (unfinished buckets are processed again by the next node).

        True when all stopped within ``timeout``; False when not, or when a part could not
        finish (logged at ERROR with the cause). Never raises.
        """
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        deadline = time.monotonic() + timeout
        clean = True
        for listener in self._listeners:
            listener_stop = partial(listener.stop, max(0.1, deadline - time.monotonic()))
            clean &= _stopped("a done listener", listener_stop)
        if self._processor is not None:
            processor_stop = partial(self._processor.stop, max(0.0, deadline - time.monotonic()))
            clean &= _stopped("the processor", processor_stop)
        for appender in (self._appender, self._status_appender):
            if appender is not None:
                clean &= _stopped("an appender", appender.close)
        return clean

    def __enter__(self) -> BulkService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- submit --------------------------------------------------------------------------------

    def action_spec(self, name: str) -> ActionSpec:
        """The settings of action ``name``; BulkValidationError when unknown or disabled."""
        spec = self._specs.get(name)
        if spec is None or not spec.enabled:
            known = ", ".join(sorted(n for n, s in self._specs.items() if s.enabled))
            raise BulkValidationError(f"unknown bulk action {name!r}; known: {known}")
        return spec

    def actions(self) -> list[str]:
        """The names of the enabled actions."""
        return sorted(n for n, s in self._specs.items() if s.enabled)

    def prepare(self, command: BulkCommand) -> BulkCommand:
        """``command`` with the action's defaults filled in, validated (nothing is scheduled)."""
        if not isinstance(command, BulkCommand):
            raise BulkValidationError(f"submit needs a BulkCommand, got {type(command).__name__}")
        spec = self.action_spec(command.action)
        if not isinstance(command.query, str):
            raise BulkValidationError(f"query must be a string, got {command.query!r}")
        if not isinstance(command.params, dict):
            raise BulkValidationError(f"params must be a dict, got {type(command.params).__name__}")
        bucket = _positive(command.bucket_size or spec.bucket_size, "bucket_size")
        batch = _positive(command.batch_size or min(spec.batch_size, bucket), "batch_size")
        if batch > bucket:
            raise BulkValidationError(f"batch_size {batch} must not exceed bucket_size {bucket}")
        limit = command.query_limit if command.query_limit is not None else spec.cls.query_limit
        if limit is not None:
            _positive(limit, "query_limit")
        prepared = dataclasses.replace(
            command,
            params=dict(command.params),
            bucket_size=bucket,
            batch_size=batch,
            query_limit=limit,
            scroller=command.scroller or spec.cls.default_scroller,
            sequential=spec.cls.sequential if command.sequential is None else bool(command.sequential),
        )
        prepared.encode()  # params must be JSON
        try:
            spec.cls.validate(prepared)
        except BulkValidationError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise BulkValidationError(f"bulk action {command.action!r}: invalid params: {exc}") from exc
        get_scroller(prepared.scroller or "repository").validate(prepared, ScrollContext(self.repository))
        return prepared

    def submit(self, command: BulkCommand) -> str:
        """Validate and schedule ``command``; its id. Not transactional.

        BulkValidationError (nothing scheduled) for an unknown action, bad sizes, params or query;
        BulkExclusiveError when the action is exclusive and another of its commands is running.
        """
        prepared = self.prepare(command)
        if not self._started:
            self.start()
        spec = self.action_spec(prepared.action)
        if spec.cls.exclusive:
            holder = self.store.acquire_exclusive(prepared.action, prepared.repository, prepared.id)
            if holder is not None:
                raise BulkExclusiveError(
                    f"bulk action {prepared.action!r} is exclusive and command {holder} is still running "
                    f"on repository {prepared.repository!r}"
                )
        status = BulkStatus(
            prepared.id,
            BulkState.SCHEDULED,
            action=prepared.action,
            username=prepared.username,
            submit_time=now(),
        )
        self.store.put_command(prepared)
        self.store.create_status(status)
        key = prepared.action if prepared.sequential else prepared.id
        try:
            self._command_appender().append(key, Record(key, prepared.encode()))
        except BaseException:
            self.store.update(prepared.id, lambda s: _abort(s.status, "could not be scheduled"))
            if spec.cls.exclusive:
                self.store.release_exclusive(prepared.action, prepared.repository, prepared.id)
            raise
        logger.info("bulk command %s submitted: %s", prepared.id, prepared.action)
        return prepared.id

    def _command_appender(self) -> LogAppender[Any]:
        with self._lock:
            if self._appender is None:
                self._appender = self.log_manager.appender(COMMAND_STREAM, self.codec)
            return self._appender

    def _status_stream(self) -> LogAppender[Any]:
        with self._lock:
            if self._status_appender is None:
                self._status_appender = self.log_manager.appender(STATUS_STREAM, self.codec)
            return self._status_appender

    # --- follow --------------------------------------------------------------------------------

    def get_command(self, command_id: str) -> BulkCommand | None:
        """The command as submitted (defaults filled in), None when unknown or expired."""
        return self.store.get_command(command_id)

    def status(self, command_id: str) -> BulkStatus:
        """The command's status; state UNKNOWN when it was never submitted or has expired.

        A stored status that cannot be decoded is a :class:`~conveyor.bulk.store.DamagedBulkStatus`
        (state UNKNOWN, ``damaged`` true, ``error_message`` saying why), as listings show it;
        :meth:`abort` replaces it by an ABORTED status.
        """
        return self.store.listed_status(command_id)

    def statuses(self, username: str | None = None) -> list[BulkStatus]:
        """The statuses of the stored commands (of ``username`` when given), oldest first.

        A stored status that cannot be decoded is listed as a
        :class:`~conveyor.bulk.store.DamagedBulkStatus` (when no ``username`` is given).
        """
        found = [self.store.listed_status(i) for i in self.store.command_ids()]
        found = [s for s in found if s.state is not BulkState.UNKNOWN or isinstance(s, DamagedBulkStatus)]
        if username is not None:
            found = [s for s in found if s.username == username]
        return sorted(found, key=lambda s: (s.submit_time is None, s.submit_time or now(), s.command_id))

    def wait(self, command_id: str, timeout: float) -> bool:
        """Block until the command is COMPLETED or ABORTED: True, or False after ``timeout`` s
        (or at once when the command is unknown)."""
        deadline = time.monotonic() + timeout
        delay = _POLL_S[0]
        while True:
            status = self.status(command_id)
            if status.is_completed:
                return True
            if status.state is BulkState.UNKNOWN:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, _POLL_S[1])

    def wait_all(self, timeout: float) -> bool:
        """Block until every stored command has ended; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while any(not s.is_completed and not isinstance(s, DamagedBulkStatus) for s in self.statuses()):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def abort(self, command_id: str) -> BulkStatus:
        """Abort the command: scrolling stops and the remaining buckets are skipped.

        Returns the status (ABORTED; unchanged if it had already ended; UNKNOWN if unknown).
        Buckets being processed at that moment finish their current batch. A stored status that
        cannot be decoded (a :class:`~conveyor.bulk.store.DamagedBulkStatus`) is replaced by a
        new ABORTED status whose ``error_message`` says so (its counters are lost), so that the
        command ends.
        """
        for _ in range(3):
            try:
                updated = self.store.update(command_id, lambda s: _abort(s.status))
            except BulkError:
                fresh = self.store.abort_damaged(command_id)
                if fresh is None:  # not damaged (another error), or changed meanwhile
                    continue
                logger.warning("bulk command %s: %s", command_id, fresh.error_message)
                self._announce_abort(command_id, fresh)
                return fresh
            break
        else:
            updated = self.store.update(command_id, lambda s: _abort(s.status))
        if updated is None:
            return BulkStatus.unknown_of(command_id)
        stored, changed = updated
        if changed:
            self._announce_abort(command_id, stored.status)
            logger.info("bulk command %s aborted", command_id)
        return stored.status

    def _announce_abort(self, command_id: str, status: BulkStatus) -> None:
        """Tell the status computation (and through it ``bulk/done`` listeners) of the abort."""
        delta = BulkStatus.delta_of(command_id, state=BulkState.ABORTED, completed_time=status.completed_time)
        self._status_stream().append(command_id, Record(command_id, StatusDelta(delta).encode()))

    def result(self, command_id: str) -> dict[str, Any]:
        """The command's result (e.g. where csvExport stored its file); empty until it completes."""
        return dict(self.status(command_id).result)

    def download(self, command_id: str) -> Blob | None:
        """The file a command stored in the transient store (csvExport), None when there is none."""
        result = self.result(command_id)
        store = self.transient_store
        if store is None or "key" not in result or result.get("transient_store") != store.name:
            return None
        blobs = store.get_blobs(str(result["key"]))
        return blobs[0] if blobs else None

    def on_done(self, callback: Callable[[BulkStatus], None]) -> DoneListener:
        """Call ``callback(status)`` in a thread for each command ending from now on (``bulk/done``)."""
        if not self._started:
            self.start()
        listener = DoneListener(self.log_manager, self.codec, callback)
        self._listeners.append(listener)
        return listener


def _abort(status: BulkStatus, reason: str | None = None) -> bool:
    if status.is_completed:
        return False
    status.state = BulkState.ABORTED
    status.completed_time = now()
    if reason:
        status.error_count += 1
        status.error_message = status.error_message or reason
    return True
