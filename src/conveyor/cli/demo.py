"""``conveyor demo``: the whole platform at work on the embedded default, in one command.

It fills a document repository, schedules a batch of Works, runs a two-step stream topology and
submits a bulk command over the documents, each with a progress bar, then prints what ran, how
fast, and where the data lives. Everything is stored under the data directory (no server).
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from conveyor.cli.common import console, fail, handle_errors
from conveyor.record import Record
from conveyor.runtime.node import Conveyor
from conveyor.stream import Computation, ComputationContext, ComputationPolicy, StreamProcessor, Topology
from conveyor.stream import Settings as StreamSettings
from conveyor.work import Work

DEMO_QUEUE = "demo"


class ChecksumWork(Work):
    """A demo Work: checksums a document's title, as a thumbnail or a full-text Work would."""

    category = "demo"
    doc_index: int = 0

    def work(self) -> None:
        self.set_progress(0, 1)
        digest = b"conveyor"
        for _ in range(200):
            digest = hashlib.sha256(digest + str(self.doc_index).encode()).digest()
        self.set_status(digest.hex()[:12])
        self.set_progress(1, 1)


class Upper(Computation):
    """Upper-cases each sentence and passes it on."""

    def __init__(self) -> None:
        super().__init__("demo-upper", inputs=1, outputs=1)

    def process_record(self, context: ComputationContext, input_stream: str, record: Record) -> None:
        context.produce_record("o1", Record(record.key, record.data.upper()))
        context.ask_for_checkpoint()


class CountWords(Computation):
    """Counts the words of each sentence, keyed by sentence, and emits the count."""

    def __init__(self) -> None:
        super().__init__("demo-count", inputs=1, outputs=1)

    def process_record(self, context: ComputationContext, input_stream: str, record: Record) -> None:
        count = len(record.data.split())
        context.produce_record("o1", Record(record.key, str(count).encode()))
        context.ask_for_checkpoint()


