"""``ComputationPool``: the threads of one computation and what they share (appenders, metrics)."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from conveyor.codec.api import Codec
from conveyor.log.api import LogAppender, LogManager
from conveyor.log.names import Name
from conveyor.log.types import LogPartition
from conveyor.stream.metrics import ComputationMetrics, ComputationStatus
from conveyor.stream.policy import ComputationPolicy
from conveyor.stream.topology import ComputationSpec

if TYPE_CHECKING:
    from conveyor.stream.runner import ComputationRunner

__all__ = ["ComputationPool", "group_of"]

logger = logging.getLogger("conveyor.stream")


def group_of(computation: str) -> Name:
    """The consumer group of a computation: its name as a urn (``bulk/scroller``), an id
    (``demo-upper`` -> ``demo/upper``) or a plain name."""
    if "/" in computation:
        return Name.of_urn(computation)
    if "-" in computation:
        return Name.of_id(computation)
    return Name.of_urn(computation)


class ComputationPool:
    """The runners (threads) of one computation, sharing its policy, appenders and counters."""

    def __init__(
        self,
        spec: ComputationSpec,
        log_manager: LogManager,
        policy: ComputationPolicy,
        threads: int,
        input_codec: Codec[Any] | str | None,
        output_codecs: dict[Name, Codec[Any] | str | None],
        dlq_codec: Codec[Any] | str | None,
        read_timeout_s: float,
        starving_timeout_s: float,
        no_assignment_warning_s: float = 60.0,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.group = group_of(spec.name)
        self.log_manager = log_manager
        self.policy = policy
        self.threads = threads
        self.input_codec = input_codec
        self.output_codecs = output_codecs
        self.dlq_codec = dlq_codec
        self.read_timeout_s = read_timeout_s
        self.starving_timeout_s = starving_timeout_s
        self.no_assignment_warning_s = no_assignment_warning_s
        self.metrics = ComputationMetrics(spec.name)
        self.runners: list[ComputationRunner] = []
        self.stop_event = threading.Event()
        self.drain_event = threading.Event()
        self._lock = threading.Lock()
        self._skipped_failures = 0
        self.error: BaseException | None = None
        self.started = False
        self.input_local = {stream: local for local, stream in spec.inputs.items()}
        # Since when no subscribed thread of this pool holds a partition (None: one does), and
        # whether that was reported; looked at no more than once per ``_next_assignment_check``.
        self._unassigned_since: float | None = None
        self._unassigned_warned = False
        self._next_assignment_check = 0.0

    # --- shared resources ---------------------------------------------------------------------

    def appender(self, stream: Name) -> LogAppender[Any]:
        """The appender of an output stream, with the stream's codec."""
        return self.log_manager.appender(stream, self.output_codecs.get(stream))

    def dlq_appender(self) -> LogAppender[Any] | None:
        """The appender of the dead-letter stream, if the policy has one."""
        if self.policy.dlq_stream is None:
            return None
        return self.log_manager.appender(Name.of_urn(self.policy.dlq_stream), self.dlq_codec)

    def take_skip_budget(self) -> bool:
        """True (and one less left) while fewer than ``skip_first_failures`` records were skipped."""
        with self._lock:
            if self._skipped_failures < self.policy.skip_first_failures:
                self._skipped_failures += 1
                return True
            return False

    def fail(self, error: BaseException) -> None:
        """A record failed for good without skip: stop every thread of the computation."""
        with self._lock:
            if self.error is None:
                self.error = error
        logger.error(
            "computation %s terminated on failure: %s: %s",
            self.name,
            type(error).__name__,
            error,
            extra={"computation": self.name},
        )
        self.stop_event.set()

    def watch_assignment(self) -> None:
        """Warn once when no subscribed thread of this computation in this process has held a
        partition for ``no_assignment_warning_s`` (the process reads nothing of its streams); say
        so again when one gets some. Threads without a partition while another of this process
        has one are normal (more threads than partitions) and not reported."""
        clock = time.monotonic()
        limit = self.no_assignment_warning_s
        with self._lock:
            if clock < self._next_assignment_check:
                return
            self._next_assignment_check = clock + min(1.0, limit / 4)
            subscribed = [r for r in self.runners if r.subscribe and r.alive]
            if not subscribed or any(r.in_outage for r in subscribed):
                return  # an outage is reported on its own (the log fails, not the assignment)
            if any(r.holds_partitions for r in subscribed):
                warned = self._unassigned_warned
                self._unassigned_since, self._unassigned_warned = None, False
                if not warned:
                    return
                report = "info"
            elif self._unassigned_since is None:
                self._unassigned_since = clock
                return
            elif self._unassigned_warned or clock - self._unassigned_since < limit:
                return
            else:
                self._unassigned_warned = True
                report = "warning"
                idle_for = clock - self._unassigned_since
        streams = ", ".join(sorted(stream.urn for stream in self.spec.inputs.values()))
        if report == "info":
            logger.info(
                "computation %s: consumer group %s now reads partitions of %s here",
                self.name,
                self.group.urn,
                streams,
                extra={"computation": self.name},
            )
            return
        logger.warning(
            "computation %s: none of the %d thread(s) of consumer group %s in this process has had a "
            "partition of %s (%s) for %.1f s: it reads nothing here; more consumers than partitions, "
            "or the group does not settle",
            self.name,
            len(subscribed),
            self.group.urn,
            streams,
            self._partition_counts(),
            idle_for,
            extra={"computation": self.name},
        )

    def _partition_counts(self) -> str:
        counts = []
        for stream in sorted(self.spec.inputs.values(), key=lambda n: n.urn):
            try:
                size: object = self.log_manager.size(stream)
            except Exception:  # only for a log line
                size = "?"
            counts.append(f"{size} partition(s)" if len(self.spec.inputs) == 1 else f"{stream.urn}: {size}")
        return ", ".join(counts)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self, assignments: list[list[LogPartition]] | None) -> None:
        """Start ``threads`` runners: with fixed partitions each, or subscribing (None)."""
        from conveyor.stream.runner import ComputationRunner

        self.runners = [
            ComputationRunner(self, index, None if assignments is None else assignments[index])
            for index in range(self.threads)
        ]
        self.started = True
        self._unassigned_since = time.monotonic()
        for runner in self.runners:
            runner.start()

    def signal_stop(self) -> None:
        """Ask every runner to stop after its current record."""
        self.stop_event.set()
        for runner in self.runners:
            runner.signal_stop()

    def join(self, timeout: float) -> bool:
        """Wait for every runner; False if one still runs after ``timeout`` seconds."""
        import time

        deadline = time.monotonic() + timeout
        for runner in self.runners:
            runner.join(max(0.0, deadline - time.monotonic()))
        return not any(runner.alive for runner in self.runners)

    @property
    def alive(self) -> bool:
        """True while a runner thread runs."""
        return any(runner.alive for runner in self.runners)

    def settled(self) -> bool:
        """True when no runner waits for a partition and no partition is read by two runners."""
        seen: set[LogPartition] = set()
        for runner in self.runners:
            if not runner.alive:
                continue
            partitions, pending = runner.holding()
            if pending or seen.intersection(partitions):
                return False
            seen.update(partitions)
        return True

    def low_watermark(self) -> int:
        """The lowest non-zero low watermark of the runners (0: nothing seen)."""
        values = [r.watermark.low.value for r in self.runners if r.watermark.low.value]
        return min(values) if values else 0

    def state(self) -> str:
        """``created``, ``running``, ``draining``, ``stopped``, ``terminated`` or ``failed``."""
        if self.error is not None:
            return "failed"
        if not self.started:
            return "created"
        if self.alive:
            return "draining" if self.drain_event.is_set() else "running"
        return "stopped" if self.stop_event.is_set() or self.drain_event.is_set() else "terminated"

    def status(self) -> ComputationStatus:
        """A snapshot of the computation's state and counters."""
        m = self.metrics
        return ComputationStatus(
            name=self.name,
            state=self.state(),
            threads=self.threads,
            running_threads=sum(1 for r in self.runners if r.alive),
            partitions=sum(len(r.partitions) for r in self.runners if r.alive),
            records=m.records,
            failures=m.failures,
            retries=m.retries,
            skipped=m.skipped,
            dead_letters=m.dead_letters,
            timers=m.timers,
            checkpoints=m.checkpoints,
            low_watermark=self.low_watermark(),
            last_error=m.last_error,
        )
