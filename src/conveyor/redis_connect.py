"""Opening a Redis client from a ``redis://`` URL the same way in every layer that uses Redis.

The URL may carry ``?prefix=`` (the key or channel prefix, ours, removed before redis-py sees
the URL); other query keys are redis-py's. A bad URL is a ``ConfigurationError`` and an
unreachable server a ``BackendUnavailableError``, both naming the URL with its password masked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from conveyor.errors import BackendUnavailableError, ConfigurationError
from conveyor.registry import redact_url

if TYPE_CHECKING:
    import redis

__all__ = ["connect_redis"]


def connect_redis(url: str, options: dict[str, Any], default_prefix: str) -> tuple[redis.Redis, str, str]:
    """A pinged client for ``url``, the prefix (``options["prefix"]``, the URL's, or the default)
    and the URL as it may be shown. ``options`` (minus ``prefix``) go to ``redis.Redis``."""
    import redis
    from redis.exceptions import RedisError

    shown = redact_url(url)
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    prefix = str(options.pop("prefix", query.pop("prefix", default_prefix)))
    clean = parts._replace(query=urlencode(query)).geturl()
    try:
        client = redis.Redis.from_url(clean, **options)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"invalid Redis URL {shown!r}: {exc}") from exc
    try:
        client.ping()
    except RedisError as exc:
        client.close()
        raise BackendUnavailableError(f"cannot reach Redis at {shown!r}: {exc}") from exc
    return client, prefix, shown
