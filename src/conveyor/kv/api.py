"""The key-value store contract (Nuxeo's ``KeyValueStore``), the same on every backend.

Values are bytes; ``str`` values are stored as their UTF-8 bytes and ``int`` values as their
decimal digits (as Nuxeo does), so ``put(k, 5)`` then ``get(k)`` gives ``b"5"`` and ``get_int(k)``
gives ``5``. ``None`` as a value deletes. TTLs are in seconds (floats allowed); ``None`` means no
expiry. An expired entry is never returned, whatever the backend's purge schedule.

Backends implement the ``_``-prefixed primitives on already validated, already encoded input; the
public methods here do the validation, so bad input fails the same way everywhere and before any
data is touched.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from types import TracebackType
from typing import Self

from conveyor.errors import KeyValueInputError, KeyValueTypeError
from conveyor.identifiers import check_text_id

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_KEY_BYTES",
    "MAX_NAME_LENGTH",
    "KeyValueStore",
    "Value",
    "decode_int",
    "encode_value",
    "validate_key",
    "validate_name",
    "validate_ttl",
]

Value = bytes | str | int | None
"""What ``put`` and ``compare_and_set`` accept."""

MAX_KEY_BYTES = 1024
"""Longest key accepted, in UTF-8 bytes, on every backend."""

MAX_NAME_LENGTH = 200
"""Longest store name accepted."""

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_INT_RE = re.compile(rb"-?(?:0|[1-9][0-9]*)")
_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+")


def validate_key(key: object) -> str:
    """``key`` if it is a usable key: a non-empty ``str`` of at most 1024 UTF-8 bytes, no NUL."""
    return check_text_id(key, "key", MAX_KEY_BYTES, KeyValueInputError, KeyValueTypeError)


def validate_name(name: object) -> str:
    """``name`` if it is a usable store name (letters, digits, ``_ . -``; at most 200 chars)."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        raise KeyValueInputError(
            f"invalid key-value store name {name!r}: "
            f"use 1 to {MAX_NAME_LENGTH} letters, digits, '_', '.', '-'"
        )
    return name


def validate_ttl(ttl: object, key: str) -> float | None:
    """``ttl`` in seconds if valid: ``None`` (no expiry) or a positive number."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise KeyValueTypeError(f"ttl for key {key!r} must be a number of seconds or None, got {ttl!r}")
    if not 0 < ttl < float("inf"):
        raise KeyValueInputError(
            f"ttl for key {key!r} must be a positive number of seconds (None: no expiry), got {ttl!r}"
        )
    return float(ttl)


def encode_value(value: object, key: str) -> bytes | None:
    """The stored bytes of ``value`` (bytes as is, str as UTF-8, int as decimal), None for None."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise KeyValueInputError(f"value for key {key!r} is not valid Unicode: {exc.reason}") from exc
    if isinstance(value, int) and not isinstance(value, bool):
        if not INT64_MIN <= value <= INT64_MAX:
            raise KeyValueInputError(f"int value for key {key!r} does not fit in 64 bits: {value}")
        return str(value).encode("ascii")
    raise KeyValueTypeError(
        f"value for key {key!r} must be bytes, str, int or None, got {type(value).__name__}"
    )


def decode_int(raw: bytes, key: str) -> int:
    """The integer stored as decimal digits in ``raw``; KeyValueError when it is not one."""
    if not _INT_RE.fullmatch(raw):
        shown = raw[:40]
        raise KeyValueInputError(f"value of key {key!r} is not an integer: {shown!r}")
    return int(raw)


