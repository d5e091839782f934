"""Shared machinery of the ``json`` and ``msgpack`` codecs: msgspec for any data type.

Dataclasses (``Record`` included), msgspec Structs, TypedDicts, dicts and builtins go straight
through msgspec, which validates on decode. Pydantic models go through ``model_dump`` /
``model_validate`` so their own validators run. Code is never serialized (no pickle).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import msgspec

from conveyor.codec._common import DEFAULT_MAX_SIZE, as_input, as_output, check_max_size, describe, fail
from conveyor.errors import ConfigurationError

T = TypeVar("T")

Encode = Callable[[Any], bytes]
Decode = Callable[[bytes], Any]


def is_pydantic_model(type_: Any) -> bool:
    """True when ``type_`` is a pydantic ``BaseModel`` subclass (without importing pydantic)."""
    return isinstance(type_, type) and any(
        base.__module__.startswith("pydantic") and base.__name__ == "BaseModel" for base in type_.__mro__
    )


def type_name(type_: Any) -> str:
    """A short, readable name of ``type_`` for messages."""
    return getattr(type_, "__qualname__", None) or repr(type_)


class PlainCodec(Generic[T]):
    """A codec built from an encode and a decode function over msgspec (base of json/msgpack)."""

    def __init__(
        self,
        name: str,
        type_: type[T],
        encode: Encode,
        decode: Decode,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        self._name = name
        self.type = type_
        self.max_size = check_max_size(max_size)
        self._encode = encode
        self._decode = decode
        self._check: type[Any] | None = _instance_check(type_)

    @property
    def name(self) -> str:
        """The registered name of this codec."""
        return self._name

    def encode(self, obj: T) -> bytes:
        """``obj`` as bytes; ``CodecError`` when it is not a ``type_`` or cannot be encoded."""
        if self._check is not None and not isinstance(obj, self._check):
            fail(self._name, f"expects a {type_name(self.type)}, got {type(obj).__name__}")
        try:
            data = self._encode(obj)
        except (msgspec.EncodeError, TypeError, ValueError, OverflowError) as exc:
            fail(self._name, f"cannot encode {type(obj).__name__}: {describe(exc)}", exc)
        return as_output(self._name, data, self.max_size)

    def decode(self, data: bytes) -> T:
        """The ``type_`` object in ``data``; ``CodecError`` when ``data`` is not a valid encoding."""
        data = as_input(self._name, data, self.max_size)
        try:
            obj: T = self._decode(data)
        except (msgspec.DecodeError, TypeError, ValueError, OverflowError, RecursionError) as exc:
            fail(self._name, f"invalid {type_name(self.type)} message: {describe(exc)}", exc)
        return obj

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r}, {type_name(self.type)})"


def _instance_check(type_: Any) -> type[Any] | None:
    if type_ is dict:
        return Mapping
    if isinstance(type_, type) and (
        dataclasses.is_dataclass(type_) or issubclass(type_, msgspec.Struct) or is_pydantic_model(type_)
    ):
        return type_
    return None  # builtins, unions, TypedDicts...: msgspec says what it cannot encode


def msgspec_decoder(codec: str, decoder_class: Callable[..., Any], type_: Any, **kwargs: Any) -> Any:
    """A msgspec decoder for ``type_``, or a ``ConfigurationError`` when msgspec cannot handle it."""
    try:
        return decoder_class(type_, **kwargs)
    except TypeError as exc:
        raise ConfigurationError(f"codec {codec!r} cannot handle type {type_name(type_)}: {exc}") from exc
