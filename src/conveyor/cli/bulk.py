"""``conveyor bulk``: submit bulk commands, follow them with a progress bar, abort them."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from conveyor.cli.common import (
    EXIT_ERROR,
    EXIT_NO_PROCESSOR,
    EXIT_TIMEOUT,
    ConfigOption,
    console,
    err_console,
    fail,
    handle_errors,
    is_tty,
    open_node,
)
from conveyor.cli.params import parse_params

if TYPE_CHECKING:
    from conveyor.bulk import BulkService
    from conveyor.runtime.node import Conveyor

app = typer.Typer(help="Run actions over the documents a query selects.", no_args_is_help=True)

TERMINAL_STATES = frozenset({"COMPLETED", "ABORTED", "UNKNOWN"})


def _state(status: Any) -> str:
    state = status.state
    return str(getattr(state, "value", state))


def _damaged(status: Any) -> bool:
    return bool(getattr(status, "damaged", False))


def status_dict(status: Any) -> dict[str, Any]:
    """A bulk status as plain JSON-able data (``damaged`` true, with ``size``, for a stored status
    that cannot be decoded)."""
    if _damaged(status):
        return {
            "command_id": status.command_id,
            "state": _state(status),
            "damaged": True,
            "size": getattr(status, "size", None),
            "error_message": status.error_message,
        }
    if hasattr(status, "to_dict"):
        data: dict[str, Any] = status.to_dict()
        return data
    return {
        name: getattr(status, name)
        for name in (
            "command_id",
            "action",
            "username",
            "processed",
            "skip_count",
            "error_count",
            "error_message",
            "total",
            "result",
        )
        if hasattr(status, name)
    } | {"state": _state(status)}


NODES_CHECK_S = 1.0
"""How often, past the grace period, a follower looks for a node running the bulk computations."""


def nobody_processes(node: Conveyor) -> bool:
    """True when no node of the cluster (by their heartbeats) runs the bulk computations."""
    from conveyor.runtime.node import BULK_PROCESSOR

    return not any(BULK_PROCESSOR in info.get("processors", ()) for info in node.nodes())


def follow(
    service: BulkService, command_id: str, timeout: float, *, label: str = "", node: Conveyor | None = None
) -> Any:
    """Poll ``command_id`` until it ends or ``timeout`` passes, with a progress bar on a terminal.

    With ``node`` (a client that does not process here): once the command has been SCHEDULED for
    ``[bulk] wait_grace_s`` seconds and no node of the cluster runs the bulk computations, give up
    with a message and exit code 4 (the command stays queued).
    """
    deadline = time.monotonic() + timeout
    grace = node.settings.bulk.wait_grace_s if node is not None else 0.0
    next_check = time.monotonic() + grace
    status = service.status(command_id)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8.0f}/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not is_tty(),
        transient=False,
    ) as progress:
        task = progress.add_task(label or f"bulk {command_id[:8]}", total=None, rate=0.0)
        started = time.monotonic()
        while True:
            status = service.status(command_id)
            total = status.total or None
            elapsed = max(time.monotonic() - started, 1e-6)
            progress.update(
                task,
                completed=status.processed,
                total=total,
                rate=status.processed / elapsed,
                description=f"{label or 'bulk ' + command_id[:8]} {_state(status).lower()}",
            )
            if _state(status) in TERMINAL_STATES or time.monotonic() >= deadline:
                return status
            if node is not None and _state(status) == "SCHEDULED" and time.monotonic() >= next_check:
                next_check = time.monotonic() + NODES_CHECK_S
                if nobody_processes(node):
                    progress.stop()
                    fail(
                        f"bulk command {command_id} is still SCHEDULED after {grace:g} s and no node runs "
                        "the bulk computations (none listed by 'conveyor nodes' has the 'bulk' processor): "
                        "start 'conveyor node' with [bulk] processing = true, the command stays queued and "
                        "runs then; or process it in this command with --run",
                        EXIT_NO_PROCESSOR,
                    )
            time.sleep(0.2)


@app.command()
@handle_errors
def submit(
    action: Annotated[str, typer.Argument(help="Bulk action name, e.g. setProperties, trash, csvExport.")],
    query: Annotated[str, typer.Option("--query", "-q", help="NXQL query selecting the documents.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Action parameter KEY=VALUE.")
    ] = None,
    bucket_size: Annotated[
        int | None,
        typer.Option(min=1, help="Documents per bucket (default: the action's, 100 for the built-ins)."),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1, help="Documents per batch inside a bucket (default: the action's, 25 for the built-ins)."
        ),
    ] = None,
    username: Annotated[str, typer.Option(help="Who submits the command.")] = "system",
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Follow the command to its end (the nodes run it; exit 4 when none runs bulk commands).",
        ),
    ] = False,
    run: Annotated[
        bool,
        typer.Option(
            "--run", help="Run the bulk computations in this command until it ends (implies --wait)."
        ),
    ] = False,
    timeout: Annotated[float, typer.Option(help="With --wait or --run: seconds before giving up.")] = 600.0,
    config: ConfigOption = None,
) -> None:
    """Submit a bulk command; print its id (and with --wait, follow it to the end)."""
    from conveyor.bulk import BulkCommand

    command = BulkCommand(
        action=action,
        query=query,
        params=parse_params(param),
        bucket_size=bucket_size,
        batch_size=batch_size,
        username=username,
    )
    with open_node(config) as node:  # a client: nodes run the command, unless --run
        service = node.bulk_service
        if run:
            service.start_processing()
        command_id = service.submit(command)
        console.print(command_id, highlight=False)
        if wait or run:
            status = follow(service, command_id, timeout, label=action, node=None if run else node)
            _report(status, timeout)


def _report(status: Any, timeout: float) -> None:
    console.print_json(json.dumps(status_dict(status), default=str))
    if _damaged(status):
        fail(_damaged_message(status))
    state = _state(status)
    if state not in TERMINAL_STATES:
        fail(f"command still {state} after {timeout:g} s", EXIT_TIMEOUT)
    if state != "COMPLETED":
        raise typer.Exit(EXIT_ERROR)


@app.command()
@handle_errors
def status(command_id: str, config: ConfigOption = None) -> None:
    """Print the status of a bulk command as JSON (exit 1 when its stored status is damaged)."""
    with open_node(config) as node:
        current = node.bulk_service.status(command_id)
        if _state(current) == "UNKNOWN" and not _damaged(current):
            fail(f"no bulk command {command_id!r}")
        console.print_json(json.dumps(status_dict(current), default=str))
        if _damaged(current):
            fail(_damaged_message(current))


def _damaged_message(status: Any) -> str:
    return (
        f"bulk command {status.command_id}: {status.error_message}; "
        f"'conveyor bulk abort {status.command_id}' replaces it with an ABORTED status"
    )


def _existing(service: BulkService, command_id: str) -> Any:
    """The status of ``command_id``; exits 1 when there is no such command or its stored status
    is damaged."""
    current = service.status(command_id)
    if _damaged(current):
        fail(_damaged_message(current))
    if _state(current) == "UNKNOWN":
        fail(f"no bulk command {command_id!r}")
    return current


@app.command("wait")
@handle_errors
def wait_command(
    command_id: str,
    timeout: Annotated[float, typer.Option(help="Seconds before giving up (exit 3).")] = 600.0,
    run: Annotated[
        bool, typer.Option("--run", help="Run the bulk computations in this command until it ends.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Follow a bulk command with a progress bar (rate, ETA) until it completes or is aborted."""
    with open_node(config) as node:
        service = node.bulk_service
        _existing(service, command_id)
        if run:
            service.start_processing()
        _report(follow(service, command_id, timeout, node=None if run else node), timeout)


