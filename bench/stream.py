#!/usr/bin/env python3
"""Stream benchmark: records/s through a two-computation topology, against a plain loop and peers.

    .venv/bin/python bench/stream.py [--backends local,kafka] [--impls loop,processor,quix,faust]
        [--n 20000] [--partitions 4] [--concurrency 2] [--every 100] [--codec json] [--repeats 3]
        [--bootstrap HOST:PORT]

Every implementation moves the same N records of 100 bytes ``bench/in -> bench/mid -> bench/out``
(two no-op steps, 4-partition streams) on the same log, in a process of its own:

* ``processor``: a StreamProcessor running two pass-through Computations with ``concurrency``
  threads each; each thread checkpoints every ``every`` records (and every 100 ms, for the tail).
* ``loop``: the floor, without the framework: one thread per step, ``tailer.read_batch(every)``
  -> ``appender.append_many`` -> ``tailer.commit()``, with the same Record codec.
* ``quix``: Quix Streams (``quixstreams``, Kafka only), one process (it is single-threaded),
  two StreamingDataFrames ``in -> mid`` and ``mid -> out`` on raw bytes, ``commit_every=every``.
* ``faust``: Faust (``faust-streaming``, Kafka only), one worker, two agents with
  ``concurrency`` actors each on raw bytes, ``broker_commit_every=every``.

The peers are bench-only (not project dependencies): ``.venv/bin/pip install quixstreams
faust-streaming``; an implementation that cannot be imported is reported and skipped.

The input is written before the implementation starts; this process then counts the records
reaching ``bench/out`` (for Kafka, by consuming the topic: tansu's high watermarks count batches,
not records). The rate is the steady one, (N - first count) / (last - first record seen), which
leaves out interpreter start-up and consumer-group joins (seconds on tansu); the time from spawn
to the last record is printed too. Kafka: ``--bootstrap``, else ``CONVEYOR_KAFKA``, else a tansu
broker started here. Prints one JSON line per run and a Markdown table of medians [min-max].
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.services import start_tansu  # noqa: E402

from conveyor.log import LogManager, Name, open_log_manager  # noqa: E402
from conveyor.record import Record  # noqa: E402
from conveyor.stream import (  # noqa: E402
    Computation,
    ComputationContext,
    Settings,
    StreamProcessor,
    Topology,
)

STREAMS = ("bench/in", "bench/mid", "bench/out")
PAYLOAD = b"x" * 100
PEERS = {"quix": "quixstreams", "faust": "faust"}
FLUSH_MS = 100
STALL_S = 60.0
"""A run fails when no record reaches the output for that long (start-up included)."""


# --- the implementations (each runs in a worker process until SIGTERM) ---------------------------


class PassThrough(Computation):
    """Produces each record unchanged; checkpoints every ``every`` records and every FLUSH_MS."""

    every = 100

    def __init__(self, name: str) -> None:
        super().__init__(name, inputs=1, outputs=1)
        self.count = 0

    def init(self, context: ComputationContext) -> None:
        context.set_timer("flush", _now_ms() + FLUSH_MS)

    def process_timer(self, context: ComputationContext, key: str, timestamp: int) -> None:
        context.ask_for_checkpoint()
        context.set_timer("flush", _now_ms() + FLUSH_MS)

    def process_record(self, context: ComputationContext, input_stream: str, record: Record) -> None:
        context.produce_record("o1", record)
        self.count += 1
        if self.count % self.every == 0:
            context.ask_for_checkpoint()


def _now_ms() -> int:
    return int(time.time() * 1000)


def worker_processor(args: argparse.Namespace, stop: threading.Event) -> None:
    PassThrough.every = args.every
    topology = (
        Topology.builder()
        .add_computation(lambda: PassThrough("bench/pass1"), ["i1:bench/in", "o1:bench/mid"])
        .add_computation(lambda: PassThrough("bench/pass2"), ["i1:bench/mid", "o1:bench/out"])
        .build()
    )
    with open_log_manager(args.url, default_codec=args.codec) as manager:
        settings = Settings(concurrency=args.concurrency, partitions=args.partitions)
        processor = StreamProcessor(manager, topology, settings).start()
        processor.wait_for_assignments(60)
        stop.wait()
        processor.stop(10)


def worker_loop(args: argparse.Namespace, stop: threading.Event) -> None:
    with open_log_manager(args.url, default_codec=args.codec) as manager:
        errors: list[BaseException] = []

        def step(source: str, target: str) -> None:
            try:
                appender = manager.appender(target)
                group = Name.of("bench", "loop-" + Name.of_urn(source).name)
                with manager.create_tailer(group, source) as tailer:
                    while not stop.is_set():
                        batch = tailer.read_batch(args.every, 0.025)
                        if batch:
                            appender.append_many([(item.message.key, item.message) for item in batch])
                            tailer.commit()
            except BaseException as exc:
                errors.append(exc)
                stop.set()
                raise

        threads = [
            threading.Thread(target=step, args=(STREAMS[i], STREAMS[i + 1]), daemon=True) for i in (0, 1)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise SystemExit(f"loop failed: {errors[0]!r}")


def _bootstrap_and_topics(url: str) -> tuple[str, list[str]]:
    """``host:port`` and the topic names of STREAMS for a ``kafka://host:port?prefix=P`` URL."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    prefix = parse_qs(parts.query)["prefix"][0]
    return parts.netloc, [prefix + Name.of_urn(s).id for s in STREAMS]