class KeyValueStore(ABC):
    """A named key-value store: bytes under string keys, with optional per-key expiry.

    Thread-safe. Stores of the same backend URL with different names never see each other's keys;
    stores opened with the same URL and name (in this process or another, for shared backends)
    see the same data.
    """

    def __init__(self, name: str) -> None:
        self.name = validate_name(name)

    # --- the public API ------------------------------------------------------------------------

    def put(self, key: str, value: Value, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` (expiring after ``ttl`` seconds if given); None deletes."""
        key = validate_key(key)
        data = encode_value(value, key)
        seconds = validate_ttl(ttl, key)
        self._put(key, data, seconds)

    def get(self, key: str) -> bytes | None:
        """The bytes under ``key``, or None when absent or expired."""
        return self._get(validate_key(key))

    def get_str(self, key: str) -> str | None:
        """The value under ``key`` decoded as UTF-8, or None; KeyValueError if it is not UTF-8."""
        raw = self.get(key)
        if raw is None:
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise KeyValueInputError(f"value of key {key!r} is not UTF-8 text") from exc

    def get_int(self, key: str) -> int | None:
        """The value under ``key`` as an integer, or None; KeyValueError if it is not one."""
        raw = self.get(key)
        return None if raw is None else decode_int(raw, key)

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The present keys among ``keys`` with their values (one round trip where possible)."""
        wanted = list(dict.fromkeys(validate_key(k) for k in keys))
        if not wanted:
            return {}
        return self._get_many(wanted)

    def set_ttl(self, key: str, ttl: float | None) -> bool:
        """Make ``key`` expire ``ttl`` seconds from now (None: never); False when it is absent."""
        key = validate_key(key)
        return self._set_ttl(key, validate_ttl(ttl, key))

    def compare_and_set(self, key: str, expected: Value, value: Value, ttl: float | None = None) -> bool:
        """Atomically set ``key`` to ``value`` if it currently holds ``expected``.

        ``expected=None`` means "only if absent"; ``value=None`` deletes. ``ttl`` applies to the
        new value as in :meth:`put`. Returns whether the swap happened.
        """
        key = validate_key(key)
        old = encode_value(expected, key)
        new = encode_value(value, key)
        seconds = validate_ttl(ttl, key)
        return self._compare_and_set(key, old, new, seconds)

    def add_and_get(self, key: str, delta: int) -> int:
        """Atomically add ``delta`` to the integer under ``key`` (absent counts as 0); the new value.

        The key keeps its expiry, if any. KeyValueError when the stored value is not an integer or
        the result does not fit in 64 bits.
        """
        key = validate_key(key)
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise KeyValueTypeError(f"delta for key {key!r} must be an int, got {type(delta).__name__}")
        if not INT64_MIN <= delta <= INT64_MAX:
            raise KeyValueInputError(f"delta for key {key!r} does not fit in 64 bits: {delta}")
        return self._add_and_get(key, delta)

    def keys(self, prefix: str = "") -> set[str]:
        """Every live key of this store starting with ``prefix``."""
        if not isinstance(prefix, str):
            raise KeyValueTypeError(f"prefix must be a str, got {type(prefix).__name__}")
        if prefix:
            validate_key(prefix)
        return self._keys(prefix)

    @abstractmethod
    def close(self) -> None:
        """Release the connections; the store must not be used afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    # --- helpers for backends ------------------------------------------------------------------

    @staticmethod
    def _added(current: bytes | None, key: str, delta: int) -> bytes:
        """The bytes of ``current + delta`` (absent = 0), checked to fit in 64 bits."""
        base = 0 if current is None else decode_int(current, key)
        result = base + delta
        if not INT64_MIN <= result <= INT64_MAX:
            raise KeyValueInputError(f"add_and_get on key {key!r} would overflow 64 bits: {base} + {delta}")
        return str(result).encode("ascii")

    # --- what a backend implements (input already validated) -----------------------------------

    @abstractmethod
    def _put(self, key: str, value: bytes | None, ttl: float | None) -> None: ...

    @abstractmethod
    def _get(self, key: str) -> bytes | None: ...

    @abstractmethod
    def _get_many(self, keys: list[str]) -> dict[str, bytes]: ...

    @abstractmethod
    def _set_ttl(self, key: str, ttl: float | None) -> bool: ...

    @abstractmethod
    def _compare_and_set(
        self, key: str, expected: bytes | None, value: bytes | None, ttl: float | None
    ) -> bool: ...

    @abstractmethod
    def _add_and_get(self, key: str, delta: int) -> int: ...

    @abstractmethod
    def _keys(self, prefix: str) -> set[str]: ...
