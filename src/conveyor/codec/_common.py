"""What every codec shares: the size limit and the way bad input becomes a ``CodecError``."""

from __future__ import annotations

from typing import Any, NoReturn

from conveyor.errors import CodecError, ConfigurationError

DEFAULT_MAX_SIZE = 64 * 1024 * 1024
"""Largest message a codec encodes or decodes unless told otherwise (64 MiB)."""


def fail(codec: str, problem: str, cause: BaseException | None = None) -> NoReturn:
    """Raise a ``CodecError`` naming ``codec`` and ``problem`` (chained to ``cause``)."""
    raise CodecError(f"codec {codec!r}: {problem}") from cause


def check_max_size(max_size: Any) -> int:
    """``max_size`` as a positive int; anything else is a ``ConfigurationError``."""
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size <= 0:
        raise ConfigurationError(f"max_size must be a positive int, got {max_size!r}")
    return max_size


def as_input(codec: str, data: Any, max_size: int) -> bytes:
    """``data`` as bytes, refused when it is not bytes-like or larger than ``max_size``."""
    if not isinstance(data, bytes):
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        else:
            fail(codec, f"cannot decode a {type(data).__name__}, bytes expected")
    if len(data) > max_size:
        fail(codec, f"message of {len(data)} bytes is larger than max_size={max_size}")
    result: bytes = data
    return result


def as_output(codec: str, data: bytes, max_size: int) -> bytes:
    """``data`` (an encoded message), refused when larger than ``max_size``."""
    if len(data) > max_size:
        fail(codec, f"encoded message of {len(data)} bytes is larger than max_size={max_size}")
    return data


def describe(exc: BaseException) -> str:
    """A one-line description of a driver exception, for our messages."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
