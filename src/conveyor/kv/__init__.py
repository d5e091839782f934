"""Named key-value stores (Nuxeo's KeyValueService), chosen by URL.

``open_kv_store(url, name)`` opens the store ``name`` on the backend of ``url``: ``memory://``
(in-process), ``sqlite:///PATH`` (the embedded default; three slashes then the path:
``sqlite:///./kv.db`` is relative, ``sqlite:////srv/kv.db`` absolute), ``postgresql://…``,
``mysql://…`` (MariaDB), ``redis://host:6379/0`` or ``mongodb://host/db``. Names are namespaces:
two stores of different names never see each other's keys.
"""

from __future__ import annotations

from typing import Any

from conveyor.errors import BackendUnavailableError, ConfigurationError, ConveyorError
from conveyor.kv.api import MAX_KEY_BYTES, KeyValueStore, Value
from conveyor.registry import BackendRegistry, redact_url

__all__ = ["MAX_KEY_BYTES", "KeyValueStore", "Value", "kv_registry", "open_kv_store"]

kv_registry = BackendRegistry(
    "kv",
    {
        "memory": "conveyor.kv.memory:MemoryKeyValueStore",
        "sqlite": "conveyor.kv.sql:SQLKeyValueStore",
        "postgresql": "conveyor.kv.sql:SQLKeyValueStore",
        "postgres": "conveyor.kv.sql:SQLKeyValueStore",
        "mysql": "conveyor.kv.sql:SQLKeyValueStore",
        "mariadb": "conveyor.kv.sql:SQLKeyValueStore",
        "redis": "conveyor.kv.redis_store:RedisKeyValueStore",
        "rediss": "conveyor.kv.redis_store:RedisKeyValueStore",
        "mongodb": "conveyor.kv.mongo:MongoKeyValueStore",
    },
)


def open_kv_store(url: str, name: str = "default", **options: Any) -> KeyValueStore:
    """Open the store ``name`` on the backend of ``url``; ``options`` override URL query settings."""
    cls = kv_registry.resolve(url)
    try:
        store: KeyValueStore = cls.from_url(url, name, **options)
    except ConveyorError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"cannot open key-value store {redact_url(url)!r}: {exc}") from exc
    except OSError as exc:
        raise BackendUnavailableError(f"cannot open key-value store {redact_url(url)!r}: {exc}") from exc
    return store
