"""``conveyor work``: schedule Works, show queue statistics, re-run dead letters."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from conveyor.cli.common import (
    EXIT_TIMEOUT,
    EXIT_USAGE,
    ConfigOption,
    console,
    fail,
    handle_errors,
    open_node,
)
from conveyor.cli.params import parse_params

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

    params = parse_params(param)
    with open_node(config) as node:  # imports node.modules, where the Work types live
        cls = lookup(work_type)
        if cls is None:
            known = ", ".join(sorted(registered_work_types())) or "none (set node.modules in the config)"
            fail(f"unknown Work type {work_type!r}; registered types: {known}", EXIT_USAGE)
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
        if run and not manager.await_completion(queue_id, timeout=timeout):
            fail(f"queue {queue_id} not idle after {timeout:g} s", EXIT_TIMEOUT)


@app.command()
@handle_errors
def stats(config: ConfigOption = None) -> None:
    """Scheduled, running, completed and canceled Works per queue."""
    with open_node(config) as node:
        manager = node.work_manager
        table = Table("queue", "scheduled", "running", "completed", "canceled", "processing here")
        for queue_id in manager.queue_ids():
            m = manager.metrics(queue_id)
            table.add_row(
                queue_id,
                str(m.scheduled),
                str(m.running),
                str(m.completed),
                str(m.canceled),
                "yes" if manager.is_processing_enabled(queue_id) else "no",
            )
        console.print(table)


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
