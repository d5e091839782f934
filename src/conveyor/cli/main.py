"""The ``conveyor`` command line: ``conveyor --help`` lists the subcommands."""

from __future__ import annotations

import json

import typer

from conveyor.cli import bulk, demo, kv, node, stream, web, work
from conveyor.cli.common import ConfigOption, console, handle_errors, settings_from

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
def config_check(config: ConfigOption = None) -> None:
    """Validate the configuration and print the effective settings (secrets masked)."""
    settings = settings_from(config)
    console.print_json(json.dumps(settings.redacted()))


def main() -> None:
    """Entry point of the ``conveyor`` script."""
    app()


if __name__ == "__main__":
    main()
