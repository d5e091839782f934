"""The codec contract: a named pair of ``encode`` / ``decode`` between objects and bytes."""

from __future__ import annotations

from typing import Protocol, TypeVar, runtime_checkable

from conveyor.errors import CodecError

T = TypeVar("T")

__all__ = ["BytesCodec", "Codec", "CodecError"]


@runtime_checkable
class Codec(Protocol[T]):
    """Turns objects of one type into bytes and back. ``decode`` raises ``CodecError`` on bad input."""

    @property
    def name(self) -> str:
        """The registered name (``json``, ``msgpack``, ``avro`` ...)."""
        ...

    def encode(self, obj: T) -> bytes:
        """``obj`` as bytes."""
        ...

    def decode(self, data: bytes) -> T:
        """The object encoded in ``data``; ``CodecError`` when it is not a valid encoding."""
        ...


class BytesCodec:
    """The identity codec: messages are ``bytes`` and stored as they are (name ``bytes``)."""

    name = "bytes"

    def encode(self, obj: bytes) -> bytes:
        """``obj`` itself; anything but bytes is a ``CodecError``."""
        if isinstance(obj, (bytearray, memoryview)):
            return bytes(obj)
        if not isinstance(obj, bytes):
            raise CodecError(f"codec 'bytes' encodes bytes only, got {type(obj).__name__}")
        return obj

    def decode(self, data: bytes) -> bytes:
        """``data`` itself."""
        return bytes(data)

    def __repr__(self) -> str:
        return "BytesCodec()"
