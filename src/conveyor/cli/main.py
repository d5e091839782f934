"""The ``conveyor`` command line: ``conveyor --help`` lists the subcommands."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from conveyor.cli import bulk, demo, kv, node, stream, web, work
from conveyor.cli.common import (
    ConfigOption,
    console,
    err_console,
    fail,
    handle_errors,
    open_node,
    settings_from,
)
from conveyor.errors import ConveyorError

app = typer.Typer(
    name="conveyor",
    help="Conveyor: Works, streams, bulk actions, key-value stores, on one machine or a cluster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(stream.app, name="stream")
app.add_typer(kv.app, name="kv")
app.add_typer(work.app, name="work")
app.add_typer(bulk.app, name="bulk")
app.command("demo")(demo.demo)
app.command("node")(node.node)
app.command("nodes")(node.nodes)
web.register(app)

config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("check")
@handle_errors
def config_check(
    connect: Annotated[
        bool, typer.Option("--connect", help="Also reach the log, key-value and repository backends.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Validate the configuration and print the effective settings (secrets masked)."""
    settings = settings_from(config)
    console.print_json(json.dumps(settings.redacted()))
    if connect:
        _probe_backends(config)


def _probe_backends(config: Path | None) -> None:
    from conveyor.runtime.config import config_path
    from conveyor.runtime.node import NODES_STORE

    origin = config_path(config) or "<embedded defaults>"
    with open_node(config) as node:
        probes: list[tuple[str, Callable[[], object]]] = [
            ("log.url", node.log_manager.list_all),
            ("kv.url", lambda: node.kv_store(NODES_STORE).keys("")),
            ("repository.url", lambda: node.repository),
        ]
        for key, probe in probes:
            try:
                probe()
            except ConveyorError as exc:
                fail(f"{origin}: {key}: {exc}")
    err_console.print("backends reachable: log, kv, repository", highlight=False)


def main() -> None:
    """Entry point of the ``conveyor`` script."""
    app()


if __name__ == "__main__":
    main()
