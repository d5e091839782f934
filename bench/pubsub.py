"""Pub/sub throughput and latency between two nodes: our API against raw redis-py, in the same run.

    .venv/bin/python bench/pubsub.py [--redis redis://127.0.0.1:6379/0] [-n 20000] [--repeats 3]

Throughput: node A publishes N messages of 100 bytes on one topic as fast as it can, node B
counts them in its callback; messages/s = N / (last received - first published). Latency: one
message at a time, the time from just before ``publish`` to the callback on the other node (p50,
p99). The raw row is redis-py doing the same with no envelope, no own-message filter and no
dispatcher thread: ``PUBLISH`` on one side, a thread in ``get_message`` on a ``SUBSCRIBE``d
connection on the other. ``local://`` and a ``memory://`` log are shown for scale. Medians of
``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Protocol

import redis

from conveyor.pubsub import open_pubsub

PAYLOAD = b"x" * 100


class Pair(Protocol):
    """A sender and a receiver: ``publish(data)`` on one, ``on_receive`` called on the other."""

    def publish(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class OursPair:
    """Two conveyor nodes on one URL."""

    def __init__(self, url: str, on_receive: Callable[[bytes], None]) -> None:
        self.a = open_pubsub(url, node_id="bench-a")
        self.b = open_pubsub(url, node_id="bench-b")
        self.b.subscribe("bench", lambda topic, data: on_receive(data))

    def publish(self, data: bytes) -> None:
        self.a.publish("bench", data)

    def close(self) -> None:
        self.a.close()
        self.b.close()


class RawRedisPair:
    """redis-py: a publishing client and a listener thread on a subscribed connection."""

    def __init__(self, url: str, on_receive: Callable[[bytes], None]) -> None:
        self.channel = f"bench:raw:{uuid.uuid4().hex[:8]}"
        self.client = redis.Redis.from_url(url)
        self.listener = redis.Redis.from_url(url)
        self.ps = self.listener.pubsub(ignore_subscribe_messages=True)
        self.ps.subscribe(self.channel)
        while self.ps.get_message(timeout=1.0) is None and not self.ps.subscribed:
            pass
        self.stop = False
        self.on_receive = on_receive
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        while not self.stop:
            message = self.ps.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message is not None and message["type"] == "message":
                self.on_receive(message["data"])

    def publish(self, data: bytes) -> None:
        self.client.publish(self.channel, data)

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        self.ps.close()
        self.listener.close()
        self.client.close()


def throughput(make: Callable[[Callable[[bytes], None]], Pair], n: int) -> float:
    """Messages per second from the first publish to the last receive."""
    done = threading.Event()
    count = [0]
    last = [0.0]

    def on_receive(data: bytes) -> None:
        count[0] += 1
        if count[0] == n:
            last[0] = time.perf_counter()
            done.set()

    pair = make(on_receive)
    try:
        start = time.perf_counter()
        for _ in range(n):
            pair.publish(PAYLOAD)
        if not done.wait(120):
            raise RuntimeError(f"only {count[0]} of {n} messages arrived")
        return n / (last[0] - start)
    finally:
        pair.close()


def latency(make: Callable[[Callable[[bytes], None]], Pair], n: int) -> tuple[float, float]:
    """(p50, p99) in milliseconds of publish -> callback on the other node, one message at a time."""
    arrived = threading.Event()
    got = [0.0]

    def on_receive(data: bytes) -> None:
        got[0] = time.perf_counter()
        arrived.set()

    pair = make(on_receive)
    samples: list[float] = []
    try:
        for _ in range(n):
            arrived.clear()
            start = time.perf_counter()
            pair.publish(PAYLOAD)
            if not arrived.wait(10):
                raise RuntimeError("a message did not arrive")
            samples.append((got[0] - start) * 1000)
    finally:
        pair.close()
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99)]


def main() -> None:
    """Run every row ``--repeats`` times and print a markdown table of the medians."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("-n", type=int, default=20000, help="messages per throughput run")
    parser.add_argument("--latency-n", type=int, default=2000, help="messages per latency run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    rows: list[tuple[str, Callable[[Callable[[bytes], None]], Pair]]] = [
        ("raw redis-py PUBLISH/SUBSCRIBE", lambda cb: RawRedisPair(args.redis, cb)),
        ("conveyor redis://", lambda cb: OursPair(f"{args.redis}?prefix={prefix}", cb)),
        ("conveyor local:// (in-process)", lambda cb: OursPair(f"local://{prefix[:-1]}", cb)),
        ("conveyor memory:// log", lambda cb: OursPair(f"memory://{uuid.uuid4().hex[:8]}", cb)),
    ]
    results: dict[str, tuple[list[float], list[float], list[float]]] = {
        name: ([], [], []) for name, _ in rows
    }
    for _ in range(args.repeats):
        for name, make in rows:  # interleaved, so a noisy moment hits every row alike
            rates, p50s, p99s = results[name]
            rates.append(throughput(make, args.n))
            p50, p99 = latency(make, args.latency_n)
            p50s.append(p50)
            p99s.append(p99)
    raw_rate = statistics.median(results[rows[0][0]][0])
    size = len(PAYLOAD)
    print(f"N={args.n} messages of {size} bytes, latency over {args.latency_n}, medians of {args.repeats}")
    print()
    print("| provider | messages/s [min-max] | vs raw redis-py | latency p50 ms | latency p99 ms |")
    print("|---|---|---|---|---|")
    for name, _ in rows:
        rates, p50s, p99s = results[name]
        rate = statistics.median(rates)
        print(
            f"| {name} | {rate:,.0f} [{min(rates):,.0f}-{max(rates):,.0f}] | {rate / raw_rate:.2f}x "
            f"| {statistics.median(p50s):.3f} | {statistics.median(p99s):.3f} |"
        )


if __name__ == "__main__":
    main()
