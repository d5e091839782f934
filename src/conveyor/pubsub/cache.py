"""``ClusterCache``: a local cache whose invalidations reach every node through pub/sub.

Nuxeo's ``CacheServiceImpl`` sends ``<cacheName>/<key>`` on the topic ``cacheinval`` (``__ALL__``
as the key for "everything") and every other node drops that entry from its own copy; this is
the same, over any :class:`~conveyor.pubsub.PubSub`. Values never travel, only invalidations: each
node loads what it misses from the source of truth.

Invalidation is asynchronous and best effort (as pub/sub is): another node may serve a stale
value for the time a message takes to arrive, and a node that misses a message (a Redis
disconnection) keeps its stale entry until it is invalidated again, evicted, or the cache is
cleared. Use ``max_size`` to bound both memory and staleness.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Self, TypeVar

from conveyor.errors import PubSubInputError
from conveyor.pubsub.api import PubSub, Subscription, validate_topic

__all__ = ["ALL_KEYS", "DEFAULT_TOPIC", "CacheStats", "ClusterCache"]

logger = logging.getLogger("conveyor.pubsub")

V = TypeVar("V")

DEFAULT_TOPIC = "cacheinval"
"""The topic of cache invalidations (Nuxeo's)."""

ALL_KEYS = "__ALL__"
"""The key that means "every entry" in an invalidation message (Nuxeo's)."""

_MISSING = object()


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters of one cache since it was created."""

    hits: int
    misses: int
    size: int
    local_invalidations: int
    """Invalidations made on this node (and sent to the others)."""
    remote_invalidations: int
    """Invalidations received from other nodes."""


class ClusterCache(Generic[V]):
    """A thread-safe ``str`` -> value cache on this node, invalidated on every node at once.

    ``put`` only fills this node's copy (after reading the source of truth); after changing the
    source, call :meth:`invalidate` (or :meth:`update`) so every other node drops its copy.

    >>> from conveyor.pubsub import open_pubsub
    >>> node_a, node_b = open_pubsub("local://doc", node_id="a"), open_pubsub("local://doc", node_id="b")
    >>> users_a, users_b = ClusterCache(node_a, "users"), ClusterCache(node_b, "users")
    >>> users_a.put("u1", "Alice")
    >>> users_b.put("u1", "Alice")
    >>> users_a.invalidate("u1")  # users_b drops "u1" as soon as the message arrives
    >>> users_a.get("u1") is None
    True
    >>> node_a.close(); node_b.close()
    """

    def __init__(
        self, pubsub: PubSub, name: str, max_size: int | None = None, topic: str = DEFAULT_TOPIC
    ) -> None:
        if not isinstance(name, str) or not name or "/" in name:
            raise PubSubInputError(f"cache name must be a non-empty str without '/', got {name!r}")
        if max_size is not None and (
            isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1
        ):
            raise PubSubInputError(
                f"max_size of cache {name!r} must be a positive int or None, got {max_size!r}"
            )
        self.name = name
        """The cache's name; only invalidations for this name affect it."""
        self.max_size = max_size
        """The most entries kept (least recently used evicted first); None: no bound."""
        self.topic = validate_topic(topic)
        """The pub/sub topic of invalidations."""
        self._pubsub = pubsub
        self._lock = threading.Lock()
        self._data: OrderedDict[str, V] = OrderedDict()
        # Bumped by every invalidation, so a load that raced with one does not store a stale value.
        self._generation = 0
        self._hits = self._misses = self._local = self._remote = 0
        self._subscription: Subscription = pubsub.subscribe(self.topic, self._on_message)

    # --- reading and filling -------------------------------------------------------------------

    def get(self, key: str, default: V | None = None) -> V | None:
        """The cached value of ``key``, or ``default``."""
        _check_key(key)
        with self._lock:
            value = self._data.get(key, _MISSING)
            if value is _MISSING:
                self._misses += 1
                return default
            self._hits += 1
            self._data.move_to_end(key)
            return value  # type: ignore[return-value]

    def put(self, key: str, value: V) -> None:
        """Cache ``value`` under ``key`` on this node only."""
        _check_key(key)
        with self._lock:
            self._store(key, value)

    def get_or_load(self, key: str, loader: Callable[[str], V]) -> V:
        """The cached value of ``key``, else ``loader(key)``, cached unless invalidated meanwhile."""
        _check_key(key)
        with self._lock:
            value = self._data.get(key, _MISSING)
            if value is not _MISSING:
                self._hits += 1
                self._data.move_to_end(key)
                return value  # type: ignore[return-value]
            self._misses += 1
            generation = self._generation
        loaded = loader(key)  # outside the lock: loaders may be slow
        with self._lock:
            if self._generation == generation:
                self._store(key, loaded)
        return loaded

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    # --- invalidating --------------------------------------------------------------------------

    def invalidate(self, key: str) -> None:
        """Drop ``key`` here and tell every other node to drop it."""
        _check_key(key)
        with self._lock:
            self._drop(key)
            self._local += 1
        self._pubsub.publish(self.topic, f"{self.name}/{key}".encode())

    def invalidate_all(self) -> None:
        """Empty this cache here and on every other node."""
        with self._lock:
            self._clear()
            self._local += 1
        self._pubsub.publish(self.topic, f"{self.name}/{ALL_KEYS}".encode())

    def update(self, key: str, value: V) -> None:
        """Cache ``value`` here and make every other node drop its older copy of ``key``."""
        self.invalidate(key)
        self.put(key, value)

    def clear_local(self) -> None:
        """Empty this node's copy only."""
        with self._lock:
            self._clear()

    def stats(self) -> CacheStats:
        """A snapshot of this cache's counters."""
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._data), self._local, self._remote)

    def close(self) -> None:
        """Stop listening to invalidations (the pub/sub provider stays open). Idempotent."""
        self._subscription.unsubscribe()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ClusterCache(name={self.name!r}, size={len(self)}, topic={self.topic!r})"

    # --- internals -----------------------------------------------------------------------------

    def _on_message(self, topic: str, data: bytes) -> None:
        name, sep, key = data.decode("utf-8", errors="replace").partition("/")
        if not sep:
            logger.warning("cache invalidation on topic %r without '<cache>/<key>': %r", topic, data[:80])
            return
        if name != self.name:
            return
        with self._lock:
            if key == ALL_KEYS:
                self._clear()
            else:
                self._drop(key)
            self._remote += 1

    def _store(self, key: str, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if self.max_size is not None:
            while len(self._data) > self.max_size:
                self._data.popitem(last=False)

    def _drop(self, key: str) -> None:
        self._generation += 1
        self._data.pop(key, None)

    def _clear(self) -> None:
        self._generation += 1
        self._data.clear()


def _check_key(key: object) -> None:
    if not isinstance(key, str) or not key:
        raise PubSubInputError(f"cache key must be a non-empty str, got {key!r}")
    if key == ALL_KEYS:
        raise PubSubInputError(f"cache key {ALL_KEYS!r} is reserved (it means every key)")