@app.command()
@handle_errors
def abort(command_id: str, config: ConfigOption = None) -> None:
    """Abort a bulk command: buckets not yet processed are skipped (a damaged stored status is
    replaced with an ABORTED one)."""
    with open_node(config) as node:
        service = node.bulk_service
        was_damaged = _damaged(service.status(command_id))
        current = service.abort(command_id)
        if _state(current) == "UNKNOWN":
            fail(f"no bulk command {command_id!r}")
        console.print_json(json.dumps(status_dict(current), default=str))
        if was_damaged:
            err_console.print(
                f"bulk command {command_id}: its stored status was damaged; replaced with an ABORTED "
                "status (its counters are lost)",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )


@app.command("result")
@handle_errors
def result_command(
    command_id: str,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write the command's file (csvExport's CSV) here; '-' for stdout."
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Write the result of a bulk command (csvExport's file) to --output, or print its result as JSON."""
    with open_node(config) as node:
        service = node.bulk_service
        current = _existing(service, command_id)
        state = _state(current)
        if state != "COMPLETED":
            fail(
                f"bulk command {command_id} is {state}: its result is ready once COMPLETED "
                f"('conveyor bulk wait {command_id}' follows it)"
            )
        if output is None:
            console.print_json(json.dumps(dict(current.result), default=str))
            return
        blob = service.download(command_id)
        if blob is None:
            fail(
                f"bulk command {command_id} ({current.action}) has no file to download "
                f"(its result: {json.dumps(dict(current.result), default=str)}); "
                "a result file is kept in the transient store for its time to live"
            )
        written = _copy_blob(blob, output)
        if str(output) != "-":
            err_console.print(
                f"wrote {written} bytes to {output} ({blob.filename or 'result'})",
                highlight=False,
                soft_wrap=True,
            )


def _copy_blob(blob: Any, output: Path) -> int:
    """Copy ``blob`` to ``output`` (``-``: stdout) by chunks; a file appears whole or not at all."""
    written = 0
    with blob.open() as source:
        if str(output) == "-":
            out = sys.stdout.buffer
            while chunk := source.read(1 << 20):
                out.write(chunk)
                written += len(chunk)
            out.flush()
            return written
        partial = output.with_name(output.name + ".part")
        try:
            with partial.open("wb") as target:
                while chunk := source.read(1 << 20):
                    target.write(chunk)
                    written += len(chunk)
            partial.replace(output)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            fail(f"cannot write {output}: {exc.strerror or exc}")
    return written
