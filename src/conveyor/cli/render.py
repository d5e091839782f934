"""Rendering records readably for the stream tools: decode with the first codec that fits."""

from __future__ import annotations

import datetime as dt
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.record import Flag, Record, Watermark

__all__ = ["decode_any", "describe_record"]

RECORD_CODECS = ("avro", "msgpack", "json", "avroJson")


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
