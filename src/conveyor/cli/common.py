"""What every subcommand shares: loading settings, opening backends, reporting errors.

Exit codes: 0 success; 1 a Conveyor error (bad config, unreachable backend, bad input: the
message says which); 2 bad command-line usage; 3 a wait that timed out; 4 a wait given up because
no node runs what it waits for; 130 interrupted.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console

from conveyor.errors import ConveyorError
from conveyor.runtime.config import load_settings
from conveyor.runtime.settings import Settings

if TYPE_CHECKING:
    from conveyor.runtime.node import Conveyor

P = ParamSpec("P")
R = TypeVar("R")

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_NO_PROCESSOR = 4
EXIT_INTERRUPTED = 130

console = Console()
err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Configuration file (default: $CONVEYOR_CONFIG or ./conveyor.toml).",
        envvar="CONVEYOR_CONFIG",
        show_envvar=True,
    ),
]


def settings_from(config: Path | None) -> Settings:
    """The validated settings of ``config`` (or the embedded defaults)."""
    return load_settings(config)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn Conveyor errors into a one-line message and exit code 1; Ctrl-C into 130."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ConveyorError as exc:
            # soft_wrap: messages name files and keys; folding them would break paths apart
            err_console.print(f"[bold red]error:[/] {_escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_ERROR) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print ``message`` on stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {_escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def is_tty() -> bool:
    """True when stdout is a terminal (live displays only then)."""
    return sys.stdout.isatty()


@contextlib.contextmanager
def open_node(config: Path | None, *, start: bool = False) -> Iterator[Conveyor]:
    """A node from ``config`` for one command; started only when ``start`` (processing Works and
    streams), always stopped on the way out."""
    from conveyor.runtime.node import Conveyor

    node = Conveyor.from_config(config)
    try:
        if start:
            node.start()
        yield node
    finally:
        node.stop()


EXIT_FORCED = 1
"""Exit code of a node forced to stop by a second signal."""


def stop_on_signals() -> threading.Event:
    """An event set by the first SIGTERM or SIGINT; a second one exits at once (``EXIT_FORCED``)."""
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop_requested.is_set():
            err_console.print("second signal: forcing exit")
            os._exit(EXIT_FORCED)
        err_console.print(f"{signal.Signals(signum).name}: shutting down (send again to force)")
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop_requested


PIPED_WIDTH = 160
"""Width of the tables written to a pipe or a file (no terminal to fit: 80 columns would fold them)."""


def print_table(table: Any) -> None:
    """Print a Rich table on stdout: as wide as the terminal, or ``PIPED_WIDTH`` when not on one."""
    if console.is_terminal:
        console.print(table)
    else:  # Console.print never goes wider than its console: a wider one for this table
        Console(file=console.file, width=max(console.width, PIPED_WIDTH)).print(table)
