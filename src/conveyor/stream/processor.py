"""``StreamProcessor``: runs a topology's computations on a log manager, in threads."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from conveyor.codec.api import Codec
from conveyor.errors import ConfigurationError, StreamProcessorError
from conveyor.log.api import LogManager
from conveyor.log.names import Name
from conveyor.log.types import LogOffset, LogPartition
from conveyor.record import Record, Watermark
from conveyor.stream.metrics import ComputationStatus, Latency
from conveyor.stream.pool import ComputationPool
from conveyor.stream.settings import Settings
from conveyor.stream.topology import Topology

__all__ = ["StreamProcessor"]

logger = logging.getLogger("conveyor.stream")

LATENCY_GROUP = Name.of("admin", "latency")
STOP_GRACE_S = 1.0
RECORD_AT_TIMEOUT_S = 1.0


def _codec_name(codec: Codec[Any] | str | None) -> str | None:
    return codec if isinstance(codec, str) or codec is None else codec.name


class StreamProcessor:
    """Runs every computation of ``topology`` on ``log_manager`` (Nuxeo's ``StreamProcessor``).

    ``start()`` creates the streams that do not exist, then starts ``concurrency`` threads per
    computation, each owning a share of the computation's input partitions (or, with
    ``Settings(subscribe=True)``, sharing them with every process running the same topology).
    Delivery is at-least-once: a record is committed only after what it produced was appended.
    """

    def __init__(
        self,
        log_manager: LogManager,
        topology: Topology,
        settings: Settings | None = None,
        name: str = "default",
    ) -> None:
        if not isinstance(topology, Topology):
            raise ConfigurationError(f"StreamProcessor needs a Topology, got {type(topology).__name__}")
        self.log_manager = log_manager
        self.topology = topology
        self.settings = settings if settings is not None else Settings()
        self.name = name
        self._pools: dict[str, ComputationPool] = {}
        self._state = "created"
        self._lock = threading.Lock()

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> StreamProcessor:
        """Create missing streams and start every computation's threads."""
        with self._lock:
            if self._state != "created":
                raise StreamProcessorError(f"stream processor {self.name!r} is already {self._state}")
            self._state = "started"
        self._create_streams()
        subscribe = self._use_subscribe()
        for computation in self.topology.computation_names:
            pool = self._new_pool(computation)
            self._pools[computation] = pool
        for pool in self._pools.values():
            pool.start(None if subscribe else self._assign(pool))
        logger.info("stream processor %s started: %s", self.name, ", ".join(self._pools))
        return self

    def wait_for_assignments(self, timeout: float) -> bool:
        """Wait until every thread holds its partitions and the group is settled (no thread
        waits for a partition another still reads); False on timeout."""
        deadline = time.monotonic() + timeout
        for pool in self._pools.values():
            for runner in pool.runners:
                if not runner.assigned.wait(max(0.0, deadline - time.monotonic())):
                    return False
        # A thread that joined last was given partitions the others read until they notice it
        # (a local log's member looks every 50 ms): records they read meanwhile and did not
        # commit are read again by the newcomer.
        while not all(pool.settled() for pool in self._pools.values()):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return self._state != "created"

    def drain_and_stop(self, timeout: float) -> bool:
        """Stop once every input record is processed and committed; False if not done in ``timeout``.

        Computations are drained one after the other, upstream first, so a computation is drained
        only once nothing more can reach it. On timeout, every computation is stopped anyway.
        """
        deadline = time.monotonic() + timeout
        drained = True
        for computation in self.topology.computation_names:
            pool = self._pools.get(computation)
            if pool is None:
                continue
            pool.drain_event.set()
            if not pool.join(max(0.0, deadline - time.monotonic())):
                drained = False
                break
            if pool.error is not None:
                drained = False
        # Even past the deadline, give threads a moment to leave their loop after the stop signal.
        stopped = self.stop(max(STOP_GRACE_S, deadline - time.monotonic()))
        return drained and stopped

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop every thread after its current record (uncommitted input is read again next
        time); True when all stopped within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        for pool in self._pools.values():
            pool.signal_stop()
        ok = all(pool.join(max(0.0, deadline - time.monotonic())) for pool in self._pools.values())
        with self._lock:
            if self._state == "started":
                self._state = "stopped"
        return ok

    shutdown = stop

    def is_terminated(self) -> bool:
        """True once started and every thread has ended (stopped, drained, failed or terminated)."""
        return self._state != "created" and not any(pool.alive for pool in self._pools.values())

    def __enter__(self) -> StreamProcessor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- observation --------------------------------------------------------------------------

    def status(self) -> dict[str, ComputationStatus]:
        """Per computation: state, threads running, counters, low watermark, last error."""
        return {
            name: self._pools[name].status() if name in self._pools else _created(name)
            for name in self.topology.computation_names
        }

    def metrics(self) -> dict[str, dict[str, Any]]:
        """Per computation: the counters of :meth:`status` plus lag and latency (for /metrics)."""
        result: dict[str, dict[str, Any]] = {}
        for name, status in self.status().items():
            data = status.to_dict()
            data["lag"] = self.lag(name)
            data["latency_ms"] = self.latency(name).latency_ms
            result[name] = data
        return result

    def lag(self, computation: str) -> int:
        """Records of the computation's input streams not yet committed by its group."""
        group = self._group(computation)
        return sum(
            self.log_manager.lag(stream, group).lag for stream in self.topology.input_streams(computation)
        )

    def low_watermark(self, computation: str | None = None) -> int:
        """The low watermark value of ``computation``, or the lowest of all (0: nothing processed)."""
        if computation is not None:
            self.topology.spec(computation)
            pool = self._pools.get(computation)
            return pool.low_watermark() if pool is not None else 0
        values = [pool.low_watermark() for pool in self._pools.values()]
        values = [v for v in values if v]
        return min(values) if values else 0

    def is_done(self, timestamp_ms: int) -> bool:
        """True when every computation has processed everything up to ``timestamp_ms``."""
        low = self.low_watermark()
        return low != 0 and Watermark(low).is_done(timestamp_ms)

    def latency(self, computation: str) -> Latency:
        """The age of the oldest input record that ``computation`` has not committed yet."""
        group = self._group(computation)
        now = int(time.time() * 1000)
        oldest: tuple[int, str] | None = None
        total = 0
        for stream in self.topology.input_streams(computation):
            if not self.log_manager.exists(stream):
                continue
            for index, lag in enumerate(self.log_manager.lag_per_partition(stream, group)):
                if lag.lag == 0:
                    continue
                total += lag.lag
                found = self._record_at(LogOffset(LogPartition(stream, index), lag.lower_offset))
                if (
                    found is not None
                    and found.watermark
                    and (oldest is None or Watermark(found.watermark).timestamp < oldest[0])
                ):
                    oldest = (Watermark(found.watermark).timestamp, found.key)
        if total == 0 or oldest is None:
            return Latency(0, now, total, None)
        return Latency(oldest[0], now, total, oldest[1])

    def describe(self) -> str:
        """The topology and each computation's state, as text."""
        lines = [f"StreamProcessor {self.name!r} ({self._state})", self.topology.describe(), "Status:"]
        for name, status in self.status().items():
            lines.append(
                f"  {name}: {status.state}, threads {status.running_threads}/{status.threads}, "
                f"records {status.records}, failures {status.failures}"
                + (f", last error: {status.last_error}" if status.last_error else "")
            )
        return "\n".join(lines)

    # --- internals ----------------------------------------------------------------------------

    def _group(self, computation: str) -> Name:
        from conveyor.stream.pool import group_of

        self.topology.spec(computation)
        return group_of(computation)

    def _record_at(self, offset: LogOffset) -> Record | None:
        urn = offset.partition.name.urn
        with self._lock:
            tailer = self.log_manager.create_tailer(
                LATENCY_GROUP, offset.partition, self.settings.codec_of(urn)
            )
            try:
                tailer.seek(offset)
                # The record exists (the lag says so): wait long enough for a remote fetch.
                item = tailer.read(RECORD_AT_TIMEOUT_S)
            finally:
                tailer.close()
        message = item.message if item is not None else None
        return message if isinstance(message, Record) else None

    def _use_subscribe(self) -> bool:
        if self.settings.subscribe is None:
            return bool(
                self.log_manager.capabilities.multi_process and self.log_manager.capabilities.subscribe
            )
        return self.settings.subscribe

    def _create_streams(self) -> None:
        streams = set(self.topology.streams())
        for computation in self.topology.computation_names:
            dlq = self.settings.policy_of(computation).dlq_stream
            if dlq is not None:
                streams.add(Name.of_urn(dlq))
        for stream in sorted(streams, key=lambda n: n.urn):
            if self.settings.is_external(stream.urn):
                continue
            wanted = self.settings.partitions_of(stream.urn)
            if not self.log_manager.create_if_not_exists(stream, wanted):
                actual = self.log_manager.size(stream)
                if actual != wanted:
                    logger.info(
                        "stream %s exists with %d partitions (settings say %d): using %d",
                        stream.urn,
                        actual,
                        wanted,
                        actual,
                    )

    def _new_pool(self, computation: str) -> ComputationPool:
        spec = self.topology.spec(computation)
        codecs = {stream: self.settings.codec_of(stream.urn) for stream in spec.inputs.values()}
        names = {_codec_name(c) for c in codecs.values()}
        if len(names) > 1:
            raise ConfigurationError(
                f"computation {computation!r} reads streams with different codecs {sorted(map(str, names))}: "
                "one thread reads all its inputs with one codec"
            )
        policy = self.settings.policy_of(computation)
        dlq = policy.dlq_stream
        return ComputationPool(
            spec,
            self.log_manager,
            policy,
            self.settings.concurrency_of(computation),
            next(iter(codecs.values())) if codecs else None,
            {stream: self.settings.codec_of(stream.urn) for stream in spec.outputs.values()},
            self.settings.codec_of(dlq) if dlq is not None else None,
            self.settings.read_timeout_s,
            self.settings.starving_timeout_s,
            self.settings.no_assignment_warning_s,
        )

    def _assign(self, pool: ComputationPool) -> list[list[LogPartition]]:
        # Round robin over every input partition, as Kafka's RoundRobinAssignor.
        partitions = [
            LogPartition(stream, index)
            for stream in pool.spec.inputs.values()
            if self.log_manager.exists(stream)
            for index in range(self.log_manager.size(stream))
        ]
        shares: list[list[LogPartition]] = [[] for _ in range(pool.threads)]
        for position, partition in enumerate(partitions):
            shares[position % pool.threads].append(partition)
        return shares

    def __repr__(self) -> str:
        return f"StreamProcessor({self.name!r}, {self.topology.computation_names!r}, {self._state})"


def _created(name: str) -> ComputationStatus:
    return ComputationStatus(name, "created", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None)
