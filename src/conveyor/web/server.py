"""Serving the management app with uvicorn: in a background thread next to a running node
(``conveyor node --web``) or in the foreground (``conveyor web``)."""

from __future__ import annotations

import logging
import threading
import time

import uvicorn

from conveyor.errors import ConfigurationError
from conveyor.runtime.node import Conveyor
from conveyor.web.app import create_app
from conveyor.web.security import check_bind, is_loopback, resolve_token

__all__ = ["WebServer", "start_web_server"]

logger = logging.getLogger("conveyor.web")
START_TIMEOUT_S = 10.0


class WebServer:
    """A uvicorn server for one node's management app, on ``host``:``port`` (0: any free port).

    Refuses (``ConfigurationError``) to bind a non-loopback address without a token; the token
    defaults to ``[web] token`` or ``$CONVEYOR_WEB_TOKEN``.
    """

    def __init__(
        self, node: Conveyor, host: str | None = None, port: int | None = None, token: str | None = None
    ) -> None:
        web = node.settings.web
        self.node = node
        self.host = host or web.host
        self.token = resolve_token(token or web.token)
        check_bind(self.host, self.token)
        if not web.allowed_hosts and not is_loopback(self.host):
            logger.warning(
                "[web] allowed_hosts is empty: accepting any Host header on %s (the token protects "
                "the API); list the names clients use to refuse the others",
                self.host,
            )
        self.app = create_app(node, self.token, host=self.host)
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=web.port if port is None else port,
            log_level="warning",
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually bound (known once started)."""
        for server in getattr(self._server, "servers", []):
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return int(self._server.config.port)

    @property
    def configured_url(self) -> str:
        """``http://host:port`` as configured (the port may be 0 before start)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._server.config.port}"

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> WebServer:
        """Serve in a daemon thread; returns once the socket listens."""
        self._thread = threading.Thread(target=self._server.run, name="conveyor-web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigurationError(
                    f"cannot serve the management API on {self.host}:{self._server.config.port}"
                )
            time.sleep(0.02)
        logger.info("management API and dashboard on %s", self.url)
        return self

    def run(self) -> None:
        """Serve in this thread until interrupted (uvicorn handles SIGINT and SIGTERM)."""
        self._server.run()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and wait for the thread (at most ``timeout`` seconds)."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)


def start_web_server(
    node: Conveyor, host: str | None = None, port: int | None = None, token: str | None = None
) -> WebServer:
    """A :class:`WebServer` for ``node``, started in the background."""
    return WebServer(node, host, port, token).start()
