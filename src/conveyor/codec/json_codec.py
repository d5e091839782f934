"""The ``json`` codec: compact UTF-8 JSON through msgspec.

``bytes`` values (``Record.data``, ``Record.trace_context``) are written as standard base64
strings, msgspec's convention: unlike Avro JSON's ISO-8859-1 strings, any byte survives any JSON
tool unchanged. A ``Record`` is an object with its Python field names::

    {"key":"key","data":"dmFsdWU=","watermark":208438433348190208,"flags":131,
     "trace_context":null,"appender_thread":null}

Pydantic models use their own ``model_dump_json`` / ``model_validate_json`` (bytes as the model's
config says).
"""

from __future__ import annotations

from typing import Any

import msgspec

from conveyor.codec._common import DEFAULT_MAX_SIZE
from conveyor.codec._plain import Decode, Encode, PlainCodec, is_pydantic_model, msgspec_decoder

__all__ = ["JsonCodec", "json_codec"]

NAME = "json"


class JsonCodec(PlainCodec[Any]):
    """JSON for ``type_`` (a dataclass, msgspec Struct, pydantic model, dict or builtin type)."""

    def __init__(self, type_: Any, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        encode: Encode
        decode: Decode
        if is_pydantic_model(type_):
            encode = _pydantic_dump
            decode = type_.model_validate_json
        else:
            encode = msgspec.json.Encoder().encode
            decode = msgspec_decoder(NAME, msgspec.json.Decoder, type_).decode
        super().__init__(NAME, type_, encode, decode, max_size=max_size)


def _pydantic_dump(obj: Any) -> bytes:
    data: bytes = obj.__pydantic_serializer__.to_json(obj)
    return data


def json_codec(type_: Any, **options: Any) -> JsonCodec:
    """The ``json`` codec for ``type_``; option ``max_size`` (bytes, default 64 MiB)."""
    return JsonCodec(type_, **options)
