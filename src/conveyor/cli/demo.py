"""``conveyor demo``: the whole platform at work on the embedded default, in one command.

It fills a document repository, schedules a batch of Works, runs a two-step stream topology and
submits a bulk command over the documents, each with a progress bar, then prints what ran, how
fast, and where the data lives. Everything is stored under the data directory (no server).

The stream computations work by batches and checkpoint once per batch: a checkpoint is an append
and a commit, each written to disk, so asking for one per record (as a naive computation does)
caps the topology at about 2,000 records/s on the local log instead of 20,000 and more.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from conveyor.cli.common import console, fail, handle_errors
from conveyor.record import Record, Watermark
from conveyor.runtime.node import Conveyor
from conveyor.stream import (
    BatchComputation,
    ComputationContext,
    ComputationPolicy,
    StreamProcessor,
    Topology,
)
from conveyor.stream import Settings as StreamSettings
from conveyor.work import Work

DEMO_QUEUE = "demo"
IMPORT_CHUNK = 500
"""Documents per import call (the progress bar moves once per call)."""
APPEND_CHUNK = 1000
"""Sentences per append to the stream's input."""
STREAM_THREADS = 2
"""Threads per stream computation."""
STREAM_PARTITIONS = 4
STREAM_BATCH = 500
"""Records per batch of the stream computations, and so per checkpoint."""
STREAM_BATCH_WAIT_S = 0.05
"""Longest wait before a partial batch is processed (the tail of the input)."""
STREAM_TARGET_RATE = 20_000
"""Records/s the stream step should reach on the local log; the demo says why when it does not."""
POLL_S = 0.05


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


class Upper(BatchComputation):
    """Upper-cases each sentence and passes it on (a checkpoint per batch)."""

    def __init__(self) -> None:
        super().__init__("demo-upper", inputs=1, outputs=1)

    def batch_process(self, context: ComputationContext, input_stream: str, records: list[Record]) -> None:
        for record in records:
            context.produce_record("o1", Record(record.key, record.data.upper(), record.watermark))


class CountWords(BatchComputation):
    """Counts the words of each sentence, keyed by sentence, and emits the count (a checkpoint per
    batch)."""

    def __init__(self) -> None:
        super().__init__("demo-count", inputs=1, outputs=1)

    def batch_process(self, context: ComputationContext, input_stream: str, records: list[Record]) -> None:
        for record in records:
            count = len(record.data.split())
            context.produce_record("o1", Record(record.key, str(count).encode(), record.watermark))


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
            time.sleep(POLL_S)
            done = current()
        progress.update(task, completed=done)
    return done


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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
        imported = 0
        with _progress() as progress:
            task = progress.add_task("repository import", total=documents)
            for chunk in _chunks(demo_documents(documents), IMPORT_CHUNK):
                imported += node.repository.import_documents(chunk)
                progress.update(task, completed=imported)
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
        steps.append(_stream_step(node, records, timeout))

        # 4. a bulk command
        steps.append(_bulk_step(node, timeout))
    return steps


