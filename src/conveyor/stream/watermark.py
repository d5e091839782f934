"""The low/high watermark of a computation (Nuxeo's ``WatermarkMonotonicInterval``).

``low`` is the point in event time up to which every record read has been checkpointed (it is
*completed* after a checkpoint), ``high`` the newest watermark seen since. The low watermark never
goes below the last checkpoint: a late record makes it not-completed, not older.
"""

from __future__ import annotations

import threading

from conveyor.record import Watermark

__all__ = ["WatermarkMonotonicInterval"]


class WatermarkMonotonicInterval:
    """Tracks the low and high watermarks of records between two checkpoints; thread-safe."""

    def __init__(self) -> None:
        self._low = Watermark(Watermark.LOWEST_VALUE)
        self._high = Watermark(Watermark.LOWEST_VALUE)
        self._lock = threading.Lock()

    def mark(self, watermark: Watermark | int) -> int:
        """Record that a record of ``watermark`` is being processed; the low watermark value."""
        wm = watermark if isinstance(watermark, Watermark) else Watermark(int(watermark))
        if wm.value == Watermark.LOWEST_VALUE:
            return self._low.value
        with self._lock:
            if self._low.value == Watermark.LOWEST_VALUE:
                self._low = self._high = wm
            elif wm < self._low:
                if self._low.completed:
                    # Checkpointed work cannot be undone: stay at the checkpoint, but not completed.
                    self._low = Watermark(self._low.value & ~1)
                else:
                    self._low = wm
            self._high = max(self._high, wm)
            return self._low.value

    def checkpoint(self) -> int:
        """Everything marked so far is done: low becomes the completed high. The new low value."""
        with self._lock:
            if self._high.value == Watermark.LOWEST_VALUE:
                return self._low.value
            self._low = Watermark.completed_of(self._high)
            self._high = self._low
            return self._low.value

    @property
    def low(self) -> Watermark:
        """The low watermark: every record before it is processed and checkpointed."""
        return self._low

    @property
    def high(self) -> Watermark:
        """The newest watermark seen."""
        return self._high

    def is_done(self, timestamp_ms: int) -> bool:
        """True when everything up to ``timestamp_ms`` is processed (the low watermark is past it)."""
        return self._low.is_done(timestamp_ms)

    def __repr__(self) -> str:
        return f"WatermarkMonotonicInterval(low={self._low!r}, high={self._high!r})"
