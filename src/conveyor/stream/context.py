"""``ComputationContext``: what a computation uses to produce records, checkpoint and set timers."""

from __future__ import annotations

from collections.abc import Mapping

from conveyor.errors import TopologyError
from conveyor.log.names import Name
from conveyor.log.types import LogOffset
from conveyor.record import Record
from conveyor.stream.policy import ComputationPolicy

__all__ = ["ComputationContext"]

_NO_TIMER = 1 << 62


class ComputationContext:
    """The per-thread context of a running computation (Nuxeo's ``ComputationContextImpl``).

    Produced records are buffered and appended only at the next checkpoint, which happens after
    the current record or timer when :meth:`ask_for_checkpoint` was called: records are sent, then
    input offsets committed, then the low watermark advanced. A record produced with watermark 0
    gets the computation's current low watermark when sent.
    """

    def __init__(
        self,
        name: str,
        outputs: Mapping[str, Name],
        policy: ComputationPolicy,
        spare: bool = False,
    ) -> None:
        self.name = name
        self._outputs = dict(outputs)
        self._by_urn = {stream.urn: stream for stream in self._outputs.values()}
        self._policy = policy
        self._spare = spare
        self._records: dict[Name, list[Record]] = {stream: [] for stream in self._outputs.values()}
        self._timers: dict[str, int] = {}
        # Epoch ms of the earliest timer, or lower (a removed timer leaves it early): one compare
        # per record tells the runner there is nothing to fire.
        self._next_timer = _NO_TIMER
        self._checkpoint = False
        self._terminate = False
        self._last_offset: LogOffset | None = None
        self._source_low_watermark = 0

    # --- for computations ---------------------------------------------------------------------

    def produce_record(self, stream: str, record_or_key: Record | str, data: bytes | None = None) -> None:
        """Buffer a record for the output ``stream`` (local name like ``o1``, or its urn).

        ``produce_record("o1", record)`` or ``produce_record("o1", key, data)``; the latter has
        watermark 0, replaced by the current low watermark when sent.
        """
        target = self._output(stream)
        if isinstance(record_or_key, Record):
            if data is not None:
                raise TypeError("produce_record(stream, record) takes no data argument")
            record = record_or_key
        else:
            record = Record(record_or_key, data or b"", watermark=0)
        self._records[target].append(record)

    def ask_for_checkpoint(self) -> None:
        """Checkpoint after the current record or timer: send produced records, commit offsets."""
        self._checkpoint = True

    def cancel_ask_for_checkpoint(self) -> None:
        """Forget a checkpoint asked during the current record or timer."""
        self._checkpoint = False

    def set_timer(self, key: str, timestamp_ms: int) -> None:
        """Call ``process_timer(context, key, timestamp_ms)`` once that time (epoch ms) has come.

        One timer per key (setting it again replaces it). Timers live in memory only: they are
        lost with the process (Nuxeo does the same), so the state they flush must be rebuildable
        from uncommitted input.
        """
        if not isinstance(key, str):
            raise TypeError(f"timer key must be str, got {type(key).__name__}")
        timestamp = int(timestamp_ms)
        self._timers[key] = timestamp
        self._next_timer = min(self._next_timer, timestamp)

    def remove_timer(self, key: str) -> None:
        """Cancel the timer of ``key`` if any."""
        self._timers.pop(key, None)

    def ask_for_termination(self) -> None:
        """Stop this computation thread after the current record or timer (checkpointing if asked)."""
        self._terminate = True

    def set_source_low_watermark(self, watermark: int) -> None:
        """For source computations: declare the low watermark of what they have produced."""
        self._source_low_watermark = int(watermark)

    @property
    def last_offset(self) -> LogOffset | None:
        """The offset of the record being processed (None before the first one)."""
        return self._last_offset

    @property
    def policy(self) -> ComputationPolicy:
        """The computation's policy."""
        return self._policy

    def is_spare_computation(self) -> bool:
        """True when this thread has no input partition: it gets no record and fires no timer."""
        return self._spare

    def records(self, stream: str) -> list[Record]:
        """The records buffered for ``stream`` since the last checkpoint."""
        return list(self._records[self._output(stream)])

    def timers(self) -> dict[str, int]:
        """The pending timers, key -> epoch ms."""
        return dict(self._timers)

    # --- for the runner -----------------------------------------------------------------------

    def _output(self, stream: str) -> Name:
        target = self._outputs.get(stream) or self._by_urn.get(stream)
        if target is None:
            known = ", ".join(f"{local} -> {n.urn}" for local, n in self._outputs.items()) or "none"
            raise TopologyError(
                f"computation {self.name!r} has no output stream {stream!r}; its outputs: {known}"
            )
        return target

    def _buffered(self) -> dict[Name, list[Record]]:
        return self._records

    def _buffer_size(self) -> int:
        return sum(len(records) for records in self._records.values())

    def _snapshot(self) -> list[int]:
        return [len(records) for records in self._records.values()]

    def _rollback(self, snapshot: list[int]) -> None:
        # A failed attempt must not leave its partial output behind for the retry to duplicate.
        for records, size in zip(self._records.values(), snapshot, strict=True):
            del records[size:]

    def _clear_records(self) -> None:
        for records in self._records.values():
            records.clear()

    def _due_timers(self, now_ms: int) -> list[tuple[str, int]]:
        due = sorted(((ts, key) for key, ts in self._timers.items() if ts <= now_ms))
        for _, key in due:
            del self._timers[key]
        self._next_timer = min(self._timers.values(), default=_NO_TIMER)
        return [(key, ts) for ts, key in due]

    def _take_checkpoint_request(self) -> bool:
        asked, self._checkpoint = self._checkpoint, False
        return asked

    @property
    def _termination_requested(self) -> bool:
        return self._terminate
