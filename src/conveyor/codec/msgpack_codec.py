"""The ``msgpack`` codec: MessagePack through msgspec.

A ``Record`` is a map with its Python field names; ``bytes`` stay MessagePack ``bin``. Pydantic
models are dumped with ``model_dump()`` and rebuilt with ``model_validate``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from conveyor.codec._common import DEFAULT_MAX_SIZE
from conveyor.codec._plain import Decode, Encode, PlainCodec, is_pydantic_model, msgspec_decoder

__all__ = ["MsgpackCodec", "msgpack_codec"]

NAME = "msgpack"


class MsgpackCodec(PlainCodec[Any]):
    """MessagePack for ``type_`` (a dataclass, msgspec Struct, pydantic model, dict or builtin type)."""

    def __init__(self, type_: Any, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        encoder = msgspec.msgpack.Encoder()
        encode: Encode
        decode: Decode
        if is_pydantic_model(type_):
            raw = msgspec.msgpack.Decoder(dict[str, Any])

            def encode(obj: Any) -> bytes:
                return encoder.encode(obj.model_dump())

            def decode(data: bytes) -> Any:
                return type_.model_validate(raw.decode(data))

        else:
            encode = encoder.encode
            decode = msgspec_decoder(NAME, msgspec.msgpack.Decoder, type_).decode
        super().__init__(NAME, type_, encode, decode, max_size=max_size)


def msgpack_codec(type_: Any, **options: Any) -> MsgpackCodec:
    """The ``msgpack`` codec for ``type_``; option ``max_size`` (bytes, default 64 MiB)."""
    return MsgpackCodec(type_, **options)
