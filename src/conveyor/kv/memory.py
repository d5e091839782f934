"""``memory://``: an expiring map in this process's memory (Nuxeo's ``MemKeyValueStore``).

Every store of this process opened with the same URL and name shares one map, as two nodes in one
process would share a server; ``memory://`` and ``memory://NAME`` are distinct spaces. Nothing
survives the process.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlsplit

from conveyor.errors import ConfigurationError
from conveyor.kv.api import KeyValueStore

__all__ = ["MemoryKeyValueStore"]


class _Map:
    """Key -> (value, monotonic expiry or None), guarded by one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.data: dict[str, tuple[bytes, float | None]] = {}
        self.next_purge = 0.0

    def live(self, key: str, now: float) -> tuple[bytes, float | None] | None:
        entry = self.data.get(key)
        if entry is None:
            return None
        if entry[1] is not None and entry[1] <= now:
            del self.data[key]
            return None
        return entry

    def purge(self, now: float) -> None:
        if now < self.next_purge:
            return
        self.next_purge = now + 1.0
        dead = [k for k, (_, exp) in self.data.items() if exp is not None and exp <= now]
        for k in dead:
            del self.data[k]


_MAPS: dict[tuple[str, str], _Map] = {}
_MAPS_LOCK = threading.Lock()


def _expiry(ttl: float | None, now: float) -> float | None:
    return None if ttl is None else now + ttl


class MemoryKeyValueStore(KeyValueStore):
    """A key-value store in process memory, shared by name within the process."""

    def __init__(self, name: str = "default", space: str = "") -> None:
        super().__init__(name)
        with _MAPS_LOCK:
            self._map = _MAPS.setdefault((space, self.name), _Map())

    @classmethod
    def from_url(cls, url: str, name: str = "default", **options: Any) -> MemoryKeyValueStore:
        """Open ``memory://`` or ``memory://SPACE``."""
        if options:
            raise ConfigurationError(f"memory:// key-value store takes no options, got {sorted(options)}")
        parts = urlsplit(url) if "://" in url else None
        space = "" if parts is None else (parts.netloc + parts.path).strip("/")
        return cls(name, space)

    def close(self) -> None:
        """Nothing to release: the data stays for the other stores of this name."""

    def _put(self, key: str, value: bytes | None, ttl: float | None) -> None:
        m = self._map
        with m.lock:
            now = time.monotonic()
            m.purge(now)
            if value is None:
                m.data.pop(key, None)
            else:
                m.data[key] = (value, _expiry(ttl, now))

    def _get(self, key: str) -> bytes | None:
        with self._map.lock:
            entry = self._map.live(key, time.monotonic())
        return None if entry is None else entry[0]

    def _get_many(self, keys: list[str]) -> dict[str, bytes]:
        result: dict[str, bytes] = {}
        with self._map.lock:
            now = time.monotonic()
            for key in keys:
                entry = self._map.live(key, now)
                if entry is not None:
                    result[key] = entry[0]
        return result

    def _set_ttl(self, key: str, ttl: float | None) -> bool:
        m = self._map
        with m.lock:
            now = time.monotonic()
            entry = m.live(key, now)
            if entry is None:
                return False
            m.data[key] = (entry[0], _expiry(ttl, now))
            return True

    def _compare_and_set(
        self, key: str, expected: bytes | None, value: bytes | None, ttl: float | None
    ) -> bool:
        m = self._map
        with m.lock:
            now = time.monotonic()
            entry = m.live(key, now)
            current = None if entry is None else entry[0]
            if current != expected:
                return False
            if value is None:
                m.data.pop(key, None)
            else:
                m.data[key] = (value, _expiry(ttl, now))
            return True

    def _add_and_get(self, key: str, delta: int) -> int:
        m = self._map
        with m.lock:
            entry = m.live(key, time.monotonic())
            raw = self._added(None if entry is None else entry[0], key, delta)
            m.data[key] = (raw, None if entry is None else entry[1])
        return int(raw)

    def _keys(self, prefix: str) -> set[str]:
        m = self._map
        with m.lock:
            now = time.monotonic()
            m.next_purge = 0.0
            m.purge(now)
            return {k for k in m.data if k.startswith(prefix)}
