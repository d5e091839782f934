"""Value types of the log layer: partitions, offsets, records, lags, rebalance listeners."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Generic, NamedTuple, Protocol, TypeVar

from conveyor.log.names import Name

M = TypeVar("M")

__all__ = ["LogLag", "LogOffset", "LogPartition", "LogRecord", "RebalanceListener", "java_string_hash"]


class LogPartition(NamedTuple):
    """Partition ``partition`` of the log ``name``.

    Value types of the log layer are named tuples: immutable, hashable, ordered, and cheap to
    create on the per-record hot path (a frozen dataclass costs twice as much).
    """

    name: Name
    partition: int

    @classmethod
    def of(cls, name: Name | str, partition: int) -> LogPartition:
        """The partition of ``name`` (a Name or an urn)."""
        return cls(Name.coerce(name), partition)

    def __str__(self) -> str:
        return f"{self.name.id}-{self.partition:02d}"


class LogOffset(NamedTuple):
    """A position in a partition: ``offset`` is the index of a record (dense from 0 on local logs)."""

    partition: LogPartition
    offset: int

    def next_offset(self) -> LogOffset:
        """The position right after this one."""
        return LogOffset(self.partition, self.offset + 1)

    def __str__(self) -> str:
        return f"{self.partition}:+{self.offset}"


class LogRecord(NamedTuple, Generic[M]):
    """A message read from a log, with its position."""

    message: M
    offset: LogOffset


@dataclass(frozen=True, slots=True)
class LogLag:
    """How far a consumer group is behind the end of a partition (or of a log, summed).

    ``lower_offset`` is the group's committed position (next record to read), ``upper_offset`` the
    end offset (next record to be written), ``lag`` the records between them, ``upper`` the records
    up to the end. ``lower`` is ``upper - lag``, the records already consumed.
    """

    lower_offset: int
    upper_offset: int
    lag: int
    upper: int

    @property
    def lower(self) -> int:
        """Records already consumed by the group."""
        return self.upper - self.lag

    @classmethod
    def of(cls, lower_offset: int, upper_offset: int) -> LogLag:
        """The lag of a dense partition between a committed position and the end."""
        lag = max(0, upper_offset - lower_offset)
        return cls(lower_offset, upper_offset, lag, upper_offset)

    @classmethod
    def of_lag(cls, lag: int) -> LogLag:
        """A lag of ``lag`` records, with no position information."""
        return cls(0, lag, lag, lag)

    @classmethod
    def total(cls, lags: Sequence[LogLag]) -> LogLag:
        """Nuxeo's ``LogLag.of(list)``: summed lag and upper, max upper offset, min non-zero lower offset."""
        if not lags:
            return cls(0, 0, 0, 0)
        lowers = [lag.lower_offset for lag in lags if lag.lower_offset > 0]
        return cls(
            min(lowers) if lowers else 0,
            max(lag.upper_offset for lag in lags),
            sum(lag.lag for lag in lags),
            sum(lag.upper for lag in lags),
        )


class RebalanceListener(Protocol):
    """Told when a subscribed tailer's partitions change (called from inside ``read``)."""

    def on_partitions_revoked(self, partitions: Collection[LogPartition]) -> None:
        """These partitions are no longer ours; offsets were committed if the tailer committed them."""

    def on_partitions_assigned(self, partitions: Collection[LogPartition]) -> None:
        """These partitions are now ours; reading resumes at the group's committed offsets."""

    def on_partitions_lost(self, partitions: Collection[LogPartition]) -> None:
        """These partitions were taken away without a clean revoke (by default: same as revoked)."""


def java_string_hash(value: str) -> int:
    """Java's ``String.hashCode`` of ``value`` (over UTF-16 code units, 32-bit signed)."""
    h = 0
    if value.isascii():
        for ch in value.encode("ascii"):
            h = (31 * h + ch) & 0xFFFFFFFF
    else:
        data = value.encode("utf-16-be")
        for i in range(0, len(data), 2):
            h = (31 * h + (data[i] << 8 | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= (1 << 31) else h


def partition_for_key(key: str, partitions: int) -> int:
    """The partition Nuxeo routes ``key`` to: ``(hashCode & 0x7fffffff) % partitions``."""
    return (java_string_hash(key) & 0x7FFFFFFF) % partitions
