"""A StreamProcessor in its own process, for the kill -9 tests: ``python processor_child.py URL``.

Runs the two-computation topology ``proc/in -> proc/double -> proc/mid -> proc/inc -> proc/out``
(subscribing, so that every process running it shares the partitions) and prints:

- ``ready`` once its threads have subscribed;
- ``partitions DOUBLE=N INC=M`` when the partitions it owns change;
- ``processed COMPUTATION COUNT`` every :data:`REPORT_EVERY` records;

and runs until SIGTERM (then stops and exits 0).

A record ``(k, n)`` of ``proc/in`` ends up as ``(k, 2n + 1)`` in ``proc/out``: the output is a
function of the key, so that de-duplicating it by key gives exactly one right value per input.
"""

from __future__ import annotations

import signal
import sys
import threading
import time

from conveyor.log import open_log_manager
from conveyor.record import Record
from conveyor.stream import Computation, ComputationContext, Settings, StreamProcessor, Topology

IN, MID, OUT = "proc/in", "proc/mid", "proc/out"
DOUBLE, INC = "proc/double", "proc/inc"
PARTITIONS = 4
CODEC = "json"
CHECKPOINT_EVERY = 10
"""Records per checkpoint: at most this many are re-delivered per thread after a kill."""
FLUSH_MS = 50
"""A timer checkpoints what is left below ``CHECKPOINT_EVERY`` records (the tail of the stream)."""
REPORT_EVERY = 50
SLOW_S = 0.0005
"""Per-record pause of the first step, so that a few thousand records take seconds to process."""

_print_lock = threading.Lock()
_counts: dict[str, int] = {}


def say(line: str) -> None:
    """Print one whole line (threads share stdout)."""
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _processed(name: str) -> None:
    with _print_lock:
        count = _counts[name] = _counts.get(name, 0) + 1
    if count % REPORT_EVERY == 0:
        say(f"processed {name} {count}")


class Step(Computation):
    """Maps the data of each record (an int); checkpoints every ``CHECKPOINT_EVERY`` records and
    every ``FLUSH_MS``."""

    def __init__(self, name: str, pause_s: float) -> None:
        super().__init__(name, inputs=1, outputs=1)
        self.pause_s = pause_s
        self.count = 0

    def transform(self, value: int) -> int:
        """The output value for input ``value``."""
        raise NotImplementedError

    def init(self, context: ComputationContext) -> None:
        context.set_timer("flush", _now_ms() + FLUSH_MS)

    def process_timer(self, context: ComputationContext, key: str, timestamp: int) -> None:
        context.ask_for_checkpoint()
        context.set_timer("flush", _now_ms() + FLUSH_MS)

    def process_record(self, context: ComputationContext, input_stream: str, record: Record) -> None:
        if self.pause_s:
            time.sleep(self.pause_s)
        value = self.transform(int(record.data))
        context.produce_record("o1", Record(record.key, str(value).encode(), record.watermark))
        self.count += 1
        if self.count % CHECKPOINT_EVERY == 0:
            context.ask_for_checkpoint()
        _processed(self.metadata.name)


def _now_ms() -> int:
    return int(time.time() * 1000)


class Double(Step):
    """n -> 2n."""

    def __init__(self) -> None:
        super().__init__(DOUBLE, SLOW_S)

    def transform(self, value: int) -> int:
        return 2 * value


class Inc(Step):
    """n -> n + 1."""

    def __init__(self) -> None:
        super().__init__(INC, 0.0)

    def transform(self, value: int) -> int:
        return value + 1


def topology() -> Topology:
    """The two-step topology every process runs."""
    return (
        Topology.builder()
        .add_computation(Double, [f"i1:{IN}", f"o1:{MID}"])
        .add_computation(Inc, [f"i1:{MID}", f"o1:{OUT}"])
        .build()
    )


def main(url: str) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with open_log_manager(url, default_codec=CODEC) as manager:
        processor = StreamProcessor(
            manager, topology(), Settings(concurrency=1, partitions=PARTITIONS, subscribe=True)
        )
        processor.start()
        if not processor.wait_for_assignments(60):
            say("not assigned")
            return 1
        say("ready")
        owned = ""
        while not stop.wait(0.1):
            status = processor.status()
            now = " ".join(f"{name}={status[name].partitions}" for name in (DOUBLE, INC))
            if now != owned:
                owned = now
                say(f"partitions {owned}")
            if processor.is_terminated():
                say(f"terminated: {processor.describe()}")
                return 2
        return 0 if processor.stop(10) else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
