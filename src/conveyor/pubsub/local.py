"""``local://``: pub/sub between the providers of this process (Nuxeo's ``MemPubSubProvider``).

Every provider opened on ``local://`` in this process shares one bus, as nodes on one broker
would; ``local://NAME`` is a separate bus named NAME. A ``local://`` URL with a path
(``local:///var/conveyor/log``, ``local://./var/log``) is a local *log* directory instead, and
opens the log provider on it (see :mod:`conveyor.pubsub.log_pubsub`), so one ``[log]`` URL can
serve both. Nothing leaves the process.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

from conveyor.errors import ConfigurationError
from conveyor.pubsub.api import PubSub
from conveyor.pubsub.envelope import Envelope

__all__ = ["LocalPubSub"]


class _Bus:
    """The providers of one bus; publishing hands the envelope to each of them."""

    def __init__(self) -> None:
        self.members: tuple[LocalPubSub, ...] = ()


_BUSES: dict[str, _Bus] = {}
_BUSES_LOCK = threading.Lock()


class LocalPubSub(PubSub):
    """Pub/sub within this process, shared by bus name (see module doc)."""

    def __init__(self, node_id: str | None = None, bus: str = "", url: str = "local://") -> None:
        super().__init__(node_id, url)
        self.bus = bus
        """The name of the bus (``""`` for ``local://``)."""
        with _BUSES_LOCK:
            state = _BUSES.setdefault(bus, _Bus())
            state.members = (*state.members, self)
            self._bus = state

    @classmethod
    def from_url(cls, url: str, node_id: str | None = None, **options: Any) -> PubSub:
        """Open ``local://`` or ``local://NAME``; a URL with a path opens the log provider."""
        parts = urlsplit(url)
        if parts.path.strip("/"):
            from conveyor.pubsub.log_pubsub import LogPubSub

            return LogPubSub.from_url(url, node_id=node_id, **options)
        if parts.query or options:
            raise ConfigurationError(
                f"local:// pub/sub takes no options, got {sorted(options) or parts.query!r} in {url!r}"
            )
        return cls(node_id, parts.netloc, url)

    def _send(self, envelope: Envelope) -> None:
        for member in self._bus.members:
            member._receive(envelope)

    def _close(self) -> None:
        with _BUSES_LOCK:
            self._bus.members = tuple(m for m in self._bus.members if m is not self)
            if not self._bus.members and _BUSES.get(self.bus) is self._bus:
                del _BUSES[self.bus]
