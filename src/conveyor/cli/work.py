"""``conveyor work``: schedule Works, show queue statistics, re-run dead letters."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.common import (
    EXIT_ERROR,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    ConfigOption,
    console,
    fail,
    handle_errors,
    open_node,
    print_table,
)
from conveyor.cli.params import parse_params, work_params
from conveyor.work.codec import DeadLetter
from conveyor.work.dlq import DamagedDeadLetter

app = typer.Typer(help="Schedule Works and watch the WorkManager's queues.", no_args_is_help=True)

ParamOption = Annotated[
    list[str] | None, typer.Option("--param", "-p", help="A Work field as KEY=VALUE (JSON or string).")
]


@app.command()
@handle_errors
def schedule(
    work_type: Annotated[str, typer.Argument(help="Registered Work type (class name or registered name).")],
    param: ParamOption = None,
    run: Annotated[
        bool, typer.Option("--run", help="Also run the queues here until the Work is done.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="With --run: seconds to wait for completion.")] = 60.0,
    config: ConfigOption = None,
) -> None:
    """Schedule one Work of WORK_TYPE built from --param fields (its modules come from node.modules)."""
    from conveyor.work.api import registered_work_types
    from conveyor.work.api import work_type as lookup

    parse_params(param)  # malformed KEY=VALUE pairs are refused before any backend is opened
    with open_node(config) as node:  # imports node.modules, where the Work types live
        cls = lookup(work_type)
        if cls is None:
            known = ", ".join(sorted(registered_work_types())) or "none (set node.modules in the config)"
            fail(f"unknown Work type {work_type!r}; registered types: {known}", EXIT_USAGE)
        params = work_params(cls, param)  # each value checked against its field's type
        try:
            work = cls(**params)
        except (TypeError, ValueError) as exc:
            fail(f"cannot build {work_type} from the given --param values: {exc}", EXIT_USAGE)
        manager = node.work_manager
        queue_id = manager.category_queue(work.get_category())
        if run:
            node.start()
        manager.schedule(work, after_commit=False)
        console.print(f"scheduled {work_type} id={work.id} on queue {queue_id}", highlight=False)
        if not run:
            return
        if not manager.await_completion(queue_id, timeout=timeout):
            fail(f"queue {queue_id} not idle after {timeout:g} s", EXIT_TIMEOUT)
        failed = [letter for letter in manager.dead_letters() if letter.id == work.id]
        if failed:
            fail(
                f"Work {work_type} id={work.id} failed and went to the dead letters: {failed[-1].error} "
                f"(see 'conveyor work dead-letters show {work.id}')",
                EXIT_ERROR,
            )


@app.command()
@handle_errors
def stats(config: ConfigOption = None) -> None:
    """Scheduled, running, completed (succeeded, failed, dead-lettered) and canceled Works per queue."""
    with open_node(config) as node:
        manager = node.work_manager
        table = Table(
            "queue",
            "scheduled",
            "running",
            "succeeded",
            "failed",
            "dead-lettered",
            "canceled",
            "processing here",
        )
        lettered = 0
        for queue_id in manager.queue_ids():
            m = manager.metrics(queue_id)
            lettered += m.dead_lettered
            table.add_row(
                queue_id,
                str(m.scheduled),
                str(m.running),
                str(m.succeeded),
                str(m.failed),
                str(m.dead_lettered),
                str(m.canceled),
                "yes" if manager.is_processing_enabled(queue_id) else "no",
            )
        print_table(table)
        if lettered:
            console.print(
                "failed: raised an error on their last attempt; dead-lettered: those and the Works that "
                "could not be decoded or killed their process ('conveyor work dead-letters' lists them)",
                highlight=False,
                soft_wrap=True,
            )


@app.command()
@handle_errors
def queues(config: ConfigOption = None) -> None:
    """The configured queues: threads, categories, capacity."""
    with open_node(config) as node:
        manager = node.work_manager
        table = Table("queue", "name", "max threads", "categories", "capacity")
        for queue_id in manager.queue_ids():
            cfg = manager.queue_config(queue_id)
            table.add_row(
                cfg.id,
                cfg.name or cfg.id,
                str(cfg.max_threads),
                ", ".join(cfg.categories) or "-",
                str(cfg.capacity or "-"),
            )
        console.print(table)


@app.command("rerun-failed")
@handle_errors
def rerun_failed(
    category: Annotated[str | None, typer.Option(help="Only Works of this category.")] = None,
    config: ConfigOption = None,
) -> None:
    """Schedule again the Works that exhausted their retries (the dead letters)."""
    with open_node(config) as node:
        count = node.work_manager.rerun_failed(category)
        console.print(f"rescheduled {count} failed Work(s)")


dead_letters_app = typer.Typer(
    help="The dead letters: Works that failed for good. List them, show one, run them again.",
    invoke_without_command=True,
)
app.add_typer(dead_letters_app, name="dead-letters")

JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per dead letter, per line.")]


def _when(timestamp: float) -> str:
    if not timestamp:
        return "-"
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).isoformat(timespec="seconds")


def _letter_dict(letter: DeadLetter, *, full: bool = False) -> dict[str, Any]:
    """A dead letter as plain data (its Work's bytes only when ``full``, as text or base64)."""
    data: dict[str, Any] = {
        "id": letter.id,
        "type": letter.type,
        "queue": letter.queue,
        "category": letter.category,
        "failed_at": _when(letter.failed_at) if letter.failed_at else None,
        "error": letter.error,
        "damaged": isinstance(letter, DamagedDeadLetter),
    }
    if isinstance(letter, DamagedDeadLetter):
        data["position"] = letter.position
        data["size"] = len(letter.data)
    if full:
        data["traceback"] = letter.traceback
        try:
            data["work"] = letter.data.decode("utf-8")
        except UnicodeDecodeError:
            data["work_base64"] = base64.b64encode(letter.data).decode("ascii")
    return data


def _json_line(data: dict[str, Any]) -> None:
    """One JSON object on one line of stdout, whatever its length (never folded)."""
    console.file.write(json.dumps(data, ensure_ascii=False) + "\n")
    console.file.flush()


def _first_line(text: str, limit: int = 120) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _list_letters(as_json: bool, config: Path | None) -> None:
    with open_node(config) as node:
        letters = node.work_manager.dead_letters()
    if as_json:
        for letter in letters:
            _json_line(_letter_dict(letter))
        return
    if not letters:
        console.print("no dead letters", highlight=False)
        return
    table = Table()
    table.add_column("id", no_wrap=True)  # ids are copied from here: never folded nor cut
    table.add_column("type", overflow="fold")
    table.add_column("queue", overflow="fold")
    table.add_column("failed at (UTC)")
    table.add_column("error", ratio=1)
    for letter in letters:
        if isinstance(letter, DamagedDeadLetter):
            table.add_row(
                escape(letter.id),
                escape(letter.type),
                escape(letter.queue),
                "[red]damaged[/]",
                escape(_first_line(letter.error)),
            )
        else:
            table.add_row(
                escape(letter.id),
                escape(letter.type),
                escape(letter.queue),
                _when(letter.failed_at).replace("T", " ").removesuffix("+00:00"),
                escape(_first_line(letter.error)),
            )
    print_table(table)
    console.print(
        f"{len(letters)} dead letter(s); 'conveyor work dead-letters show ID' for one with its traceback",
        highlight=False,
        soft_wrap=True,
    )


@dead_letters_app.callback()
@handle_errors
def dead_letters(ctx: typer.Context, as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """List the dead letters (Works that failed for good, not re-run yet), oldest first."""
    if ctx.invoked_subcommand is None:
        _list_letters(as_json, config)


@dead_letters_app.command("list")
@handle_errors
def dead_letters_list(as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """List the dead letters (Works that failed for good, not re-run yet), oldest first."""
    _list_letters(as_json, config)


@dead_letters_app.command("show")
@handle_errors
def dead_letters_show(
    work_id: Annotated[str, typer.Argument(metavar="ID", help="The Work id (as listed).")],
    as_json: Annotated[bool, typer.Option("--json", help="As a JSON object.")] = False,
    config: ConfigOption = None,
) -> None:
    """Show the dead letter of the Work ID: its error, traceback and fields."""
    with open_node(config) as node:
        found = [letter for letter in node.work_manager.dead_letters() if letter.id == work_id]
    if not found:
        fail(f"no dead letter for Work {work_id!r} (list them with 'conveyor work dead-letters')")
    for letter in found:  # the same Work may have failed for good more than once
        data = _letter_dict(letter, full=True)
        if as_json:
            _json_line(data)
            continue
        out = console.file
        if isinstance(letter, DamagedDeadLetter):
            out.write(
                f"DAMAGED dead letter at {letter.position} ({data['size']} bytes): it cannot be decoded, "
                "so it cannot be re-run; it is kept as it is\n"
            )
        for name in ("id", "type", "queue", "category", "failed_at", "error"):
            out.write(f"{name}: {data[name] if data[name] is not None else '-'}\n")
        if data.get("work") is not None:
            out.write(f"work: {data['work']}\n")
        elif data.get("work_base64") is not None:
            out.write(f"work (base64): {data['work_base64']}\n")
        trace = data["traceback"] or "(none kept)"
        out.write("traceback:\n" + trace + ("" if trace.endswith("\n") else "\n"))
        out.flush()


@dead_letters_app.command("rerun")
@handle_errors
def dead_letters_rerun(
    work_ids: Annotated[
        list[str] | None, typer.Argument(metavar="[ID]...", help="Work ids of the dead letters to re-run.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Re-run every dead letter.")] = False,
    category: Annotated[str | None, typer.Option(help="Only Works of this category.")] = None,
    config: ConfigOption = None,
) -> None:
    """Schedule again the dead letters of the Works ID... (or --all); they leave the dead letters."""
    if bool(work_ids) == all_:
        fail("give the Work ids to re-run, or --all (not both)", EXIT_USAGE)
    with open_node(config) as node:
        manager = node.work_manager
        if all_:
            count = manager.rerun_failed(category)
            console.print(f"rescheduled {count} failed Work(s)", highlight=False)
            return
        wanted = set(work_ids or ())
        letters = [letter for letter in manager.dead_letters() if letter.id in wanted]
        missing = sorted(wanted - {letter.id for letter in letters})
        damaged = sorted({letter.id for letter in letters if isinstance(letter, DamagedDeadLetter)})
        count = manager.rerun_failed(category, ids=wanted)
        console.print(f"rescheduled {count} failed Work(s)", highlight=False)
        if damaged:
            fail(f"damaged dead letter(s), kept and not re-run: {', '.join(damaged)}")
        if missing:
            fail(f"no dead letter for Work(s) {', '.join(missing)}")
