"""Pub/sub over a log (Nuxeo's ``StreamPubSubProvider``): any log URL, ``memory://``, ``kafka://``,
a ``local:///dir`` log, or ``log+<log URL>`` to say so explicitly.

Every message is appended to the one-partition log ``pubsub/pubsub``, keyed by topic. Each node
reads it with a tailer of its own group ``pubsub/pubSub-<nodeId>`` (one group per node, so every
node sees every message), positioned at the end when the provider opens (only new messages),
and never commits, as Nuxeo does. Own messages are recognised by the node id in the envelope.

``memory://`` alone is a private set of logs: nodes of one process share messages through
``memory://NAME``. The log keeps what is published (Kafka's retention, the local log's cycles);
a node that was down does not replay it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from typing import Any

from conveyor.errors import ConveyorError, LogClosedError
from conveyor.log.api import LogAppender, LogManager, LogTailer
from conveyor.log.names import Name
from conveyor.pubsub.api import PubSub
from conveyor.pubsub.envelope import Envelope, encode_envelope

__all__ = ["DEFAULT_LOG_NAME", "LogPubSub", "group_for_node"]

logger = logging.getLogger("conveyor.pubsub")

DEFAULT_LOG_NAME = "pubsub/pubsub"
READ_TIMEOUT = 0.2
"""Seconds a read waits for a message; also how soon the listener notices close()."""

_GROUP_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_MAX_BACKOFF_S = 5.0


def group_for_node(node_id: str) -> Name:
    """The consumer group of a node: ``pubsub/pubSub-<nodeId>`` (unsafe characters replaced)."""
    safe = _GROUP_UNSAFE.sub("_", node_id)
    if safe != node_id or len(safe) > 150:
        # Replacing characters could make two ids meet; a digest of the real id keeps them apart.
        digest = hashlib.sha1(node_id.encode("utf-8")).hexdigest()[:10]
        safe = f"{safe[:150]}_{digest}"
    return Name.of("pubsub", f"pubSub-{safe}")


class LogPubSub(PubSub):
    """Pub/sub over a one-partition log shared by every node (see module doc)."""

    def __init__(
        self,
        manager: LogManager,
        node_id: str | None = None,
        log_name: str | Name = DEFAULT_LOG_NAME,
        url: str = "",
        owns_manager: bool = False,
    ) -> None:
        self._manager = manager
        self._owns_manager = owns_manager
        self.log_name = Name.coerce(log_name)
        """The log carrying the messages."""
        super().__init__(node_id, url or manager.url)
        self._stopping = threading.Event()
        try:
            manager.create_if_not_exists(self.log_name, 1)
            self._appender: LogAppender[bytes] = manager.appender(self.log_name, codec="bytes")
            self.group = group_for_node(self.node_id)
            """This node's consumer group on the log."""
            self._tailer: LogTailer[bytes] = manager.create_tailer(self.group, self.log_name, codec="bytes")
            self._tailer.to_end()
        except BaseException:
            self._stopping.set()
            super().close()
            raise
        self._listener = threading.Thread(
            target=self._listen, name=f"conveyor-pubsub-log-{self.node_id}", daemon=True
        )
        self._listener.start()

    @classmethod
    def from_url(cls, url: str, node_id: str | None = None, **options: Any) -> LogPubSub:
        """Open the log manager of ``url`` (``log+`` prefix allowed) and the provider on it.

        ``log_name`` picks another log than ``pubsub/pubsub``; other ``options`` go to
        :func:`conveyor.log.open_log_manager`.
        """
        from conveyor.log import open_log_manager

        log_name = options.pop("log_name", DEFAULT_LOG_NAME)
        log_url = url[len("log+") :] if url.lower().startswith("log+") else url
        manager = open_log_manager(log_url, **options)
        try:
            return cls(manager, node_id, log_name, url, owns_manager=True)
        except BaseException:
            manager.close()
            raise

    def _send(self, envelope: Envelope) -> None:
        self._appender.append(envelope.topic, encode_envelope(envelope))

    def _close(self) -> None:
        self._stopping.set()
        listener = getattr(self, "_listener", None)
        if listener is not None and threading.current_thread() is not listener:
            listener.join(READ_TIMEOUT * 25)
        tailer = getattr(self, "_tailer", None)
        if tailer is not None:
            tailer.close()
        if self._owns_manager:
            self._manager.close()

    def _listen(self) -> None:
        backoff = 0.1
        failing = False
        while not self._stopping.is_set():
            try:
                batch = self._tailer.read_batch(100, READ_TIMEOUT)
            except LogClosedError:
                if not self._stopping.is_set():
                    logger.error("%r: its log was closed under it; no more messages will arrive", self)
                return
            except Exception as exc:
                # A broker away (Kafka) or anything unexpected: say so once, keep trying, never go deaf.
                if self._stopping.is_set():
                    return
                if not failing:
                    logger.warning(
                        "%r cannot read log %r (%s: %s); retrying",
                        self,
                        self.log_name.urn,
                        type(exc).__name__,
                        exc,
                        exc_info=not isinstance(exc, ConveyorError),
                    )
                failing = True
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                continue
            if failing:
                failing = False
                backoff = 0.1
                logger.warning("%r reads log %r again", self, self.log_name.urn)
            for record in batch:
                self._receive_bytes(record.message)
