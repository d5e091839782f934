"""``redis://``: key-value stores in Redis (Nuxeo's ``RedisKeyValueStore``).

Each store's keys live under ``<prefix><name>:`` (``prefix`` is ``conveyor:kv:`` unless the URL
query says ``?prefix=``). Expiry is Redis's own (``PX``); ``get_many`` is one ``MGET``;
compare-and-set and ``set_ttl`` are Lua scripts, so atomic; ``add_and_get`` is ``INCRBY``, which
keeps the key's TTL; ``keys`` walks ``SCAN`` with the prefix glob-escaped.
"""

from __future__ import annotations

import re
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from conveyor.errors import BackendUnavailableError, KeyValueError, KeyValueInputError
from conveyor.kv.api import KeyValueStore
from conveyor.redis_connect import connect_redis

__all__ = ["RedisKeyValueStore"]

DEFAULT_PREFIX = "conveyor:kv:"

# KEYS[1] = key; ARGV = expected-present ("0"/"1"), expected, value-present, value, ttl ms ("0": none)
_CAS = """
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '0' then
  if cur then return 0 end
else
  if cur ~= ARGV[2] then return 0 end
end
if ARGV[3] == '0' then
  redis.call('DEL', KEYS[1])
elseif ARGV[5] ~= '0' then
  redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
else
  redis.call('SET', KEYS[1], ARGV[4])
end
return 1
"""

# KEYS[1] = key; ARGV[1] = ttl ms ("0": persist)
_SET_TTL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '0' then redis.call('PERSIST', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
"""

_GLOB_SPECIAL = re.compile(rb"([*?\[\]\\])")


def _ms(ttl: float) -> int:
    return max(1, round(ttl * 1000))


class RedisKeyValueStore(KeyValueStore):
    """A named key-value store in Redis."""

    def __init__(self, name: str, client: redis.Redis, prefix: str, shown_url: str) -> None:
        super().__init__(name)
        self._client = client
        self._prefix = f"{prefix}{self.name}:".encode()
        self._shown = shown_url
        self._cas = client.register_script(_CAS)
        self._set_ttl_script = client.register_script(_SET_TTL)

    @classmethod
    def from_url(cls, url: str, name: str = "default", **options: Any) -> RedisKeyValueStore:
        """Open the store ``name`` on the Redis of ``url`` (``?prefix=`` sets the key prefix)."""
        options.setdefault("socket_connect_timeout", 10)
        client, prefix, shown = connect_redis(url, options, DEFAULT_PREFIX)
        return cls(name, client, prefix, shown)

    def close(self) -> None:
        """Close this store's connection pool."""
        self._client.close()

    def _k(self, key: str) -> bytes:
        return self._prefix + key.encode("utf-8")

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            message = f"Redis at {self._shown!r} unreachable during {what}: {exc}"
            raise BackendUnavailableError(message) from exc
        except RedisError as exc:
            raise KeyValueError(f"Redis {what} failed on store {self.name!r}: {exc}") from exc

    def _put(self, key: str, value: bytes | None, ttl: float | None) -> None:
        if value is None:
            self._call("DEL", self._client.delete, self._k(key))
        else:
            self._call("SET", self._client.set, self._k(key), value, px=None if ttl is None else _ms(ttl))

    def _get(self, key: str) -> bytes | None:
        value: bytes | None = self._call("GET", self._client.get, self._k(key))
        return value

    def _get_many(self, keys: list[str]) -> dict[str, bytes]:
        values = self._call("MGET", self._client.mget, [self._k(k) for k in keys])
        return {k: v for k, v in zip(keys, values, strict=True) if v is not None}

    def _set_ttl(self, key: str, ttl: float | None) -> bool:
        ms = "0" if ttl is None else str(_ms(ttl))
        return bool(self._call("set_ttl", self._set_ttl_script, keys=[self._k(key)], args=[ms]))

    def _compare_and_set(
        self, key: str, expected: bytes | None, value: bytes | None, ttl: float | None
    ) -> bool:
        args: list[bytes | str] = [
            "0" if expected is None else "1",
            b"" if expected is None else expected,
            "0" if value is None else "1",
            b"" if value is None else value,
            "0" if ttl is None else str(_ms(ttl)),
        ]
        return bool(self._call("compare_and_set", self._cas, keys=[self._k(key)], args=args))

    def _add_and_get(self, key: str, delta: int) -> int:
        try:
            return int(self._client.incrby(self._k(key), delta))
        except ResponseError as exc:
            text = str(exc)
            if "overflow" in text:
                raise KeyValueInputError(f"add_and_get on key {key!r} would overflow 64 bits") from exc
            if "not an integer" in text:
                raise KeyValueInputError(f"value of key {key!r} is not an integer") from exc
            raise KeyValueError(f"Redis INCRBY failed on key {key!r}: {exc}") from exc
        except (RedisConnectionError, RedisTimeoutError) as exc:
            message = f"Redis at {self._shown!r} unreachable during INCRBY: {exc}"
            raise BackendUnavailableError(message) from exc

    def _keys(self, prefix: str) -> set[str]:
        pattern = _GLOB_SPECIAL.sub(rb"\\\1", self._prefix + prefix.encode("utf-8")) + b"*"
        start = len(self._prefix)
        found = self._call("SCAN", lambda: list(self._client.scan_iter(match=pattern, count=1000)))
        return {k[start:].decode("utf-8") for k in found}