@dataclass
class Step:
    """One line of the final summary."""

    name: str
    items: int
    seconds: float
    detail: str

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _track(description: str, total: int, current: Callable[[], int], timeout: float) -> int:
    """Show ``current()`` against ``total`` until it reaches it or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    with _progress() as progress:
        task = progress.add_task(description, total=total)
        done = current()
        while done < total and time.monotonic() < deadline:
            progress.update(task, completed=done)
            time.sleep(0.1)
            done = current()
        progress.update(task, completed=done)
    return done


def demo_documents(count: int) -> list[dict[str, Any]]:
    """``count`` sample documents: Files and Notes in a few folders."""
    return [
        {
            "type": "File" if i % 3 else "Note",
            "name": f"doc-{i:06d}",
            "parent_path": f"/demo/folder-{i % 10}",
            "properties": {"dc:title": f"Document {i}", "dc:source": "demo", "demo:index": i},
        }
        for i in range(count)
    ]


def run_demo(data_dir: Path, documents: int, works: int, records: int, timeout: float) -> list[Step]:
    """Run the four steps on a node under ``data_dir``; returns the summary lines."""
    settings: dict[str, Any] = {
        "node": {"id": "demo-node", "data_dir": str(data_dir)},
        "work": {"queues": [{"id": DEMO_QUEUE, "max_threads": 4, "categories": ["demo"]}]},
    }
    steps: list[Step] = []
    with Conveyor.from_config(settings) as node:
        console.print(f"[bold]node[/] {node.node_id}: data under {data_dir}", highlight=False)

        # 1. the repository
        started = time.monotonic()
        imported = node.repository.import_documents(demo_documents(documents))
        steps.append(Step("repository import", imported, time.monotonic() - started, "documents"))
        console.print(f"imported {imported} documents into the repository")

        # 2. Works
        manager = node.work_manager
        started = time.monotonic()
        before = manager.metrics(DEMO_QUEUE).completed
        for i in range(works):
            manager.schedule(ChecksumWork(doc_index=i), after_commit=False)
        done = _track(
            f"Works on queue '{DEMO_QUEUE}'",
            works,
            lambda: manager.metrics(DEMO_QUEUE).completed - before,
            timeout,
        )
        steps.append(Step("works (4 threads)", done, time.monotonic() - started, "ChecksumWork"))

        # 3. a stream topology: sentences -> upper -> word counts
        topology = (
            Topology.builder()
            .add_computation(Upper, ["i1:demo/sentences", "o1:demo/upper"])
            .add_computation(CountWords, ["i1:demo/upper", "o1:demo/counts"])
            .build()
        )
        log = node.log_manager
        stream_settings = StreamSettings(concurrency=2, partitions=4, policy=ComputationPolicy(max_retries=3))
        processor = StreamProcessor(log, topology, stream_settings)
        processor.start()
        started = time.monotonic()
        appender = log.appender("demo/sentences")
        for i in range(records):
            appender.append(f"s{i}", Record(f"s{i}", f"the quick brown fox number {i}".encode()))
        drained = processor.drain_and_stop(timeout)
        lag = log.lag("demo/upper", "demo/count")
        processed = records - min(records, lag.lag)
        steps.append(
            Step(
                "stream topology",
                processed,
                time.monotonic() - started,
                "upper -> count, 2 threads each" + ("" if drained else " (timeout)"),
            )
        )
        console.print(f"stream topology drained: {drained}; lag of demo-count: {lag.lag}")

        # 4. a bulk command
        from conveyor.bulk import BulkCommand
        from conveyor.cli.bulk import follow

        service = node.bulk_service
        started = time.monotonic()
        command_id = service.submit(
            BulkCommand(
                action="setProperties",
                query="SELECT * FROM Document WHERE ecm:primaryType = 'File'",
                params={"dc:source": "bulk-demo"},
                bucket_size=200,
                batch_size=50,
            )
        )
        status = follow(service, command_id, timeout, label="bulk setProperties")
        steps.append(
            Step(
                "bulk setProperties",
                status.processed,
                time.monotonic() - started,
                f"{status.state.value if hasattr(status.state, 'value') else status.state}, "
                f"{status.error_count} errors",
            )
        )
        changed = node.repository.count("SELECT * FROM Document WHERE dc:source = 'bulk-demo'")
        console.print(f"documents with dc:source = 'bulk-demo': {changed}")
    return steps


def demo(
    data_dir: Annotated[Path, typer.Option(help="Where the demo keeps its data (emptied first).")] = Path(
        "./var/demo"
    ),
    documents: Annotated[int, typer.Option(min=1, help="Documents to import.")] = 5000,
    works: Annotated[int, typer.Option(min=1, help="Works to schedule.")] = 500,
    records: Annotated[int, typer.Option(min=1, help="Records through the stream topology.")] = 20000,
    timeout: Annotated[float, typer.Option(help="Seconds each step may take.")] = 120.0,
) -> None:
    """Show the platform at work on the embedded default: repository, Works, a stream topology and a
    bulk command, with progress bars and a summary."""
    handle_errors(_demo)(data_dir, documents, works, records, timeout)


def _demo(data_dir: Path, documents: int, works: int, records: int, timeout: float) -> None:
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir = data_dir.resolve()
    steps = run_demo(data_dir, documents, works, records, timeout)
    table = Table("step", "items", "seconds", "items/s", "detail", title="What ran")
    for step in steps:
        table.add_row(step.name, str(step.items), f"{step.seconds:.2f}", f"{step.rate:,.0f}", step.detail)
    console.print(table)
    console.print(
        f"data: log {data_dir / 'log'}, key-value store {data_dir / 'kv.db'}, "
        f"repository {data_dir / 'repository.db'}",
        highlight=False,
    )
    incomplete = [s.name for s in steps if s.items == 0]
    if incomplete:
        fail(f"steps that did nothing: {', '.join(incomplete)}")
