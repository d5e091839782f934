"""The pub/sub contract (Nuxeo's ``PubSubService``), the same on every provider.

A message is a topic and opaque payload bytes, sent to every node that subscribed to the topic
(fan-out, not a work queue). Each message carries the id of the node that sent it; a node does not
receive its own messages unless a subscription asks for them (``include_own=True``), which is what
Nuxeo's ``AbstractPubSubBroker`` does with its discriminator.

Delivery is at-most-once and best effort, as in Nuxeo: a node that is down, or not yet
subscribed, misses what is published meanwhile; nothing is replayed. Messages from one sender on
one topic arrive in the order they were published.

Callbacks run on one dispatcher thread per :class:`PubSub`, in arrival order, so they must return
quickly (hand long work to a WorkManager). A callback that raises is logged and the others, and
later messages, are still delivered.

Providers subclass :class:`PubSub`: they implement ``_send`` (put an envelope on the wire) and
``_close``, and hand what they receive to ``_receive`` / ``_receive_bytes``; validation, own-message
filtering and dispatch live here so every provider behaves the same.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from conveyor.errors import CodecError, PubSubClosedError, PubSubInputError
from conveyor.identifiers import check_text_id
from conveyor.pubsub.envelope import Envelope, decode_envelope

__all__ = [
    "MAX_NODE_ID_LENGTH",
    "MAX_TOPIC_BYTES",
    "Callback",
    "PubSub",
    "PubSubStats",
    "Subscription",
    "default_node_id",
    "validate_node_id",
    "validate_topic",
]

logger = logging.getLogger("conveyor.pubsub")

Callback = Callable[[str, bytes], None]
"""What a subscriber is: called with ``(topic, data)`` for each message (Nuxeo's BiConsumer)."""

MAX_TOPIC_BYTES = 1024
"""Longest topic accepted, in UTF-8 bytes."""

MAX_NODE_ID_LENGTH = 200
"""Longest node id accepted."""

_DISPATCH_JOIN_TIMEOUT = 5.0


def default_node_id() -> str:
    """A node id unique to this provider: ``<hostname>-<pid>-<random>``."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def validate_node_id(node_id: object) -> str:
    """``node_id`` if usable: a non-empty ``str`` of at most 200 characters, no control character."""
    if not isinstance(node_id, str):
        raise PubSubInputError(f"node_id must be a str, got {type(node_id).__name__}")
    if not node_id.strip():
        raise PubSubInputError("node_id must not be empty")
    if len(node_id) > MAX_NODE_ID_LENGTH:
        raise PubSubInputError(
            f"node_id too long: {len(node_id)} characters, the maximum is {MAX_NODE_ID_LENGTH}"
        )
    if any(ord(c) < 32 for c in node_id):
        raise PubSubInputError(f"node_id {node_id!r} contains a control character")
    return node_id


def validate_topic(topic: object) -> str:
    """``topic`` if usable: a non-empty ``str`` of at most 1024 UTF-8 bytes, no NUL."""
    return check_text_id(topic, "topic", MAX_TOPIC_BYTES, PubSubInputError)


def _payload(data: object, topic: str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise PubSubInputError(
        f"data published on topic {topic!r} must be bytes, got {type(data).__name__} "
        "(encode it first, e.g. str.encode() or a conveyor codec)"
    )


@dataclass(frozen=True, slots=True)
class PubSubStats:
    """Counters of one provider since it was opened."""

    published: int
    """Messages this node published."""
    received: int
    """Messages that reached this node with at least one matching subscription."""
    delivered: int
    """Callback calls that returned normally."""
    callback_errors: int
    """Callback calls that raised (logged, then ignored)."""
    undecodable: int
    """Messages dropped because their bytes were not a valid envelope."""


class Subscription:
    """A callback registered on a topic; :meth:`unsubscribe` (or leaving a ``with``) ends it."""

    __slots__ = ("_active", "_pubsub", "callback", "include_own", "topic")

    def __init__(self, pubsub: PubSub, topic: str, callback: Callback, include_own: bool) -> None:
        self._pubsub = pubsub
        self.topic = topic
        """The topic subscribed to."""
        self.callback = callback
        """The function called with ``(topic, data)``."""
        self.include_own = include_own
        """Whether messages published by this same node are delivered too."""
        self._active = True

    @property
    def active(self) -> bool:
        """True until unsubscribed (or the provider closed)."""
        return self._active

    def unsubscribe(self) -> bool:
        """Stop delivery to this subscription; False when it was already inactive."""
        return self._pubsub._remove(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.unsubscribe()

    def __repr__(self) -> str:
        state = "active" if self._active else "inactive"
        return f"Subscription(topic={self.topic!r}, include_own={self.include_own}, {state})"


class PubSub(ABC):
    """Publishes messages to topics and delivers those of other nodes to local subscribers.

    Thread-safe. Opened with :func:`conveyor.pubsub.open_pubsub`; close it (or use ``with``)
    to stop its threads and release its connections.
    """

    def __init__(self, node_id: str | None = None, url: str = "") -> None:
        self.node_id = validate_node_id(node_id if node_id is not None else default_node_id())
        """The id this node's messages carry; messages carrying it are not delivered back by default."""
        self.url = url
        self._lock = threading.Lock()
        # topic -> subscriptions; tuples replaced on change so the dispatcher reads without the lock.
        self._subs: dict[str, tuple[Subscription, ...]] = {}
        self._queue: queue.SimpleQueue[Envelope | None] = queue.SimpleQueue()
        self._closed = False
        self._published = 0
        self._received = 0
        self._delivered = 0
        self._callback_errors = 0
        self._undecodable = 0
        self._dispatcher = threading.Thread(
            target=self._dispatch_loop, name=f"conveyor-pubsub-dispatch-{self.node_id}", daemon=True
        )
        self._dispatcher.start()

    # --- what a provider implements ------------------------------------------------------------

    @abstractmethod
    def _send(self, envelope: Envelope) -> None:
        """Put ``envelope`` on the wire, to every node including this one."""

    @abstractmethod
    def _close(self) -> None:
        """Stop listening and release connections (the dispatcher is stopped afterwards)."""

    # --- the public API ------------------------------------------------------------------------

    def publish(self, topic: str, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` to the subscribers of ``topic`` on every other node."""
        topic = validate_topic(topic)
        payload = _payload(data, topic)
        self._check_open()
        self._send(Envelope(self.node_id, topic, payload))
        with self._lock:
            self._published += 1

    def subscribe(self, topic: str, callback: Callback, include_own: bool = False) -> Subscription:
        """Call ``callback(topic, data)`` for each message published on ``topic`` from now on.

        Messages published by this node itself are skipped unless ``include_own`` is true.
        """
        topic = validate_topic(topic)
        if not callable(callback):
            raise PubSubInputError(f"callback for topic {topic!r} must be callable, got {callback!r}")
        if not isinstance(include_own, bool):
            raise PubSubInputError(f"include_own must be a bool, got {include_own!r}")
        subscription = Subscription(self, topic, callback, include_own)
        with self._lock:
            if self._closed:
                raise PubSubClosedError(f"{self!r} is closed")
            self._subs[topic] = (*self._subs.get(topic, ()), subscription)
        return subscription

    def unsubscribe(self, target: Subscription | str, callback: Callback | None = None) -> bool:
        """End a subscription, or those of a topic (only those with ``callback`` if given).

        Returns whether anything was unsubscribed. The ended subscriptions get no message after
        this returns (a call already under way on the dispatcher thread may still finish).
        """
        if isinstance(target, Subscription):
            if callback is not None:
                raise PubSubInputError("unsubscribe(subscription) takes no callback")
            return self._remove(target)
        topic = validate_topic(target)
        with self._lock:
            current = self._subs.get(topic, ())
            gone = [s for s in current if callback is None or s.callback == callback]
            for sub in gone:
                sub._active = False
            kept = tuple(s for s in current if s._active)
            if kept:
                self._subs[topic] = kept
            else:
                self._subs.pop(topic, None)
        return bool(gone)

    def topics(self) -> list[str]:
        """The topics with at least one active subscription, sorted."""
        with self._lock:
            return sorted(self._subs)

    def stats(self) -> PubSubStats:
        """A snapshot of this provider's counters."""
        with self._lock:
            return PubSubStats(
                self._published, self._received, self._delivered, self._callback_errors, self._undecodable
            )

    @property
    def closed(self) -> bool:
        """True once closed."""
        return self._closed

    def close(self) -> None:
        """Stop receiving, end every subscription and release the backend. Idempotent.

        Messages already received are still delivered before the dispatcher stops.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._close()
        finally:
            self._queue.put(None)
            if threading.current_thread() is not self._dispatcher:
                self._dispatcher.join(_DISPATCH_JOIN_TIMEOUT)
                if self._dispatcher.is_alive():
                    logger.warning("pub/sub dispatcher of %r still busy in a callback after close", self)
            with self._lock:
                for subs in self._subs.values():
                    for sub in subs:
                        sub._active = False
                self._subs.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        from conveyor.registry import redact_url

        return f"{type(self).__name__}({redact_url(self.url)!r}, node_id={self.node_id!r})"

    # --- for providers -------------------------------------------------------------------------

    def _receive_bytes(self, raw: bytes) -> None:
        """Hand a message read from the wire to the dispatcher (bad bytes are logged and dropped)."""
        try:
            envelope = decode_envelope(raw)
        except CodecError as exc:
            with self._lock:
                self._undecodable += 1
            logger.warning("%r dropped an undecodable message: %s", self, exc)
            return
        self._receive(envelope)

    def _receive(self, envelope: Envelope) -> None:
        """Hand a received envelope to the dispatcher, unless no subscription wants it."""
        subs = self._subs.get(envelope.topic)
        if not subs:
            return
        if envelope.node == self.node_id and not any(s.include_own for s in subs):
            return
        self._queue.put(envelope)

    def _check_open(self) -> None:
        if self._closed:
            raise PubSubClosedError(f"{self!r} is closed")

    def _remove(self, subscription: Subscription) -> bool:
        with self._lock:
            if not subscription._active:
                return False
            subscription._active = False
            kept = tuple(s for s in self._subs.get(subscription.topic, ()) if s is not subscription)
            if kept:
                self._subs[subscription.topic] = kept
            else:
                self._subs.pop(subscription.topic, None)
            return True

    # --- the dispatcher thread -----------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while True:
            envelope = self._queue.get()
            if envelope is None:
                return
            self._dispatch(envelope)

    def _dispatch(self, envelope: Envelope) -> None:
        own = envelope.node == self.node_id
        delivered = errors = 0
        wanted = [s for s in self._subs.get(envelope.topic, ()) if s.include_own or not own]
        for sub in wanted:
            if not sub._active:  # unsubscribed after this message was queued
                continue
            try:
                sub.callback(envelope.topic, envelope.data)
                delivered += 1
            except Exception:
                errors += 1
                logger.exception(
                    "pub/sub callback %r failed on topic %r (message from node %r); delivery goes on",
                    sub.callback,
                    envelope.topic,
                    envelope.node,
                )
        with self._lock:
            self._received += 1 if wanted else 0
            self._delivered += delivered
            self._callback_errors += errors
