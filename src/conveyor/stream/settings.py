"""``Settings``: threads per computation, partitions and codec per stream, policies."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.codec.api import Codec
from conveyor.errors import ConfigurationError
from conveyor.log.api import MAX_PARTITIONS
from conveyor.stream.policy import ComputationPolicy

__all__ = ["Settings"]

CodecSpec = Codec[Any] | str | None


def _check_count(what: str, value: object, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ConfigurationError(f"Settings: {what} must be an int between 1 and {maximum}, got {value!r}")


@dataclass(frozen=True)
class Settings:
    """How a StreamProcessor runs a topology (Nuxeo's ``Settings``); immutable.

    ``concurrency`` threads per computation and ``partitions`` per created stream by default,
    overridden per computation or stream; ``codec`` None means the log manager's default codec.
    ``subscribe`` shares partitions through ``LogManager.subscribe`` (rebalancing between
    processes) instead of a fixed split between this processor's threads; None chooses
    ``subscribe`` when the log backend is shared between processes (local, Kafka).
    ``external`` streams are neither created nor resized by the processor.
    """

    concurrency: int = 1
    partitions: int = 1
    policy: ComputationPolicy = field(default_factory=ComputationPolicy)
    codec: CodecSpec = None
    computation_concurrency: Mapping[str, int] = field(default_factory=dict)
    computation_policies: Mapping[str, ComputationPolicy] = field(default_factory=dict)
    stream_partitions: Mapping[str, int] = field(default_factory=dict)
    stream_codecs: Mapping[str, CodecSpec] = field(default_factory=dict)
    external: frozenset[str] = frozenset()
    subscribe: bool | None = False
    starving_timeout_s: float = 0.2
    """How long a draining computation must find no input before it stops (Nuxeo: 1 s)."""
    read_timeout_s: float = 0.025
    """Longest wait of one read, which bounds how fast a runner notices a stop or a timer."""
    no_assignment_warning_s: float = 60.0
    """When no subscribed thread of a computation in this process holds a partition for this long,
    one warning names its group and streams (more consumers than partitions, or a group that never
    settles); threads without a partition while another thread here has one are not reported."""

    def __post_init__(self) -> None:
        _check_count("concurrency", self.concurrency, 256)
        _check_count("partitions", self.partitions, MAX_PARTITIONS)
        if not isinstance(self.policy, ComputationPolicy):
            raise ConfigurationError(f"Settings: policy must be a ComputationPolicy, got {self.policy!r}")
        for name, value in self.computation_concurrency.items():
            _check_count(f"concurrency of {name!r}", value, 256)
        for name, value in self.stream_partitions.items():
            _check_count(f"partitions of {name!r}", value, MAX_PARTITIONS)
        for name, policy in self.computation_policies.items():
            if not isinstance(policy, ComputationPolicy):
                raise ConfigurationError(f"Settings: policy of {name!r} must be a ComputationPolicy")
        for label, seconds in (
            ("starving_timeout_s", self.starving_timeout_s),
            ("read_timeout_s", self.read_timeout_s),
            ("no_assignment_warning_s", self.no_assignment_warning_s),
        ):
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
                raise ConfigurationError(f"Settings: {label} must be > 0, got {seconds!r}")
        object.__setattr__(self, "external", frozenset(self.external))

    # --- lookups ------------------------------------------------------------------------------

    def concurrency_of(self, computation: str) -> int:
        """Threads of ``computation``."""
        return self.computation_concurrency.get(computation, self.concurrency)

    def policy_of(self, computation: str) -> ComputationPolicy:
        """Policy of ``computation``."""
        return self.computation_policies.get(computation, self.policy)

    def partitions_of(self, stream: str) -> int:
        """Partitions of ``stream`` (urn) when the processor creates it."""
        return self.stream_partitions.get(stream, self.partitions)

    def codec_of(self, stream: str) -> CodecSpec:
        """Codec of ``stream`` (urn); None: the log manager's default."""
        return self.stream_codecs.get(stream, self.codec)

    def is_external(self, stream: str) -> bool:
        """True when ``stream`` is managed outside the processor."""
        return stream in self.external

    # --- copies with one change ---------------------------------------------------------------

    def with_concurrency(self, computation: str, threads: int) -> Settings:
        """A copy where ``computation`` runs ``threads`` threads."""
        return dataclasses.replace(
            self, computation_concurrency={**self.computation_concurrency, computation: threads}
        )

    def with_policy(self, computation: str, policy: ComputationPolicy) -> Settings:
        """A copy where ``computation`` has ``policy``."""
        return dataclasses.replace(
            self, computation_policies={**self.computation_policies, computation: policy}
        )

    def with_partitions(self, stream: str, partitions: int) -> Settings:
        """A copy where ``stream`` is created with ``partitions`` partitions."""
        return dataclasses.replace(self, stream_partitions={**self.stream_partitions, stream: partitions})

    def with_codec(self, stream: str, codec: CodecSpec) -> Settings:
        """A copy where ``stream`` uses ``codec``."""
        return dataclasses.replace(self, stream_codecs={**self.stream_codecs, stream: codec})

    def with_external(self, stream: str) -> Settings:
        """A copy where ``stream`` is external (not created by the processor)."""
        return dataclasses.replace(self, external=self.external | {stream})
