"""``redis://``: pub/sub over Redis channels (Nuxeo's ``RedisPubSubProvider``).

A topic is the channel ``<prefix><topic>`` (``prefix`` is ``conveyor:pubsub:`` unless the URL says
``?prefix=``; ``nuxeo:`` is Nuxeo's). Each provider keeps one connection in ``PSUBSCRIBE
<prefix>*`` read by a listener thread, which hands messages to the dispatcher thread.

Redis pub/sub is fire-and-forget: what is published while a node is disconnected never reaches
it. When the connection drops (a Redis restart), the listener logs a warning, retries with
backoff, and on reconnection redis-py subscribes again; it logs when messages flow again.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from conveyor.errors import BackendUnavailableError, ConfigurationError, PubSubError
from conveyor.pubsub.api import PubSub
from conveyor.pubsub.envelope import Envelope, encode_envelope
from conveyor.redis_connect import connect_redis
from conveyor.registry import redact_url

__all__ = ["DEFAULT_PREFIX", "RedisPubSub"]

logger = logging.getLogger("conveyor.pubsub")

DEFAULT_PREFIX = "conveyor:pubsub:"
SUBSCRIBE_TIMEOUT = 5.0
"""Seconds to wait for Redis to confirm the subscription when opening (Nuxeo's is 5 s too)."""

_WAKE_PREFIX = "conveyor-pubsub-wake:"
_POLL_S = 1.0
_MAX_BACKOFF_S = 5.0
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


class RedisPubSub(PubSub):
    """Pub/sub over the channels of one Redis server (see module doc)."""

    def __init__(
        self,
        client: redis.Redis,
        node_id: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        url: str = "",
        owns_client: bool = True,
    ) -> None:
        if not isinstance(prefix, str):
            raise ConfigurationError(f"Redis pub/sub prefix must be a str, got {prefix!r}")
        self._client = client
        self._owns_client = owns_client
        self._prefix = prefix
        self._shown = redact_url(url) if url else repr(client)
        self._stopping = threading.Event()
        # A private channel outside the pattern: close() publishes on it to wake the listener at once.
        self._wake = f"{_WAKE_PREFIX}{uuid.uuid4().hex}"
        self._ps = client.pubsub()  # type: ignore[no-untyped-call, unused-ignore]  # typed in newer redis-py
        try:
            self._ps.psubscribe(_GLOB_SPECIAL.sub(r"\\\1", prefix) + "*")
            self._ps.subscribe(self._wake)
            self._await_confirmations()
        except RedisError as exc:
            self._release()
            raise BackendUnavailableError(f"cannot subscribe on Redis at {self._shown!r}: {exc}") from exc
        except BaseException:
            self._release()
            raise
        super().__init__(node_id, url)
        self._listener = threading.Thread(
            target=self._listen, name=f"conveyor-pubsub-redis-{self.node_id}", daemon=True
        )
        self._listener.start()

    @classmethod
    def from_url(cls, url: str, node_id: str | None = None, **options: Any) -> RedisPubSub:
        """Open ``redis://host:port/db[?prefix=...]``; ``options`` go to ``redis.Redis``."""
        options.setdefault("socket_connect_timeout", 5)
        options.setdefault("health_check_interval", 30)
        client, prefix, _shown = connect_redis(url, options, DEFAULT_PREFIX)
        try:
            return cls(client, node_id, prefix, url)
        except BaseException:
            client.close()
            raise

    @property
    def prefix(self) -> str:
        """The channel prefix of topics."""
        return self._prefix

    def channel(self, topic: str) -> str:
        """The Redis channel of ``topic``."""
        return self._prefix + topic

    def _send(self, envelope: Envelope) -> None:
        try:
            self._client.publish(self._prefix + envelope.topic, encode_envelope(envelope))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise BackendUnavailableError(
                f"Redis at {self._shown!r} unreachable while publishing on topic {envelope.topic!r}: {exc}"
            ) from exc
        except RedisError as exc:
            raise PubSubError(f"Redis PUBLISH on topic {envelope.topic!r} failed: {exc}") from exc

    def _close(self) -> None:
        self._stopping.set()
        try:
            self._client.publish(self._wake, b"")
        except RedisError:
            pass  # the listener notices the stop flag within its poll interval anyway
        if threading.current_thread() is not self._listener:
            self._listener.join(_POLL_S * 5)
        self._release()

    # --- the listener thread -------------------------------------------------------------------

    def _await_confirmations(self) -> None:
        pending = {"psubscribe", "subscribe"}
        deadline = time.monotonic() + SUBSCRIBE_TIMEOUT
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BackendUnavailableError(
                    f"Redis at {self._shown!r} did not confirm the subscription within {SUBSCRIBE_TIMEOUT}s"
                )
            message = self._ps.get_message(timeout=remaining)
            if message is not None:
                pending.discard(message["type"])

    def _listen(self) -> None:
        backoff = 0.1
        failing = False
        while not self._stopping.is_set():
            try:
                message = self._ps.get_message(timeout=_POLL_S)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                if self._stopping.is_set():
                    break
                if not failing:
                    logger.warning(
                        "%r lost its Redis subscription (%s); reconnecting, and messages published "
                        "meanwhile are lost",
                        self,
                        exc,
                    )
                failing = True
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                continue
            except Exception:
                # Unexpected (a protocol error...): log, and keep listening rather than go deaf.
                logger.exception("%r: error reading from Redis; continuing", self)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                continue
            if failing:
                failing = False
                backoff = 0.1
                logger.warning("%r is subscribed to Redis again", self)
            if message is None or message["type"] != "pmessage":
                continue
            self._receive_bytes(message["data"])

    def _release(self) -> None:
        try:
            self._ps.close()
        except RedisError:
            pass
        if self._owns_client:
            self._client.close()