def worker_quix(args: argparse.Namespace, stop: threading.Event) -> None:
    from quixstreams import Application

    bootstrap, topics = _bootstrap_and_topics(args.url)
    with tempfile.TemporaryDirectory(prefix="bench-quix-") as state:
        app = Application(
            broker_address=bootstrap,
            consumer_group=topics[0] + "-quix",
            auto_offset_reset="earliest",
            commit_every=args.every,
            commit_interval=1.0,
            use_changelog_topics=False,
            state_dir=state,
            loglevel="WARNING",
            # as our kafka:// consumers: tansu completes a group join after about half the session
            # timeout, and librdkafka's 1000 ms queue backoff slows reads down
            consumer_extra_config={"session.timeout.ms": 6000, "fetch.queue.backoff.ms": 10},
        )
        serde = {
            "key_deserializer": "bytes",
            "value_deserializer": "bytes",
            "key_serializer": "bytes",
            "value_serializer": "bytes",
        }
        source, mid, out = (app.topic(t, **serde) for t in topics)  # type: ignore[arg-type]
        app.dataframe(source).to_topic(mid)
        app.dataframe(mid).to_topic(out)
        threading.Thread(target=lambda: (stop.wait(), app.stop()), daemon=True).start()
        app.run()


def worker_faust(args: argparse.Namespace, stop: threading.Event) -> None:
    import faust
    from faust.worker import Worker

    bootstrap, topics = _bootstrap_and_topics(args.url)
    with tempfile.TemporaryDirectory(prefix="bench-faust-") as data:
        app = faust.App(
            topics[0] + "-faust",
            broker=f"kafka://{bootstrap}",
            store="memory://",
            web_enabled=False,
            datadir=data,
            topic_partitions=args.partitions,
            topic_allow_declare=False,
            consumer_auto_offset_reset="earliest",
            broker_commit_every=args.every,
            broker_session_timeout=6.0,
            broker_heartbeat_interval=1.0,
        )
        source, mid, out = (
            app.topic(t, key_serializer="raw", value_serializer="raw", partitions=args.partitions)
            for t in topics
        )

        async def forward(stream: Any, target: Any) -> None:
            async for event in stream.events():
                await target.send(key=event.key, value=event.value)

        @app.agent(source, concurrency=args.concurrency)
        async def pass1(stream: Any) -> None:
            await forward(stream, mid)

        @app.agent(mid, concurrency=args.concurrency)
        async def pass2(stream: Any) -> None:
            await forward(stream, out)

        # Faust's worker handles SIGTERM itself (and ``stop`` is never set here).
        Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


WORKERS: dict[str, Callable[[argparse.Namespace, threading.Event], None]] = {
    "processor": worker_processor,
    "loop": worker_loop,
    "quix": worker_quix,
    "faust": worker_faust,
}


def worker_main(args: argparse.Namespace) -> None:
    stop = threading.Event()
    if args.worker != "faust":
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    WORKERS[args.worker](args, stop)


# --- the driver --------------------------------------------------------------------------------


def feed(manager: LogManager, n: int, partitions: int) -> None:
    """Create the streams and write the N input records."""
    for stream in STREAMS:
        manager.create_if_not_exists(stream, partitions)
    appender = manager.appender("bench/in")
    for start in range(0, n, 1000):
        appender.append_many(
            [(f"k{i}", Record(f"k{i}", PAYLOAD)) for i in range(start, min(n, start + 1000))]
        )


class KafkaCounter:
    """Counts the records of the output topic by consuming it."""

    def __init__(self, url: str, partitions: int) -> None:
        from confluent_kafka import Consumer, TopicPartition

        bootstrap, topics = _bootstrap_and_topics(url)
        self.consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "bench-count", "fetch.queue.backoff.ms": 10}
        )
        self.consumer.assign([TopicPartition(topics[2], p, 0) for p in range(partitions)])
        self.total = 0

    def __call__(self) -> int:
        for message in self.consumer.consume(10000, 0.01):
            if message.error() is None:
                self.total += 1
        return self.total

    def close(self) -> None:
        self.consumer.close()


