"""Checks of the strings users name things with (KV keys, pub/sub topics), shared by the layers."""

from __future__ import annotations

__all__ = ["check_text_id"]


def check_text_id(
    value: object,
    what: str,
    max_bytes: int,
    input_error: type[Exception],
    type_error: type[Exception] | None = None,
) -> str:
    """``value`` if it is a non-empty ``str`` of at most ``max_bytes`` UTF-8 bytes without NUL;
    otherwise ``input_error`` (``type_error`` for a non-``str``) with a message naming ``what``."""
    if not isinstance(value, str):
        raise (type_error or input_error)(f"{what} must be a str, got {type(value).__name__}")
    if not value:
        raise input_error(f"{what} must not be empty")
    if "\x00" in value:
        raise input_error(f"{what} {value[:60]!r} contains a NUL character")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise input_error(f"{what} {value[:60]!r} is not valid Unicode: {exc.reason}") from exc
    if size > max_bytes:
        raise input_error(f"{what} too long: {size} bytes in UTF-8, the maximum is {max_bytes}")
    return value
