"""What a computation does with a failing record: retries, backoff, skip or stop, dead letters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from conveyor.errors import ConfigurationError, NoRetryError
from conveyor.log.names import Name

__all__ = ["ComputationPolicy"]


@dataclass(frozen=True, slots=True)
class ComputationPolicy:
    """Nuxeo's ``ComputationPolicy``: batching, retry with exponential backoff, and failure handling.

    A record whose processing raises is retried up to ``max_retries`` times, waiting ``delay_s``,
    then twice as long each time, at most ``max_delay_s``. When retries are exhausted (or the error
    is a :class:`~conveyor.errors.NoRetryError`) the record goes to ``dlq_stream`` when one is set,
    then it is skipped when ``continue_on_failure``, or when fewer than ``skip_first_failures``
    records were skipped so far; otherwise the computation stops, without committing the record
    (a restart reads it again).
    """

    batch_capacity: int = 1
    """Records per batch, for :class:`~conveyor.stream.BatchComputation`."""
    batch_threshold_s: float = 1.0
    """Longest wait before a partial batch is processed, for batch computations."""
    max_retries: int = 0
    delay_s: float = 1.0
    max_delay_s: float = 10.0
    continue_on_failure: bool = False
    skip_first_failures: int = 0
    dlq_stream: str | None = None
    """Urn of the dead-letter stream (``ns/name``); None: no dead letters."""
    retry_on: tuple[type[BaseException], ...] = field(default=(Exception,))
    """Errors worth retrying; anything else fails the record at once."""
    abort_on: tuple[type[BaseException], ...] = field(default=(NoRetryError,))
    """Errors that fail the record at once even when they match ``retry_on``."""
    skip_undecodable: bool = False
    """A record its codec cannot decode goes to ``dlq_stream`` (when set) and is skipped once its
    retries are spent, even when ``continue_on_failure`` is False (Kafka Streams' log-and-continue
    deserialization handler): no processing can ever succeed on those bytes, and stopping would halt
    every record behind it. False: it fails like any other record."""

    NONE: ClassVar[ComputationPolicy]
    """No retry, stop on the first failure (Nuxeo's ``ComputationPolicy.NONE``)."""

    def __post_init__(self) -> None:
        def check_int(field_name: str, value: object, minimum: int) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigurationError(
                    f"ComputationPolicy.{field_name} must be an int >= {minimum}, got {value!r}"
                )

        def check_seconds(field_name: str, value: object, positive: bool = False) -> None:
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or value < 0
                or (positive and value == 0)
            ):
                bound = "> 0" if positive else ">= 0"
                raise ConfigurationError(
                    f"ComputationPolicy.{field_name} must be a number of seconds {bound}, got {value!r}"
                )

        check_int("batch_capacity", self.batch_capacity, 1)
        check_int("max_retries", self.max_retries, 0)
        check_int("skip_first_failures", self.skip_first_failures, 0)
        check_seconds("batch_threshold_s", self.batch_threshold_s, positive=True)
        check_seconds("delay_s", self.delay_s)
        check_seconds("max_delay_s", self.max_delay_s)
        if self.max_delay_s < self.delay_s:
            raise ConfigurationError(
                f"ComputationPolicy.max_delay_s ({self.max_delay_s}) must be >= delay_s ({self.delay_s})"
            )
        if self.continue_on_failure and self.skip_first_failures:
            raise ConfigurationError(
                "ComputationPolicy: skip_first_failures only applies when continue_on_failure is False "
                f"(got continue_on_failure=True, skip_first_failures={self.skip_first_failures})"
            )
        if self.dlq_stream is not None:
            if not isinstance(self.dlq_stream, str):
                raise ConfigurationError(
                    f"ComputationPolicy.dlq_stream must be a stream urn, got {self.dlq_stream!r}"
                )
            Name.of_urn(self.dlq_stream)

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based): exponential, capped."""
        return float(min(self.delay_s * (2 ** max(0, attempt - 1)), self.max_delay_s))

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """True when ``error`` raised by attempt number ``attempt`` (1-based) deserves another try."""
        if attempt > self.max_retries:
            return False
        if isinstance(error, self.abort_on):
            return False
        return isinstance(error, self.retry_on)


ComputationPolicy.NONE = ComputationPolicy()
