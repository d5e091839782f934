"""Computations: what a StreamProcessor runs on each record of its input streams."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from conveyor.errors import TopologyError
from conveyor.record import Record

if TYPE_CHECKING:
    from conveyor.stream.context import ComputationContext

__all__ = [
    "INPUT_1",
    "INPUT_2",
    "INPUT_3",
    "OUTPUT_1",
    "OUTPUT_2",
    "OUTPUT_3",
    "OUTPUT_4",
    "Computation",
    "ComputationFactory",
    "ComputationMetadata",
    "computation",
]

logger = logging.getLogger("conveyor.stream")

INPUT_1, INPUT_2, INPUT_3 = "i1", "i2", "i3"
OUTPUT_1, OUTPUT_2, OUTPUT_3, OUTPUT_4 = "o1", "o2", "o3", "o4"


@dataclass(frozen=True, slots=True)
class ComputationMetadata:
    """A computation's name and the local names of its input and output streams."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def _local_names(prefix: str, spec: int | Sequence[str], what: str, name: str) -> tuple[str, ...]:
    if isinstance(spec, bool):
        raise TopologyError(f"computation {name!r}: {what} must be a count or a list of names, got {spec!r}")
    if isinstance(spec, int):
        if spec < 0:
            raise TopologyError(f"computation {name!r}: {what} must be >= 0, got {spec}")
        return tuple(f"{prefix}{i}" for i in range(1, spec + 1))
    names = tuple(spec)
    if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
        raise TopologyError(f"computation {name!r}: {what} must be distinct non-empty names, got {names!r}")
    return names


class Computation:
    """A step of a topology: reads records from its inputs, produces records to its outputs.

    Subclass it and implement :meth:`process_record` (and :meth:`process_timer` if you set timers).
    Local stream names are ``i1..iN`` and ``o1..oN`` for ``inputs=N`` / ``outputs=N``, mapped to
    real streams by the :class:`~conveyor.stream.Topology`. One instance runs per thread; the
    processor calls ``init`` (again after a rebalance), then ``process_*`` from that thread only.

    Delivery is at-least-once: a record may be processed again after a crash or a failure that
    happened before its checkpoint, so processing should be idempotent by key where it matters.
    """

    def __init__(self, name: str, inputs: int | Sequence[str] = 1, outputs: int | Sequence[str] = 0) -> None:
        if not isinstance(name, str) or not name:
            raise TopologyError(f"a computation needs a non-empty name, got {name!r}")
        self._metadata = ComputationMetadata(
            name, _local_names("i", inputs, "inputs", name), _local_names("o", outputs, "outputs", name)
        )

    @property
    def metadata(self) -> ComputationMetadata:
        """Name and local stream names."""
        return self._metadata

    @property
    def name(self) -> str:
        """The computation name (also its consumer group)."""
        return self._metadata.name

    def init(self, context: ComputationContext) -> None:
        """Called in the runner thread before the first record (and after each rebalance)."""

    def process_record(self, context: ComputationContext, input_stream: str, record: Record) -> None:
        """Process one ``record`` read from ``input_stream`` (a local name such as ``i1``)."""
        raise NotImplementedError(f"computation {self.name!r} does not implement process_record")

    def process_timer(self, context: ComputationContext, key: str, timestamp: int) -> None:
        """A timer set with ``context.set_timer(key, timestamp)`` is due."""

    def process_retry(self, context: ComputationContext, error: BaseException) -> None:
        """A record failed and is about to be retried (default: log)."""
        logger.warning("computation %s: retrying after %s: %s", self.name, type(error).__name__, error)

    def process_failure(self, context: ComputationContext, error: BaseException) -> None:
        """A record failed for good (retries exhausted); called before skipping or stopping."""
        logger.error("computation %s: record failed: %s: %s", self.name, type(error).__name__, error)

    def signal_stop(self) -> None:
        """Called from another thread when the processor is stopping; return quickly."""

    def destroy(self) -> None:
        """Called in the runner thread when it stops."""

    def __repr__(self) -> str:
        m = self._metadata
        return f"{type(self).__name__}(name={m.name!r}, inputs={list(m.inputs)}, outputs={list(m.outputs)})"


ComputationFactory = Callable[[], Computation]
"""What a topology is built from: a zero-argument callable returning a new Computation."""

RecordFunction = Callable[[Record], "Record | Iterable[Record] | None"]


def computation(
    name: str, *, outputs: int = 1, checkpoint: bool = True
) -> Callable[[RecordFunction], type[Computation]]:
    """Turn a function ``record -> Record | iterable of Records | None`` into a Computation factory.

    The computation has one input; what the function returns is produced to ``o1`` (nothing when
    ``outputs=0`` or None is returned), then a checkpoint is asked unless ``checkpoint=False``::

        @computation("demo/upper")
        def upper(record: Record) -> Record:
            return Record(record.key, record.data.upper())

        Topology.builder().add_computation(upper, ["i1:demo/in", "o1:demo/out"]).build()
    """

    def decorate(function: RecordFunction) -> type[Computation]:
        def __init__(self: Computation) -> None:
            Computation.__init__(self, name, inputs=1, outputs=outputs)

        def process_record(
            self: Computation, context: ComputationContext, input_stream: str, record: Record
        ) -> None:
            result = function(record)
            if result is not None and outputs:
                produced = [result] if isinstance(result, Record) else list(result)
                for item in produced:
                    context.produce_record(OUTPUT_1, item)
            if checkpoint:
                context.ask_for_checkpoint()

        cls = type(
            getattr(function, "__name__", "FunctionComputation"),
            (Computation,),
            {
                "__init__": __init__,
                "process_record": process_record,
                "__doc__": function.__doc__,
                "__module__": getattr(function, "__module__", __name__),
                "__wrapped__": function,
            },
        )
        return cls

    return decorate
