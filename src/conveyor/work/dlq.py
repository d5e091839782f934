"""Dead letters in the ``work/dlq`` log: Works that failed for good, kept with their error.

One :class:`~conveyor.work.codec.DeadLetter` per record (key ``<category>:<work id>``); the
``work/dlq_rerun`` consumer group marks the letters already re-run. Shared by the WorkManagers
that keep their dead letters in a log (``threads://`` and ``stream``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from conveyor.codec import BytesCodec
from conveyor.errors import LogError
from conveyor.work.api import Work
from conveyor.work.codec import DeadLetter, WorkCodec

__all__ = ["DLQ_RERUN_GROUP", "DLQ_STREAM", "DamagedDeadLetter", "LogDeadLetters", "decode_letter"]

logger = logging.getLogger("conveyor.work")

DLQ_STREAM = "work/dlq"
DLQ_RERUN_GROUP = "work/dlq_rerun"
UNKNOWN = "?"


class DamagedDeadLetter(DeadLetter, omit_defaults=True):
    """An entry of the dead letters that cannot be decoded (or read): listed as such, never re-run, kept.

    ``data`` is the entry's raw bytes, ``error`` says why it cannot be decoded and ``position``
    where it is stored (``work-dlq-00:+12``, or the Redis list and index). ``id``, ``queue``,
    ``type`` and ``category`` are what could still be read from the entry (``?`` when unknown).
    An entry that could not even be read from the log has no ``data``: nothing is re-written for
    it, the log still holds it.
    """

    damaged: ClassVar[bool] = True
    position: str = ""


def _salvage(codec: WorkCodec, data: bytes) -> dict[str, Any]:
    """The readable string fields of a damaged entry (its id, queue, type, category), if any."""
    try:
        found = (msgspec.json if codec.name == "json" else msgspec.msgpack).decode(data)
    except Exception:
        return {}
    if not isinstance(found, dict):
        return {}
    return {k: found[k] for k in ("id", "queue", "type", "category") if isinstance(found.get(k), str)}


def decode_letter(codec: WorkCodec, data: bytes, position: str) -> DeadLetter:
    """The dead letter stored as ``data``, or a :class:`DamagedDeadLetter` saying why it cannot be decoded."""
    try:
        return codec.decode_dead_letter(data)
    except Exception as exc:  # any decoding failure (even a RecursionError) concerns this entry only
        error = f"undecodable dead letter ({len(data)} bytes at {position}): {type(exc).__name__}: {exc}"
        logger.debug("%s; listed as damaged", error)
        known = _salvage(codec, data)
        return DamagedDeadLetter(
            queue=known.get("queue", UNKNOWN),
            id=known.get("id", UNKNOWN),
            type=known.get("type", UNKNOWN),
            error=error,
            data=bytes(data),
            category=known.get("category"),
            position=position,
        )


class LogDeadLetters:
    """Mixin: dead letters written to and re-run from the ``work/dlq`` log of ``_log_manager``.

    ``_log_manager`` is a log manager, a callable returning one (opened lazily), or None (an
    in-memory one is opened).
    """

    _lock: threading.RLock
    _log_manager: Any
    _unlogged: list[DeadLetter]
    codec: WorkCodec

    if TYPE_CHECKING:  # provided by WorkManager

        def _letter_work(self, letter: DeadLetter) -> Work | None: ...

        def schedule(self, work: Work, after_commit: bool = True, scheduling: Any = ...) -> bool: ...

    def _dlq_manager(self) -> Any:
        with self._lock:
            if self._log_manager is None:
                from conveyor.log import open_log_manager

                self._log_manager = open_log_manager("memory://")
            elif callable(self._log_manager):  # a node's lazily opened log manager
                self._log_manager = self._log_manager()
            self._log_manager.create_if_not_exists(DLQ_STREAM, 1)
            return self._log_manager

    def _to_dlq(self, letter: DeadLetter) -> None:
        try:
            appender = self._dlq_manager().appender(DLQ_STREAM, codec=BytesCodec())
            if isinstance(letter, DamagedDeadLetter):  # kept as it was stored, for someone to look at
                appender.append(f"{letter.category}:{letter.id}", letter.data)
                return
            appender.append(f"{letter.category}:{letter.id}", self.codec.encode_dead_letter(letter))
        except Exception:
            logger.exception("cannot write Work %s to %s: kept in memory instead", letter.id, DLQ_STREAM)
            with self._lock:
                self._unlogged.append(letter)

    def _pending_letters(self) -> tuple[Any, list[DeadLetter]]:
        """A tailer of the re-run group (None if the log cannot be opened) and the letters not
        re-run yet, those kept in memory first (caller closes the tailer)."""
        letters = list(self._unlogged)
        try:
            manager = self._dlq_manager()
            pending = manager.lag(DLQ_STREAM, DLQ_RERUN_GROUP).lag
            tailer = manager.create_tailer(DLQ_RERUN_GROUP, DLQ_STREAM, codec=BytesCodec())
        except Exception:
            logger.exception("cannot read %s; only the dead letters kept in memory are seen", DLQ_STREAM)
            return None, letters
        for _ in range(pending):
            try:
                rec = tailer.read(1.0)
            except LogError as exc:  # damage in the log itself: list what came before, say where it stops
                logger.error("cannot read %s past the letters listed: %s", DLQ_STREAM, exc)
                letters.append(
                    DamagedDeadLetter(
                        queue=UNKNOWN,
                        id=UNKNOWN,
                        type=UNKNOWN,
                        error=f"cannot read {DLQ_STREAM} further: {type(exc).__name__}: {exc}",
                        data=b"",
                        position=DLQ_STREAM,
                    )
                )
                break
            if rec is None:
                break
            letters.append(decode_letter(self.codec, rec.message, str(rec.offset)))
        return tailer, letters

    def dead_letters(self) -> list[DeadLetter]:
        """The dead letters not re-run yet (``work/dlq``), oldest first.

        An entry that cannot be decoded is listed as a :class:`DamagedDeadLetter`.
        """
        with self._lock:
            tailer, letters = self._pending_letters()
            if tailer is not None:
                tailer.close()
        return letters

    def rerun_failed(self, category: str | None = None, *, ids: Collection[str] | None = None) -> int:
        """Schedule again the dead letters not re-run yet (of ``category`` only, if given; with these
        Work ``ids`` only, if given).

        Damaged entries (:class:`DamagedDeadLetter`) are skipped and kept as they are; a letter
        whose Work cannot be scheduled (a full queue, a store refusing or down) is kept, logged.
        Returns how many were scheduled.
        """
        with self._lock:
            tailer, letters = self._pending_letters()
            rerun: list[tuple[Work, DeadLetter]] = []
            keep: list[DeadLetter] = []
            for letter in letters:
                work = None
                if isinstance(letter, DamagedDeadLetter):
                    logger.warning("dead letters: skipped and kept: %s", letter.error)
                    if letter.data:  # an entry that could not even be read stays in the log as it is
                        keep.append(letter)
                    continue
                if (category is None or letter.category == category) and (ids is None or letter.id in ids):
                    work = self._letter_work(letter)
                if work is None:
                    keep.append(letter)
                else:
                    rerun.append((work, letter))
            self._unlogged = []
            try:
                for letter in keep:  # the log is append-only: letters left for later go to its end
                    self._to_dlq(letter)
                if tailer is not None:
                    tailer.commit()
            finally:
                if tailer is not None:
                    tailer.close()
        count = 0
        for work, letter in rerun:
            # Its letter is out of work/dlq already: one that cannot be scheduled (a full queue, a
            # store refusing it or down) goes back there, and the letters after it are still re-run.
            try:
                self.schedule(work, after_commit=False)
            except Exception as exc:
                logger.error(
                    "dead letter %s (%s) could not be scheduled again, kept: %s: %s",
                    letter.id,
                    letter.type,
                    type(exc).__name__,
                    exc,
                )
                self._to_dlq(letter)
                continue
            count += 1
        return count
