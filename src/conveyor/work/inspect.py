"""What the records of the Work logs carry, read without the Work classes: for the stream tools.

``work/<queue>`` logs hold :class:`~conveyor.work.stream_state.WorkRecord` s and ``work/dlq``
:class:`~conveyor.work.codec.DeadLetter` s, neither of which is a :class:`~conveyor.record.Record`.
"""

from __future__ import annotations

import msgspec

from conveyor.log.positions import record_timestamp
from conveyor.work.codec import DeadLetter
from conveyor.work.stream_state import WorkRecord

__all__ = ["message_timestamp"]

_work_record = msgspec.msgpack.Decoder(WorkRecord)
_letters = (msgspec.json.Decoder(DeadLetter), msgspec.msgpack.Decoder(DeadLetter))


def message_timestamp(data: bytes, codec: str | None = None) -> int | None:
    """The time (epoch ms) of a stored message: a Record's watermark (``codec`` tried first), the
    time a Work record was written, or the time a dead letter failed; None for anything else."""
    found = record_timestamp(data, codec)
    if found is not None:
        return found
    try:
        return int(_work_record.decode(data).at * 1000)
    except Exception:  # not a Work record, whatever the bytes
        pass
    for decoder in _letters:
        try:
            letter = decoder.decode(data)
        except Exception:  # not a dead letter in this encoding
            continue
        return int(letter.failed_at * 1000) if letter.failed_at else None
    return None
