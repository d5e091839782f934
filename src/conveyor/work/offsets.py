"""Which offsets of a queue's log a node may commit, with Works of one partition run out of order.

One subscriber per node and queue hands records to whichever of the queue's threads is free, so
several records of one partition may be running at once and finish in any order. The committed
offset of a partition may only move past records whose Work is finished (at-least-once: a crash
re-delivers the others), and committing after every Work would cost a durable write per Work:
:class:`OffsetTracker` remembers, per partition, the records in flight and the records finished
since the last commit, and says when a commit is due (every ``every`` finished records or
``interval`` seconds) and which partitions can be committed at the tailer's read position.

A log tailer commits its read position only (the offset after the last record it returned), so a
partition is committable when none of the records read from it is still in flight. After a
rebalance every partition restarts from the group's committed offset: records read again are
skipped when they are in flight or finished here (see :meth:`OffsetTracker.read`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from conveyor.log.types import LogPartition

__all__ = ["OffsetTracker"]


@dataclass
class _Partition:
    base: int | None = None
    """Offset of the first record read since the partition was (re)assigned; None: not read yet."""
    next_read: int = 0
    """The tailer's read position: the offset after the last record it returned."""
    committed: int = 0
    """The last position committed (or the group's committed offset, ``base``, after a rebalance)."""
    pending: set[int] = field(default_factory=set)
    """Records read and not finished (running here, or left unfinished by a stop)."""
    done: set[int] = field(default_factory=set)
    """Records finished here at or after ``committed``."""
    epoch: int = 0
    """How many times the partition was (re)assigned and read."""


class OffsetTracker:
    """Offsets read, in flight and finished per partition, and when to commit (see module doc).

    Thread-safe: the reading thread calls :meth:`read`, :meth:`rebalanced`, :meth:`unread`,
    :meth:`committable`, :meth:`committed` and :meth:`tried`; the threads running Works call :meth:`finished`.
    """

    def __init__(self, every: int = 1000, interval: float = 0.5) -> None:
        self.every = every
        self.interval = interval
        self._parts: dict[LogPartition, _Partition] = {}
        self._lock = threading.Lock()
        self._finished = 0
        self._last_commit = time.monotonic()

    def read(self, partition: LogPartition, offset: int) -> bool:
        """Record that the tailer returned ``offset``; False when that record is already running
        or finished here (read again after a rebalance or a seek): not to be run again."""
        with self._lock:
            part = self._parts.get(partition)
            if part is None:
                part = self._parts[partition] = _Partition()
            if part.base is None:
                # The first read since the (re)assignment is at the group's committed offset:
                # records before it are done for the group, whoever ran them.
                part.base = part.committed = offset
                part.epoch += 1
                part.pending = {o for o in part.pending if o >= offset}
                part.done = {o for o in part.done if o >= offset}
            part.next_read = offset + 1
            if offset in part.pending or offset in part.done:
                return False
            part.pending.add(offset)
            return True

    def finished(self, partition: LogPartition, offset: int) -> None:
        """The Work of the record at ``offset`` is done (ran, skipped, or put back in its queue)."""
        with self._lock:
            part = self._parts.get(partition)
            if part is None or offset not in part.pending:
                return  # read before a rebalance that moved the group's offset past it
            part.pending.discard(offset)
            part.done.add(offset)
            self._finished += 1

    def unread(self, partition: LogPartition, offset: int) -> bool:
        """Forget the record at ``offset`` (to read it again); True when the caller must seek the
        tailer back to it (False: a rebalance already moved the tailer to the committed offset)."""
        with self._lock:
            part = self._parts.get(partition)
            if part is None:
                return False
            part.pending.discard(offset)
            if part.base is None:
                return False
            part.next_read = offset
            return True

    def rebalanced(self) -> None:
        """The tailer's partitions changed: each one restarts from the group's committed offset."""
        with self._lock:
            for part in self._parts.values():
                part.base = None

    def due(self) -> bool:
        """Whether enough records finished, or enough time passed, since the last commit pass."""
        if not self._finished:
            return False
        return self._finished >= self.every or time.monotonic() - self._last_commit >= self.interval

    @property
    def dirty(self) -> bool:
        """Whether records finished since the last commit pass."""
        return self._finished > 0

    def committable(self, among: list[LogPartition] | None = None) -> list[LogPartition]:
        """Partitions (of ``among``, if given) whose read position can be committed now: read
        since their assignment, nothing in flight, and past their last commit."""
        with self._lock:
            return [
                p
                for p, part in self._parts.items()
                if (among is None or p in among)
                and part.base is not None
                and not part.pending
                and part.next_read > part.committed
            ]

    def committed(self, partition: LogPartition) -> None:
        """The read position of ``partition`` was committed."""
        with self._lock:
            part = self._parts[partition]
            part.committed = part.next_read
            part.done.clear()

    def tried(self) -> None:
        """A commit pass was made: count records and time from now."""
        with self._lock:
            self._finished = 0
            self._last_commit = time.monotonic()

    def positions(self) -> dict[LogPartition, int]:
        """The read position of each partition read since its assignment: records before it were
        read here (running, finished, or committed), records from it on were not."""
        with self._lock:
            return {p: part.next_read for p, part in self._parts.items() if part.base is not None}

    def epoch(self, partition: LogPartition) -> int:
        """How many times ``partition`` was (re)assigned and read (0: never read): what was learnt
        of it before the current assignment is to be learnt again."""
        with self._lock:
            part = self._parts.get(partition)
            return part.epoch if part is not None else 0

    def settled(self) -> dict[LogPartition, int]:
        """The partitions read since their assignment whose records read are all finished and
        committed, with their committed position."""
        with self._lock:
            return {
                p: part.committed
                for p, part in self._parts.items()
                if part.base is not None and not part.pending and part.committed == part.next_read
            }

    def forget(self, partition: LogPartition) -> None:
        """``partition`` is no longer the tailer's: wait for a new assignment before committing it."""
        with self._lock:
            part = self._parts.get(partition)
            if part is not None:
                part.base = None
