"""Per-computation counters, the status a processor reports, and latency."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ComputationMetrics", "ComputationStatus", "Latency"]


class ComputationMetrics:
    """Counters shared by the threads of one computation (Nuxeo's ``nuxeo.streams.computation.*``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self.records = 0
        self.failures = 0
        self.retries = 0
        self.skipped = 0
        self.dead_letters = 0
        self.timers = 0
        self.checkpoints = 0
        self.process_seconds = 0.0
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    def processed(self, seconds: float) -> None:
        """One record processed in ``seconds``."""
        with self._lock:
            self.records += 1
            self.process_seconds += seconds

    def add(self, counter: str, amount: int = 1) -> None:
        """Add to ``retries``, ``skipped``, ``dead_letters``, ``timers`` or ``checkpoints``."""
        with self._lock:
            setattr(self, counter, getattr(self, counter) + amount)

    def failed(self, error: BaseException) -> None:
        """A record failed for good."""
        with self._lock:
            self.failures += 1
            self.last_error = f"{type(error).__name__}: {error}"
            self.last_error_at = time.time()

    def note_error(self, error: BaseException) -> None:
        """An error that failed no record (a full disk the computation waits out): ``last_error`` only."""
        with self._lock:
            self.last_error = f"{type(error).__name__}: {error}"
            self.last_error_at = time.time()


@dataclass(frozen=True, slots=True)
class ComputationStatus:
    """What ``StreamProcessor.status()`` says about one computation."""

    name: str
    state: str
    """``created``, ``running``, ``draining``, ``stopped``, ``terminated`` (asked to) or ``failed``."""
    threads: int
    running_threads: int
    partitions: int
    """Input partitions currently assigned to this processor's threads."""
    records: int
    failures: int
    retries: int
    skipped: int
    dead_letters: int
    timers: int
    checkpoints: int
    low_watermark: int
    last_error: str | None

    @property
    def running(self) -> bool:
        """True while at least one thread runs."""
        return self.running_threads > 0

    def to_dict(self) -> dict[str, Any]:
        """As plain data (for JSON and the web layer)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Latency:
    """How far behind a computation is: the age of its oldest input record not yet committed.

    ``lower_ms`` is the watermark timestamp of that record, ``upper_ms`` when it was measured,
    ``lag`` the records waiting, ``key`` the key of that oldest record. No lag: latency 0.
    """

    lower_ms: int
    upper_ms: int
    lag: int
    key: str | None = None

    @property
    def latency_ms(self) -> int:
        """Milliseconds between the oldest waiting record and the measure (0 without lag)."""
        if self.lag == 0 or self.lower_ms == 0:
            return 0
        return max(0, self.upper_ms - self.lower_ms)
