"""Publish/subscribe between nodes (Nuxeo's PubSubService), chosen by URL.

``open_pubsub(url, node_id=...)`` opens a provider: ``local://`` (in-process, the embedded
default), ``redis://host:6379/0`` (Redis channels), or any log URL (``memory://NAME``,
``kafka://host:9092``, ``local:///dir``, or ``log+<log URL>``) carrying messages in the log
``pubsub/pubsub``. A node does not receive its own messages unless a subscription asks
(``include_own=True``). :class:`ClusterCache` keeps a local cache whose invalidations reach every
node.
"""

from __future__ import annotations

from typing import Any

from conveyor.errors import BackendUnavailableError, ConfigurationError, ConveyorError
from conveyor.pubsub.api import (
    MAX_TOPIC_BYTES,
    Callback,
    PubSub,
    PubSubStats,
    Subscription,
    default_node_id,
)
from conveyor.pubsub.cache import ALL_KEYS, CacheStats, ClusterCache
from conveyor.registry import BackendRegistry, redact_url

__all__ = [
    "ALL_KEYS",
    "MAX_TOPIC_BYTES",
    "CacheStats",
    "Callback",
    "ClusterCache",
    "PubSub",
    "PubSubStats",
    "Subscription",
    "default_node_id",
    "open_pubsub",
    "pubsub_registry",
]

pubsub_registry = BackendRegistry(
    "pubsub",
    {
        "local": "conveyor.pubsub.local:LocalPubSub",
        "redis": "conveyor.pubsub.redis_pubsub:RedisPubSub",
        "rediss": "conveyor.pubsub.redis_pubsub:RedisPubSub",
        "memory": "conveyor.pubsub.log_pubsub:LogPubSub",
        "kafka": "conveyor.pubsub.log_pubsub:LogPubSub",
        "file": "conveyor.pubsub.log_pubsub:LogPubSub",
        "log": "conveyor.pubsub.log_pubsub:LogPubSub",
    },
)


def open_pubsub(url: str, node_id: str | None = None, **options: Any) -> PubSub:
    """Open the pub/sub provider of ``url`` for the node ``node_id`` (default: a unique id).

    ``options`` go to the provider (``prefix=`` for Redis, ``log_name=`` and log manager
    options for log URLs).
    """
    cls = pubsub_registry.resolve(url)
    try:
        pubsub: PubSub = cls.from_url(url, node_id=node_id, **options)
    except ConveyorError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"cannot open pub/sub {redact_url(url)!r}: {exc}") from exc
    except OSError as exc:
        raise BackendUnavailableError(f"cannot open pub/sub {redact_url(url)!r}: {exc}") from exc
    return pubsub
