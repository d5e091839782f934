"""``conveyor web``: run a node with the management API, dashboard and ``/metrics``.

Register it on the main app with ``web.register(app)`` (adds the ``web`` command).
"""

from __future__ import annotations

import inspect
from typing import Annotated

import typer
from rich.markup import escape

from conveyor.cli.common import ConfigOption, err_console, handle_errors, stop_on_signals

__all__ = ["register", "web"]


@handle_errors
def web(
    host: Annotated[
        str | None, typer.Option("--host", help=escape("Address to bind (default: [web] host, 127.0.0.1)."))
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", help=escape("Port to listen on (default: [web] port, 8080)."), min=0, max=65535
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Run a node and serve its management API and dashboard until SIGTERM or Ctrl-C.

    Binding an address other than 127.0.0.1 needs an API token ([web] token or $CONVEYOR_WEB_TOKEN).
    """
    from conveyor.runtime.logging import configure_logging
    from conveyor.runtime.node import Conveyor
    from conveyor.web.server import WebServer

    node = Conveyor.from_config(config)
    settings = node.settings
    server = WebServer(node, host=host, port=port)  # refuses a public address without a token
    configure_logging(node.node_id, settings.node.log_format, settings.node.log_level)
    stop_requested = stop_on_signals()
    node.start()
    try:
        server.start()
        err_console.print(
            f"node {node.node_id}: dashboard on {server.url}/ (API at /api/v1, OpenAPI at /docs, "
            "metrics at /metrics)",
            highlight=False,
        )
        while not stop_requested.wait(0.5):
            pass
    finally:
        server.stop()
        clean = node.stop()
        err_console.print(f"node {node.node_id} stopped{'' if clean else ' (timeout)'}")


def register(app: typer.Typer) -> None:
    """Add the ``web`` command to the ``conveyor`` app."""
    # the help is Rich markup: "[web]" would be taken for a style and vanish
    app.command("web", help=escape(inspect.getdoc(web) or ""))(web)
