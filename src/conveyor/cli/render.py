"""Rendering records readably for the stream tools: decode with the first codec that fits."""

from __future__ import annotations

import datetime as dt
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.log.positions import RECORD_CODECS
from conveyor.record import Flag, Record, Watermark

__all__ = [
    "decode_any",
    "describe_dead_letter",
    "describe_message",
    "describe_raw",
    "describe_record",
    "describe_work_record",
]


def decode_any(data: bytes, preferred: str | None = None) -> tuple[str, Any]:
    """(codec name, Record) for the first codec that decodes ``data``, else ("bytes", data)."""
    from conveyor.codec import get_codec

    names = ([preferred] if preferred else []) + [n for n in RECORD_CODECS if n != preferred]
    for name in names:
        try:
            return name, get_codec(name).decode(data)
        except (ConveyorError, ImportError):
            continue
    return "bytes", data


def flag_names(flags: int) -> str:
    """``DEFAULT|COMMIT`` for a flags byte."""
    return "|".join(f.name or "" for f in Flag if flags & f) or "-"


def describe_record(data: bytes, preferred: str | None = None, max_data: int = 80) -> dict[str, str]:
    """A dict of printable fields for one stored message."""
    codec, value = decode_any(data, preferred)
    if isinstance(value, Record):
        watermark = Watermark.of_value(value.watermark)
        when = dt.datetime.fromtimestamp(watermark.timestamp / 1000, tz=dt.UTC).isoformat(
            timespec="milliseconds"
        )
        return {
            "codec": codec,
            "key": value.key,
            "watermark": f"{when} seq={watermark.sequence}{' completed' if watermark.completed else ''}",
            "flags": flag_names(value.flags),
            "data": value.data_overview(max_data),
            "size": str(len(value.data)),
        }
    raw = bytes(value) if isinstance(value, (bytes, bytearray)) else repr(value).encode()
    preview = raw[:max_data].decode("utf-8", errors="replace")
    return {"codec": codec, "key": "", "watermark": "", "flags": "", "data": preview, "size": str(len(raw))}


# --- Works in work/<queue> logs and dead letters in work/dlq --------------------------------------

WORK_NAMESPACE = "work"
DEAD_LETTERS = "work/dlq"


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).isoformat(timespec="milliseconds")


def _envelope(data: bytes) -> dict[str, Any] | None:
    """A Work as encoded by the Work codec (json or msgpack), as plain data, without its class."""
    import msgspec

    try:
        value = (msgspec.json if data[:1] == b"{" else msgspec.msgpack).decode(data)
    except Exception:  # whatever the bytes: None says they are not a Work
        return None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return None
    return value


def _work_fields(data: bytes) -> dict[str, Any]:
    """type, id, fields (and document, scheduled_at) of encoded Work bytes; ``undecodable`` if not."""
    envelope = _envelope(data)
    if envelope is None:
        preview = data[:80].decode("utf-8", errors="replace")
        return {"undecodable": f"{len(data)} bytes that are not a Work: {preview!r}"}
    state = envelope.get("state")
    fields = {k: v for k, v in state.items() if k != "id"} if isinstance(state, dict) else state
    result: dict[str, Any] = {"type": envelope["type"], "id": envelope.get("id"), "fields": fields}
    doc = envelope.get("doc")
    if isinstance(doc, list) and len(doc) == 3:
        result["document"] = {"repository": doc[0], "id": doc[1], "tree": doc[2]}
    if isinstance(envelope.get("scheduled_at"), (int, float)) and envelope["scheduled_at"]:
        result["scheduled_at"] = _iso(envelope["scheduled_at"])
    return result


def describe_work_record(data: bytes) -> dict[str, Any] | None:
    """The Work carried by a record of a ``work/<queue>`` log, as JSON-able fields (``kind`` "work":
    type, id, fields, token, written at...), None when ``data`` is not such a record."""
    import msgspec

    from conveyor.work.stream_state import WorkRecord

    try:
        record = msgspec.msgpack.decode(data, type=WorkRecord)
    except Exception:
        return None
    result: dict[str, Any] = {"kind": "work", "type": None, "id": record.id}
    if record.external:
        result["fields"] = None
        result["external"] = "too big for a record: kept in the key-value store"
    elif record.data:
        result |= _work_fields(record.data)
    result["id"] = record.id
    result["token"] = record.token
    result["written_at"] = _iso(record.at)
    for flag in ("untracked", "coalescing"):
        if getattr(record, flag):
            result[flag] = True
    return result


def describe_dead_letter(data: bytes) -> dict[str, Any] | None:
    """A dead letter of ``work/dlq`` as JSON-able fields (``kind`` "dead letter": queue, type, id,
    error, failed_at, fields), None when ``data`` is not one."""
    from conveyor.errors import WorkError
    from conveyor.work.codec import get_work_codec

    for codec in ("json", "msgpack") if data[:1] == b"{" else ("msgpack", "json"):
        try:
            letter = get_work_codec(codec).decode_dead_letter(data)
        except WorkError:
            continue
        result: dict[str, Any] = {
            "kind": "dead letter",
            "queue": letter.queue,
            "type": letter.type,
            "id": letter.id,
            "category": letter.category,
            "error": letter.error,
        }
        if letter.failed_at:
            result["failed_at"] = _iso(letter.failed_at)
        work = _work_fields(letter.data)
        result["fields"] = work.get("fields")
        for key in ("document", "scheduled_at", "undecodable"):
            if key in work:
                result[key] = work[key]
        return result
    return None


def describe_message(data: bytes, log: str, codec: str | None = None) -> dict[str, Any]:
    """Printable fields of one stored message of ``log``: a Work (``work/<queue>``), a dead letter
    (``work/dlq``) or a Record, whichever decodes (the log's name says which to try first);
    ``kind`` says which ("bytes" when none does)."""
    work_log = log.startswith(WORK_NAMESPACE + "/")
    if log == DEAD_LETTERS:
        found = describe_dead_letter(data) or describe_work_record(data)
    elif work_log:
        found = describe_work_record(data) or describe_dead_letter(data)
    else:
        found = None
    if found is not None:
        return found
    fields: dict[str, Any] = {"kind": "record", **describe_record(data, codec)}
    if fields["codec"] == "bytes" and not work_log:
        found = describe_work_record(data) or describe_dead_letter(data)
        if found is not None:
            return found
        fields["kind"] = "bytes"
    return fields


def describe_raw(data: bytes, max_data: int | None = None) -> dict[str, Any]:
    """A stored message undecoded: its size and bytes (base64, all of them unless ``max_data``)."""
    import base64

    shown = data if max_data is None else data[:max_data]
    return {"kind": "bytes", "size": len(data), "data_base64": base64.b64encode(shown).decode("ascii")}
