"""Dead letters in the ``work/dlq`` log: Works that failed for good, kept with their error.

One :class:`~conveyor.work.codec.DeadLetter` per record (key ``<category>:<work id>``); the
``work/dlq_rerun`` consumer group marks the letters already re-run. Shared by the WorkManagers
that keep their dead letters in a log (``threads://`` and ``stream``).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from conveyor.codec import BytesCodec
from conveyor.work.api import Work
from conveyor.work.codec import DeadLetter, WorkCodec

__all__ = ["DLQ_RERUN_GROUP", "DLQ_STREAM", "LogDeadLetters"]

logger = logging.getLogger("conveyor.work")

DLQ_STREAM = "work/dlq"
DLQ_RERUN_GROUP = "work/dlq_rerun"


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
            rec = tailer.read(1.0)
            if rec is None:
                break
            letters.append(self.codec.decode_dead_letter(rec.message))
        return tailer, letters

    def dead_letters(self) -> list[DeadLetter]:
        """The dead letters not re-run yet (``work/dlq``), oldest first."""
        with self._lock:
            tailer, letters = self._pending_letters()
            if tailer is not None:
                tailer.close()
        return letters

    def rerun_failed(self, category: str | None = None) -> int:
        """Schedule again the dead letters not re-run yet (of ``category`` only, if given)."""
        with self._lock:
            tailer, letters = self._pending_letters()
            rerun: list[Work] = []
            keep: list[DeadLetter] = []
            for letter in letters:
                work = None
                if category is None or letter.category == category:
                    work = self._letter_work(letter)
                if work is None:
                    keep.append(letter)
                else:
                    rerun.append(work)
            self._unlogged = []
            try:
                for letter in keep:  # the log is append-only: letters left for later go to its end
                    self._to_dlq(letter)
                if tailer is not None:
                    tailer.commit()
            finally:
                if tailer is not None:
                    tailer.close()
        for work in rerun:
            self.schedule(work, after_commit=False)
        return len(rerun)
