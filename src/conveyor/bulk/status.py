"""``BulkStatus``: where a bulk command is, and the deltas that move it (Nuxeo's ``BulkStatus``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from conveyor.errors import BulkDecodeError, BulkError

__all__ = ["TERMINAL_STATES", "BulkState", "BulkStatus", "StatusDelta", "now"]


class BulkState(StrEnum):
    """The states of a bulk command, in Nuxeo's order."""

    UNKNOWN = "UNKNOWN"
    SCHEDULED = "SCHEDULED"
    SCROLLING_RUNNING = "SCROLLING_RUNNING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    ABORTED = "ABORTED"


TERMINAL_STATES = frozenset({BulkState.COMPLETED, BulkState.ABORTED})

_TIMES = (
    "submit_time",
    "scroll_start_time",
    "scroll_end_time",
    "processing_start_time",
    "processing_end_time",
    "completed_time",
)


def now() -> datetime:
    """The current time, UTC-aware, to the millisecond (what statuses store)."""
    ms = int(datetime.now(UTC).timestamp() * 1000)
    return datetime.fromtimestamp(ms / 1000, UTC)


def _ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def _from_ms(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(int(value) / 1000, UTC)


@dataclass
class BulkStatus:
    """The status of one bulk command.

    A *full* status lives in the ``bulk`` KV store; a *delta* (``delta=True``) is a change sent on
    ``bulk/status`` and merged into it: counters are added, times overwritten (processing start and
    end: min and max), and a delta state of UNKNOWN changes nothing. ``processed`` counts every id
    the action was given, including those in error (``error_count``); ``skip_count`` the ids
    skipped. Times are UTC-aware datetimes (None: not reached yet).
    """

    command_id: str
    state: BulkState = BulkState.UNKNOWN
    action: str | None = None
    username: str | None = None
    delta: bool = False
    processed: int = 0
    skip_count: int = 0
    error_count: int = 0
    error_message: str | None = None
    total: int = 0
    query_limit_reached: bool = False
    result: dict[str, Any] = field(default_factory=dict)
    submit_time: datetime | None = None
    scroll_start_time: datetime | None = None
    scroll_end_time: datetime | None = None
    processing_start_time: datetime | None = None
    processing_end_time: datetime | None = None
    completed_time: datetime | None = None
    processing_duration_ms: int = 0

    # --- factories ---------------------------------------------------------------------------

    @classmethod
    def unknown_of(cls, command_id: str) -> BulkStatus:
        """The status of a command nobody knows (never submitted, or expired)."""
        return cls(command_id, BulkState.UNKNOWN)

    @classmethod
    def delta_of(cls, command_id: str, **changes: Any) -> BulkStatus:
        """A delta for ``command_id`` with ``changes`` (field names of this class)."""
        return cls(command_id, delta=True, **changes)

    # --- queries -----------------------------------------------------------------------------

    @property
    def is_completed(self) -> bool:
        """True once COMPLETED or ABORTED."""
        return self.state in TERMINAL_STATES

    @property
    def has_error(self) -> bool:
        """True when some ids (or the scroll) failed."""
        return self.error_count > 0

    @property
    def is_fully_processed(self) -> bool:
        """Scrolling ended and every scrolled id was processed (or skipped)."""
        return self.scroll_end_time is not None and self.processed + self.skip_count >= self.total

    # --- merging -----------------------------------------------------------------------------

    def merge(self, delta: BulkStatus) -> None:
        """Merge ``delta`` into this full status (Nuxeo's ``BulkStatus.merge``)."""
        if delta.command_id != self.command_id:
            raise BulkError(f"cannot merge a delta of {delta.command_id!r} into {self.command_id!r}")
        if delta.state is not BulkState.UNKNOWN and not self.is_completed:
            self.state = delta.state
        self.action = self.action or delta.action
        self.username = self.username or delta.username
        self.processed += delta.processed
        self.skip_count += delta.skip_count
        if delta.error_count:
            self.error_count += delta.error_count
            self.error_message = self.error_message or delta.error_message
        for name in ("submit_time", "scroll_start_time", "completed_time"):
            value = getattr(delta, name)
            if value is not None:
                setattr(self, name, value)
        if delta.scroll_end_time is not None:
            self.scroll_end_time = delta.scroll_end_time
            self.total = delta.total
            self.query_limit_reached = delta.query_limit_reached
        start, end = delta.processing_start_time, delta.processing_end_time
        if start is not None:
            current = self.processing_start_time
            self.processing_start_time = start if current is None else min(current, start)
        if end is not None:
            current = self.processing_end_time
            self.processing_end_time = end if current is None else max(current, end)
        if start is not None and end is not None:
            self.processing_duration_ms += max(0, _ms(end) - _ms(start))  # type: ignore[operator]
        if delta.result:
            self.result = dict(delta.result)

    def copy(self) -> BulkStatus:
        """An independent copy."""
        return replace(self, result=dict(self.result))

    # --- encoding ----------------------------------------------------------------------------

    def to_data(self) -> dict[str, Any]:
        """JSON-able data with times as epoch milliseconds (how statuses are stored and sent)."""
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _TIMES:
                value = _ms(value)
            elif f.name == "state":
                value = value.value
            data[f.name] = value
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> BulkStatus:
        """The status from :meth:`to_data`; unknown keys are ignored."""
        known: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if f.name in _TIMES:
                value = _from_ms(value)
            elif f.name == "state":
                value = BulkState(value)
            known[f.name] = value
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        """The status for people and REST clients: times as ISO 8601 strings, state as a string."""
        data = self.to_data()
        for name in _TIMES:
            value = getattr(self, name)
            data[name] = None if value is None else value.isoformat()
        return data

    def encode(self) -> bytes:
        """JSON bytes of :meth:`to_data`."""
        return json.dumps(self.to_data(), ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> BulkStatus:
        """The status from :meth:`encode` bytes."""
        try:
            return cls.from_data(json.loads(data))
        except (ValueError, TypeError, KeyError) as exc:
            raise BulkDecodeError(f"invalid bulk status bytes: {exc}") from exc


@dataclass
class StatusDelta:
    """What travels on ``bulk/status``: a delta plus the bucket it accounts for.

    ``bucket`` numbers the bucket whose processing the delta reports, so that a bucket processed
    twice (at-least-once delivery) is counted once; ``bucket_count`` is set by the scroller's last
    delta (how many buckets it produced).
    """

    status: BulkStatus
    bucket: int | None = None
    bucket_count: int | None = None

    def encode(self) -> bytes:
        """JSON bytes."""
        data = {"status": self.status.to_data(), "bucket": self.bucket, "bucket_count": self.bucket_count}
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> StatusDelta:
        """The delta from :meth:`encode` bytes."""
        try:
            loaded = json.loads(data)
            return cls(
                BulkStatus.from_data(loaded["status"]), loaded.get("bucket"), loaded.get("bucket_count")
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise BulkDecodeError(f"invalid bulk status delta bytes: {exc}") from exc