def _stream_step(node: Conveyor, records: int, timeout: float) -> Step:
    """Append ``records`` sentences and run them through ``Upper`` then ``CountWords``."""
    topology = (
        Topology.builder()
        .add_computation(Upper, ["i1:demo/sentences", "o1:demo/upper"])
        .add_computation(CountWords, ["i1:demo/upper", "o1:demo/counts"])
        .build()
    )
    log = node.log_manager
    policy = ComputationPolicy(
        max_retries=3, batch_capacity=STREAM_BATCH, batch_threshold_s=STREAM_BATCH_WAIT_S
    )
    # A single process owns the streams: a short starving timeout ends the drain soon after the
    # last record instead of 0.2 s per computation.
    stream_settings = StreamSettings(
        concurrency=STREAM_THREADS, partitions=STREAM_PARTITIONS, policy=policy, starving_timeout_s=0.05
    )
    processor = StreamProcessor(log, topology, stream_settings)
    processor.start()
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    cpu_started = time.process_time()

    appender = log.appender("demo/sentences")
    with _progress() as progress:
        sent = progress.add_task("stream: sentences appended", total=records)
        upper = progress.add_task("stream: demo-upper", total=records)
        count = progress.add_task("stream: demo-count", total=records)

        def show() -> int:
            """Update the computations' bars; records counted, or ``records`` once a computation
            failed (nothing more to wait for: the drain says it)."""
            status = processor.status()
            progress.update(upper, completed=status["demo-upper"].records)
            progress.update(count, completed=status["demo-count"].records)
            if any(s.state == "failed" for s in status.values()):
                return records
            return status["demo-count"].records

        appended = 0
        for chunk in _chunks(range(records), APPEND_CHUNK):
            # One event time per chunk: the sentences of a chunk are written at the same moment.
            stamp = Watermark.of_now().value
            appender.append_many(
                [(f"s{i}", Record(f"s{i}", f"the quick brown fox number {i}".encode(), stamp)) for i in chunk]
            )
            appended += len(chunk)
            progress.update(sent, completed=appended)
            show()
        while show() < records and time.monotonic() < deadline:
            time.sleep(POLL_S)
        drained = processor.drain_and_stop(max(1.0, deadline - time.monotonic()))
        show()
    seconds = time.monotonic() - started
    cpu_seconds = time.process_time() - cpu_started
    lag = log.lag("demo/upper", "demo/count")
    done = records - min(records, lag.lag)
    console.print(f"stream topology drained: {drained}; lag of demo-count: {lag.lag}")
    step = Step(
        "stream topology",
        done,
        seconds,
        f"upper -> count, {STREAM_THREADS} threads each, a checkpoint per {STREAM_BATCH} records"
        + ("" if drained else " (timeout)"),
    )
    if drained and step.rate < STREAM_TARGET_RATE:
        console.print(
            f"stream topology: {step.rate:,.0f} records/s, below {STREAM_TARGET_RATE:,}/s: "
            f"{_why_slow(records, seconds, cpu_seconds)}",
            highlight=False,
        )
    return step


def _why_slow(records: int, seconds: float, cpu_seconds: float) -> str:
    """The likeliest reason the stream step is below its target rate on this machine."""
    if records < STREAM_TARGET_RATE:
        return (
            f"{records:,} records are too few to measure: starting and draining the topology "
            "takes about 0.1 s whatever the count"
        )
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0]
    used = f"the demo used {cpu_seconds:.1f} s of CPU in {seconds:.1f} s"
    if load > cores and cpu_seconds < 0.8 * seconds:
        return f"the machine is busy (load average {load:.1f} on {cores} cores): {used}"
    return (
        f"{used}: the computations are Python threads sharing one interpreter lock, so they get "
        "about one core, and a large part of it goes to decoding and encoding every record twice "
        "with the default avro codec"
    )


def _bulk_step(node: Conveyor, timeout: float) -> Step:
    """Set a property on every File of the repository with a bulk command."""
    from conveyor.bulk import BulkCommand

    service = node.bulk_service
    started = time.monotonic()
    deadline = started + timeout
    label = "bulk setProperties"
    command_id = service.submit(
        BulkCommand(
            action="setProperties",
            query="SELECT * FROM Document WHERE ecm:primaryType = 'File'",
            params={"dc:source": "bulk-demo"},
            bucket_size=200,
            batch_size=50,
        )
    )
    with _progress() as progress:
        # The total is known once the query's scroll has counted the documents.
        task = progress.add_task(label, total=None)
        while True:
            status = service.status(command_id)
            progress.update(task, completed=status.processed, total=status.total or None)
            if status.is_completed or time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
    changed = node.repository.count("SELECT * FROM Document WHERE dc:source = 'bulk-demo'")
    console.print(f"documents with dc:source = 'bulk-demo': {changed}")
    return Step(
        label,
        status.processed,
        time.monotonic() - started,
        f"{status.state.value}, {status.error_count} errors",
    )


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
