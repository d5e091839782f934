"""``conveyor node`` (run a node until SIGTERM/SIGINT) and ``conveyor nodes`` (list the cluster)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.common import ConfigOption, console, err_console, handle_errors, stop_on_signals
from conveyor.runtime.logging import configure_logging
from conveyor.runtime.node import Conveyor


@handle_errors
def node(
    web: Annotated[bool, typer.Option("--web", help="Also serve the management API and dashboard.")] = False,
    config: ConfigOption = None,
) -> None:
    """Run a node until SIGTERM or SIGINT, then shut down gracefully; a second signal forces exit."""
    conveyor = Conveyor.from_config(config)
    settings = conveyor.settings
    configure_logging(conveyor.node_id, settings.node.log_format, settings.node.log_level)
    stop_requested = stop_on_signals()
    conveyor.start()
    server = None
    if web:
        from conveyor.web.server import start_web_server

        server = start_web_server(conveyor)
    err_console.print(f"node {conveyor.node_id} running (data in {settings.node.data_dir.resolve()})")
    while not stop_requested.wait(0.5):
        pass
    if server is not None:
        server.stop()
    clean = conveyor.stop()
    err_console.print(
        f"node {conveyor.node_id} stopped"
        + ("" if clean else " (not clean: work left running or state not saved, see the errors above)")
    )
    raise typer.Exit(0)


@handle_errors
def nodes(config: ConfigOption = None) -> None:
    """List the nodes of the cluster (those with a recent heartbeat)."""
    conveyor = Conveyor.from_config(config)
    try:
        table = Table("node", "host", "started", "last heartbeat", "queues", "processors")
        now = time.time()
        found = conveyor.nodes()
        if not found:
            console.print(
                "no node is running (none has a recent heartbeat): start one with "
                "'conveyor node' (or 'conveyor web') on the same configuration",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
            return
        for info in found:
            if info.get("damaged"):
                table.add_row(
                    escape(info["node_id"]), "[red]damaged[/]", "-", "-", escape(info["error"]), "-"
                )
                continue
            started = dt.datetime.fromtimestamp(info["started_at"]).isoformat(timespec="seconds")
            table.add_row(
                info["node_id"],
                info["host"],
                started,
                f"{now - info['heartbeat_at']:.1f}s ago",
                ", ".join(info["queues"]) or "-",
                ", ".join(info["processors"]) or "-",
            )
        console.print(table)
    finally:
        conveyor.stop()
