"""Dead letters: a record that failed for good, with the error, as appended to a DLQ stream."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from conveyor.errors import CodecError
from conveyor.record import Record

__all__ = ["DeadLetter"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A failed record and why it failed. On the DLQ stream it is a Record with the same key,
    watermark and flags as the original, whose data is this JSON object (the original data in
    base64), so it can be inspected with ``conveyor stream cat`` and replayed with :meth:`original`.
    """

    computation: str
    input_stream: str
    offset: str | None
    error_type: str
    error: str
    traceback: str
    attempts: int
    record: Record

    def to_record(self) -> Record:
        """The Record appended to the dead-letter stream."""
        body = {
            "computation": self.computation,
            "input_stream": self.input_stream,
            "offset": self.offset,
            "error_type": self.error_type,
            "error": self.error,
            "traceback": self.traceback,
            "attempts": self.attempts,
            "data": base64.b64encode(self.record.data).decode("ascii"),
        }
        return Record(
            self.record.key,
            json.dumps(body, sort_keys=True).encode(),
            watermark=self.record.watermark,
            flags=self.record.flags,
        )

    @classmethod
    def from_record(cls, record: Record) -> DeadLetter:
        """Parse a Record read from a dead-letter stream; ``CodecError`` if it is not one."""
        try:
            body = json.loads(record.data)
            original = Record(
                record.key, base64.b64decode(body["data"]), watermark=record.watermark, flags=record.flags
            )
            return cls(
                computation=str(body["computation"]),
                input_stream=str(body["input_stream"]),
                offset=body.get("offset"),
                error_type=str(body["error_type"]),
                error=str(body["error"]),
                traceback=str(body["traceback"]),
                attempts=int(body["attempts"]),
                record=original,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CodecError(f"record {record.key!r} is not a dead letter: {exc}") from exc

    def original(self) -> Record:
        """The record as it was before failing (to append it again to its input stream)."""
        return self.record
