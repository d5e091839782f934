"""The stream computation framework (Nuxeo Stream's computation model).

A :class:`Topology` wires :class:`Computation` steps to streams (logs); a :class:`StreamProcessor`
runs it on a :class:`~conveyor.log.LogManager` with :class:`Settings` (threads, partitions,
codecs) and a :class:`ComputationPolicy` (retries, skip or stop, dead letters)::

    topology = Topology.builder().add_computation(Upper, ["i1:demo/in", "o1:demo/out"]).build()
    processor = StreamProcessor(log_manager, topology, Settings(concurrency=2, partitions=4))
    processor.start()
    processor.drain_and_stop(timeout=60)

Delivery is at-least-once. See ``docs/stream.md``.
"""

from __future__ import annotations

from conveyor.record import Flag, Record, Watermark
from conveyor.stream.batch import BatchComputation
from conveyor.stream.computation import (
    INPUT_1,
    INPUT_2,
    INPUT_3,
    OUTPUT_1,
    OUTPUT_2,
    OUTPUT_3,
    OUTPUT_4,
    Computation,
    ComputationFactory,
    ComputationMetadata,
    computation,
)
from conveyor.stream.context import ComputationContext
from conveyor.stream.deadletter import DeadLetter
from conveyor.stream.metrics import ComputationMetrics, ComputationStatus, Latency
from conveyor.stream.policy import ComputationPolicy
from conveyor.stream.pool import group_of
from conveyor.stream.processor import StreamProcessor
from conveyor.stream.settings import Settings
from conveyor.stream.topology import ComputationSpec, Topology, TopologyBuilder
from conveyor.stream.watermark import WatermarkMonotonicInterval

__all__ = [
    "INPUT_1",
    "INPUT_2",
    "INPUT_3",
    "OUTPUT_1",
    "OUTPUT_2",
    "OUTPUT_3",
    "OUTPUT_4",
    "BatchComputation",
    "Computation",
    "ComputationContext",
    "ComputationFactory",
    "ComputationMetadata",
    "ComputationMetrics",
    "ComputationPolicy",
    "ComputationSpec",
    "ComputationStatus",
    "DeadLetter",
    "Flag",
    "Latency",
    "Record",
    "Settings",
    "StreamProcessor",
    "Topology",
    "TopologyBuilder",
    "Watermark",
    "WatermarkMonotonicInterval",
    "computation",
    "group_of",
]