class LogCounter:
    """Counts the records of ``bench/out`` from its partitions' end offsets."""

    def __init__(self, manager: LogManager) -> None:
        self.manager = manager

    def __call__(self) -> int:
        time.sleep(0.01)
        return sum(lag.upper for lag in self.manager.lag_per_partition("bench/out", "bench/count"))

    def close(self) -> None:
        pass


def run_one(impl: str, url: str, args: argparse.Namespace) -> tuple[float, float]:
    """(steady records/s, seconds from spawn to the last record) of one run of ``impl`` on ``url``."""
    with open_log_manager(url, default_codec=args.codec) as manager:
        feed(manager, args.n, args.partitions)
        counter = KafkaCounter(url, args.partitions) if url.startswith("kafka") else LogCounter(manager)
        cmd = [sys.executable, __file__, "--worker", impl, "--url", url]
        for option in ("partitions", "concurrency", "every", "codec"):
            cmd += [f"--{option}", str(getattr(args, option))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
        spawned = time.perf_counter()
        worker = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            first_at, first_count, count = 0.0, 0, 0
            progress_at = spawned
            while count < args.n:
                now = time.perf_counter()
                if now - progress_at > STALL_S or worker.poll() is not None:
                    err = worker.stderr.read().decode()[-2000:] if worker.poll() is not None else ""  # type: ignore[union-attr]
                    raise RuntimeError(
                        f"{impl}: stuck at {count} of {args.n} records after {now - spawned:.0f}s {err}"
                    )
                seen = counter()
                if seen > count:
                    count, progress_at = seen, time.perf_counter()
                    if not first_at:
                        first_at, first_count = progress_at, count
            done = time.perf_counter()
        finally:
            counter.close()
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)
            if worker.stderr is not None:
                worker.stderr.close()
    return (args.n - first_count) / (done - first_at), done - spawned


def importable(impl: str) -> bool:
    module = PEERS.get(impl)
    if module is None:
        return True
    try:
        __import__(module)
    except ImportError as exc:
        print(f"{impl}: not installed ({exc}); skipped", file=sys.stderr)
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="local,kafka")
    parser.add_argument("--impls", default="loop,processor,quix,faust")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--every", type=int, default=100, help="records per checkpoint/commit")
    parser.add_argument("--codec", default="json")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bootstrap", default=os.environ.get("CONVEYOR_KAFKA"))
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args)
        return
    backends = args.backends.split(",")
    impls = [impl for impl in args.impls.split(",") if importable(impl)]
    broker = None
    if "kafka" in backends and args.bootstrap is None:
        broker, args.bootstrap = start_tansu()
    rates: dict[tuple[str, str], list[float]] = {}
    try:
        for repeat in range(args.repeats):
            for backend in backends:
                for impl in impls:
                    if impl in PEERS and backend != "kafka":
                        continue
                    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
                        url = (
                            f"local://{tmp}/log"
                            if backend == "local"
                            else f"kafka://{args.bootstrap}?prefix=b{uuid.uuid4().hex[:8]}-"
                        )
                        rate, wall = run_one(impl, url, args)
                    rates.setdefault((backend, impl), []).append(rate)
                    line = {"backend": backend, "impl": impl, "repeat": repeat, "records_per_s": round(rate)}
                    line.update(wall_s=round(wall, 2), n=args.n, partitions=args.partitions)
                    line.update(concurrency=args.concurrency, every=args.every, codec=args.codec)
                    print(json.dumps(line), flush=True)
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(10)
    print(
        f"\nn={args.n}, {args.partitions} partitions, concurrency {args.concurrency}, checkpoint every "
        f"{args.every}, {args.codec}, medians of {args.repeats} [min-max]\n"
        "| log | implementation | records/s | vs loop | vs processor |\n|---|---|---:|---:|---:|"
    )
    for (backend, impl), values in rates.items():
        median = statistics.median(values)
        ratios = []
        for base in ("loop", "processor"):
            reference = rates.get((backend, base))
            ratios.append(f"{median / statistics.median(reference):.2f}" if reference else "-")
        print(
            f"| {backend} | {impl} | {median:,.0f} [{min(values):,.0f}-{max(values):,.0f}] | "
            f"{ratios[0]} | {ratios[1]} |"
        )


if __name__ == "__main__":
    main()
