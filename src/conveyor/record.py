"""The unit carried by logs and computations: Nuxeo's ``Record``, its flags and ``Watermark``.

Bit layouts are Nuxeo's, so a record written by Conveyor reads the same in Nuxeo:

* flags are one byte, bit ``i`` = ``Flag`` ordinal ``i`` (DEFAULT=0x01 ... USER2=0x80);
* a watermark is ``timestamp_ms << 17 | (sequence & 0xFFFF) << 1 | completed``.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, field

__all__ = ["Flag", "Record", "Watermark"]


class Flag(enum.IntFlag):
    """Record flags; values are Nuxeo's bit positions in ``flagsAsByte``."""

    DEFAULT = 0x01
    COMMIT = 0x02
    POISON_PILL = 0x04
    EXTERNAL_VALUE = 0x08
    INTERNAL1 = 0x10
    INTERNAL2 = 0x20
    USER1 = 0x40
    USER2 = 0x80


_TIMESTAMP_SHIFT = 17
_SEQUENCE_MASK = 0xFFFF
_seq_lock = threading.Lock()
_last_now: list[int] = [0, 0]  # last timestamp, last sequence handed out by Watermark.of_now


@dataclass(frozen=True, slots=True, order=True)
class Watermark:
    """A point in event time: millisecond timestamp, a 16-bit sequence and a ``completed`` bit."""

    value: int

    LOWEST_VALUE = 0

    @classmethod
    def of_value(cls, value: int) -> Watermark:
        """The watermark encoded as ``value``."""
        return cls(int(value))

    @classmethod
    def of_timestamp(cls, timestamp_ms: int, sequence: int = 0) -> Watermark:
        """A not-completed watermark at ``timestamp_ms`` with ``sequence``."""
        if timestamp_ms < 0:
            raise ValueError(f"watermark timestamp must be >= 0, got {timestamp_ms}")
        return cls(timestamp_ms << _TIMESTAMP_SHIFT | (sequence & _SEQUENCE_MASK) << 1)

    @classmethod
    def of_now(cls) -> Watermark:
        """A watermark for now; successive calls in one millisecond get increasing sequences."""
        now = int(time.time() * 1000)
        with _seq_lock:
            if now <= _last_now[0]:
                now = _last_now[0]
                _last_now[1] = (_last_now[1] + 1) & _SEQUENCE_MASK
            else:
                _last_now[0], _last_now[1] = now, 0
            seq = _last_now[1]
        return cls.of_timestamp(now, seq)

    @classmethod
    def completed_of(cls, watermark: Watermark) -> Watermark:
        """The same point, marked completed."""
        return cls(watermark.value | 1)

    @property
    def timestamp(self) -> int:
        """Milliseconds since the epoch."""
        return self.value >> _TIMESTAMP_SHIFT

    @property
    def sequence(self) -> int:
        """The 16-bit sequence, as Java's signed ``short``."""
        seq = (self.value >> 1) & _SEQUENCE_MASK
        return seq - 0x10000 if seq >= 0x8000 else seq

    @property
    def completed(self) -> bool:
        """True when every record up to this point has been processed."""
        return self.value & 1 == 1

    def is_done(self, timestamp_ms: int) -> bool:
        """True when this watermark is past ``timestamp_ms`` (Nuxeo's ``isDone``)."""
        return Watermark.of_timestamp(timestamp_ms) < self

    def __repr__(self) -> str:
        return f"Watermark(timestamp={self.timestamp}, sequence={self.sequence}, completed={self.completed})"


Watermark.LOWEST = Watermark(0)  # type: ignore[attr-defined]


def _now_watermark() -> int:
    return Watermark.of_now().value


@dataclass(slots=True)
class Record:
    """A keyed message with a watermark and flags: what logs carry and computations exchange.

    ``data`` is never None (empty bytes instead), as in Nuxeo. ``trace_context`` and
    ``appender_thread`` exist for wire compatibility with Nuxeo and are usually None.
    """

    key: str
    data: bytes = b""
    watermark: int = field(default_factory=_now_watermark)
    flags: int = int(Flag.DEFAULT)
    trace_context: bytes | None = None
    appender_thread: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.key, str):
            raise TypeError(f"Record key must be str, got {type(self.key).__name__}")
        if self.data is None:
            self.data = b""
        elif isinstance(self.data, (bytearray, memoryview)):
            self.data = bytes(self.data)
        elif not isinstance(self.data, bytes):
            raise TypeError(f"Record data must be bytes, got {type(self.data).__name__}")
        if not 0 <= int(self.flags) <= 0xFF:
            raise ValueError(f"Record flags must fit in one byte, got {self.flags}")
        self.flags = int(self.flags)

    @classmethod
    def of(cls, key: str, data: bytes | None) -> Record:
        """A record stamped now with the DEFAULT flag."""
        return cls(key, data or b"")

    def has_flag(self, flag: Flag) -> bool:
        """True when ``flag`` is set."""
        return bool(self.flags & flag)

    @property
    def flags_as_byte(self) -> int:
        """The flags as Java's signed byte (what Nuxeo's Avro schema stores)."""
        return self.flags - 0x100 if self.flags >= 0x80 else self.flags

    def data_overview(self, max_len: int = 127) -> str:
        """A printable preview of the data, for logs and tools."""
        text = self.data[:max_len].decode("utf-8", errors="replace")
        return text + ("..." if len(self.data) > max_len else "")
