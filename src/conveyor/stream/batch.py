"""``BatchComputation``: process records in batches (Nuxeo's ``AbstractBatchComputation``)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from conveyor.record import Record
from conveyor.stream.computation import Computation
from conveyor.stream.context import ComputationContext

__all__ = ["BatchComputation"]

TIMER_BATCH = "batch"


class BatchComputation(Computation):
    """Accumulates records and calls :meth:`batch_process` with a list of them when the policy's
    ``batch_capacity`` is reached, when ``batch_threshold_s`` has passed, or when the input
    stream changes; checkpoints after each batch. A failing batch calls :meth:`batch_failure`
    and then fails like a record, under the computation's policy.
    """

    def __init__(self, name: str, inputs: int | Sequence[str] = 1, outputs: int | Sequence[str] = 0) -> None:
        super().__init__(name, inputs, outputs)
        self._batch: list[Record] = []
        self._batch_stream: str | None = None
        self._capacity = 1
        self._threshold_ms = 1000

    def init(self, context: ComputationContext) -> None:
        """Read the batch policy and arm the batch timer."""
        self._batch = []
        self._batch_stream = None
        self._capacity = context.policy.batch_capacity
        self._threshold_ms = int(context.policy.batch_threshold_s * 1000)
        context.set_timer(TIMER_BATCH, _now_ms() + self._threshold_ms)

    def batch_process(self, context: ComputationContext, input_stream: str, records: list[Record]) -> None:
        """Process a batch of records read from ``input_stream``."""
        raise NotImplementedError(f"batch computation {self.name!r} does not implement batch_process")

    def batch_failure(self, context: ComputationContext, input_stream: str, records: list[Record]) -> None:
        """A batch failed (called before the error goes to the policy)."""

    def process_record(self, context: ComputationContext, input_stream: str, record: Record) -> None:
        """Add ``record`` to the batch, processing the batch when full or when the stream changes."""
        if self._batch_stream is not None and input_stream != self._batch_stream:
            self._flush(context)
        self._batch_stream = input_stream
        self._batch.append(record)
        if len(self._batch) >= self._capacity:
            self._flush(context)

    def process_timer(self, context: ComputationContext, key: str, timestamp: int) -> None:
        """Process the partial batch when the threshold has passed, then re-arm the timer."""
        if key == TIMER_BATCH:
            if self._batch:
                self._flush(context)
            context.set_timer(TIMER_BATCH, _now_ms() + self._threshold_ms)

    def process_failure(self, context: ComputationContext, error: BaseException) -> None:
        """The batch failed for good: drop it (skipped with its last record, or re-read after a stop)."""
        self._batch, self._batch_stream = [], None
        super().process_failure(context, error)

    def _flush(self, context: ComputationContext) -> None:
        records, stream = self._batch, self._batch_stream or ""
        self._batch, self._batch_stream = [], None
        try:
            self.batch_process(context, stream, records)
        except Exception:
            # Put the batch back so a retry of the last record processes all of it again.
            self._batch, self._batch_stream = records[:-1], stream
            self.batch_failure(context, stream, records)
            raise
        context.ask_for_checkpoint()


def _now_ms() -> int:
    return int(time.time() * 1000)
