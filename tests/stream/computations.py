"""Computations used by the stream tests."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from conveyor.errors import NoRetryError
from conveyor.record import Record
from conveyor.stream import Computation, ComputationContext

FLUSH_MS = 30


class Split(Computation):
    """A sentence -> one record per word, keyed by the word."""

    def __init__(self) -> None:
        super().__init__("demo/split", inputs=1, outputs=1)

    def process_record(self, context: ComputationContext, input_stream: str, record: Record) -> None:
        for word in record.data.decode().split():
            context.produce_record("o1", word, word.encode())
        context.ask_for_checkpoint()


class Upper(Computation):
    """Upper-cases the data."""

    def __init__(self) -> None:
        super().__init__("demo/upper", inputs=1, outputs=1)

    def process_record(self, context: ComputationContext, input_stream: str, record: Record) -> None:
        context.produce_record("o1", Record(record.key.upper(), record.data.upper(), record.watermark))
        context.ask_for_checkpoint()


class Count(Computation):
    """Counts records per key in memory; a timer emits the counts since the last flush, then checkpoints."""

    def __init__(self) -> None:
        super().__init__("demo/count", inputs=1, outputs=1)
        self.counts: Counter[str] = Counter()

    def init(self, context: ComputationContext) -> None:
        self.counts = Counter()
        context.set_timer("flush", _now_ms() + FLUSH_MS)

    def process_record(self, context: ComputationContext, input_stream: str, record: Record) -> None:
        self.counts[record.key] += 1

    def process_timer(self, context: ComputationContext, key: str, timestamp: int) -> None:
        for word, count in sorted(self.counts.items()):
            context.produce_record("o1", word, str(count).encode())
        self.counts.clear()
        context.ask_for_checkpoint()
        context.set_timer("flush", _now_ms() + FLUSH_MS)


class Recorder(Computation):
    """Records what it sees (thread-safe); checkpoints when ``checkpoint(record)`` says so; may fail."""

    def __init__(
        self,
        seen: list[str],
        name: str = "test/recorder",
        checkpoint: Callable[[Record], bool] = lambda r: True,
        fail: Callable[[Record, int], BaseException | None] = lambda r, n: None,
        outputs: int = 0,
    ) -> None:
        super().__init__(name, inputs=1, outputs=outputs)
        self.seen = seen
        self.checkpoint = checkpoint
        self.fail = fail
        self.attempts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def process_record(self, context: ComputationContext, input_stream: str, record: Record) -> None:
        self.attempts[record.key] += 1
        error = self.fail(record, self.attempts[record.key])
        if error is not None:
            raise error
        with self.lock:
            self.seen.append(record.key)
        if self.metadata.outputs:
            context.produce_record("o1", record)
        if self.checkpoint(record):
            context.ask_for_checkpoint()


def fail_first(times: int) -> Callable[[Record, int], BaseException | None]:
    """Fail the first ``times`` attempts of key ``bad``."""
    return lambda r, n: ValueError(f"boom {n} on {r.key}") if r.key == "bad" and n <= times else None


def no_retry_on(key: str) -> Callable[[Record, int], BaseException | None]:
    """Fail ``key`` with NoRetryError."""
    return lambda r, n: NoRetryError(f"hopeless {r.key}") if r.key == key else None


def _now_ms() -> int:
    return int(time.time() * 1000)
