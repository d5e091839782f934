"""Stream benchmark: records/s through a pass-through topology vs a plain read+append loop.

    .venv/bin/python bench/stream.py [--url memory://] [--n 20000] [--partitions 4]
        [--concurrency 1] [--every 1] [--codec json] [--repeats 3]

Both sides move the same N records from ``bench/in`` to ``bench/out`` on the same log backend,
with the same codec:

* ``processor``: a StreamProcessor running one pass-through Computation (``concurrency`` threads)
  that produces each record and asks a checkpoint every ``every`` records; time = start to the
  end of ``drain_and_stop`` (which includes the last starving period, subtracted here).
* ``loop``: the peer, one thread: ``tailer.read`` -> ``appender.append`` -> ``tailer.commit``
  (of the partition just read) every ``every`` records: the floor that the framework adds its bookkeeping to.

Prints one JSON line per run and a Markdown table of medians (with min-max) of ``repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid

from conveyor.log import LogManager, Name, open_log_manager
from conveyor.record import Record
from conveyor.stream import Computation, ComputationContext, Settings, StreamProcessor, Topology


class PassThrough(Computation):
    """Produces each record unchanged; checkpoints every ``every`` records."""

    every = 1

    def __init__(self) -> None:
        super().__init__("bench/pass", inputs=1, outputs=1)
        self.count = 0

    def process_record(self, context: ComputationContext, input_stream: str, record: Record) -> None:
        context.produce_record("o1", record)
        self.count += 1
        if self.count % self.every == 0:
            context.ask_for_checkpoint()


def _url(base: str) -> tuple[str, tempfile.TemporaryDirectory[str] | None]:
    if base.startswith("local"):
        tmp = tempfile.TemporaryDirectory(prefix="bench-stream-")
        return f"local://{tmp.name}/log", tmp
    return f"memory://bench{uuid.uuid4().hex[:8]}", None


def _feed(manager: LogManager, n: int, partitions: int) -> None:
    manager.create_if_not_exists("bench/in", partitions)
    manager.create_if_not_exists("bench/out", partitions)
    appender = manager.appender("bench/in")
    payload = b"x" * 100
    for start in range(0, n, 1000):
        appender.append_many(
            [(f"k{i}", Record(f"k{i}", payload)) for i in range(start, min(n, start + 1000))]
        )


def run_processor(args: argparse.Namespace) -> float:
    url, tmp = _url(args.url)
    try:
        with open_log_manager(url, default_codec=args.codec) as manager:
            _feed(manager, args.n, args.partitions)
            PassThrough.every = args.every
            topology = (
                Topology.builder().add_computation(PassThrough, ["i1:bench/in", "o1:bench/out"]).build()
            )
            settings = Settings(
                concurrency=args.concurrency, partitions=args.partitions, starving_timeout_s=0.05
            )
            processor = StreamProcessor(manager, topology, settings)
            started = time.perf_counter()
            processor.start()
            if not processor.drain_and_stop(600):
                raise RuntimeError("processor did not drain")
            elapsed = time.perf_counter() - started - settings.starving_timeout_s
            out = sum(lag.upper for lag in manager.lag_per_partition("bench/out", "bench/check"))
            if out < args.n:
                raise RuntimeError(f"only {out} of {args.n} records reached bench/out")
            return args.n / elapsed
    finally:
        if tmp is not None:
            tmp.cleanup()


def run_loop(args: argparse.Namespace) -> float:
    url, tmp = _url(args.url)
    try:
        with open_log_manager(url, default_codec=args.codec) as manager:
            _feed(manager, args.n, args.partitions)
            started = time.perf_counter()
            appender = manager.appender("bench/out")
            with manager.create_tailer(Name.of("bench", "loop"), "bench/in") as tailer:
                moved = 0
                while moved < args.n:
                    item = tailer.read(1.0)
                    if item is None:
                        raise RuntimeError(f"loop starved after {moved} records")
                    appender.append(item.message.key, item.message)
                    moved += 1
                    if moved % args.every == 0:
                        tailer.commit(item.offset.partition)
                tailer.commit()
            return args.n / (time.perf_counter() - started)
    finally:
        if tmp is not None:
            tmp.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="memory://", help="memory:// or local:// (a temporary directory)")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--every", type=int, default=1, help="records per checkpoint/commit")
    parser.add_argument("--codec", default="json")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"loop": [], "processor": []}
    for repeat in range(args.repeats):
        for impl, fn in (("loop", run_loop), ("processor", run_processor)):
            rate = fn(args)
            results[impl].append(rate)
            print(
                json.dumps(
                    {
                        "impl": impl,
                        "repeat": repeat,
                        "records_per_s": round(rate),
                        "url": args.url,
                        "n": args.n,
                        "partitions": args.partitions,
                        "concurrency": args.concurrency,
                        "every": args.every,
                        "codec": args.codec,
                    }
                )
            )
    loop_median = statistics.median(results["loop"])
    print(
        f"\n| {args.url} n={args.n} p={args.partitions} c={args.concurrency} checkpoint every {args.every} "
        f"| records/s median [min-max] | vs loop |\n|---|---|---|"
    )
    for impl, rates in results.items():
        median = statistics.median(rates)
        print(
            f"| {impl} | {median:,.0f} [{min(rates):,.0f}-{max(rates):,.0f}] | {median / loop_median:.2f}x |"
        )


if __name__ == "__main__":
    main()
