"""WorkManager benchmark: enqueue rate, drain rate and enqueue-to-start latency.

    .venv/bin/python bench/work.py [--impl pool threads redis stream stream-local stream-local-sqlite
        stream-local-sqlite-nostate]
        [--n 20000]
        [--threads 2] [--lat-n 1000] [--redis-url redis://127.0.0.1:6379/0] [--repeats 3]

Implementations: ``pool`` (a plain ``concurrent.futures.ThreadPoolExecutor`` running a function:
the floor, no WorkManager at all), ``threads://``, ``redis://``, ``stream`` (``memory://`` log,
in-process state), ``stream-local`` (the persistent ``local://`` log in a temporary directory,
in-process state; skipped when that backend is not installed) and ``stream-local-sqlite`` (the
same with the state in an SQLite key-value store: all persistent, as an embedded node);
``stream-local-sqlite-nostate`` is that node with ``store_state=false`` (no state per Work).

Per implementation and repeat: enqueue N no-op Works while the queue is not processed (enqueue
rate), then switch processing on and measure the drain rate as in the peer harness:
``(N - 1) / (start of last job - start of first job)``. Latency: Works scheduled one at a time
(closed loop, idle workers); latency = job start - time just before ``schedule()``. Results are
printed as one JSON line per metric and a Markdown table. Redis keys live under a bench prefix
that is deleted afterwards (no FLUSHDB).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from conveyor.work import QueueConfig, Work, WorkManager, open_work_manager

IMPLS = [
    "pool",
    "threads",
    "redis",
    "stream",
    "stream-local",
    "stream-local-sqlite",
    "stream-local-sqlite-nostate",
]

STARTS: dict[int, float] = {}
_started = threading.Event()
_expect: list[int] = [-1]


class Noop(Work):
    """A no-op job recording its start time."""

    type_name = "bench.Noop"
    category = "bench"
    i: int

    def work(self) -> None:
        STARTS[self.i] = time.monotonic()
        if self.i == _expect[0]:
            _started.set()


def noop(i: int) -> None:
    """The ``pool`` baseline's job: the same body as :class:`Noop`."""
    STARTS[i] = time.monotonic()
    if i == _expect[0]:
        _started.set()


def manager(impl: str, args: argparse.Namespace, prefix: str) -> WorkManager:
    if impl == "threads":
        url = "threads://"
    elif impl == "stream":
        url = "stream"
    elif impl == "stream-local":
        url = f"stream://?log=local://{tempfile.mkdtemp(prefix='bench-work-')}"
    elif impl.startswith("stream-local-sqlite"):
        directory = tempfile.mkdtemp(prefix="bench-work-")
        url = f"stream://?log=local://{directory}&kv=sqlite:///{directory}/kv.db"
        if impl.endswith("-nostate"):
            url += "&store_state=false"
    else:
        url = f"{args.redis_url}?prefix={prefix}"
    queues = [QueueConfig("bench", max_threads=args.threads, categories=("bench",))]
    return open_work_manager(url, queues=queues, processing={"bench": False})


def pool_throughput(args: argparse.Namespace) -> dict[str, float]:
    STARTS.clear()
    gate = threading.Event()

    def job(i: int) -> None:
        gate.wait()
        noop(i)

    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        t0 = time.perf_counter()
        for i in range(args.n):
            pool.submit(job, i)
        enqueue_s = time.perf_counter() - t0
        gate.set()
    starts = sorted(STARTS.values())
    return {"enqueue_rate": args.n / enqueue_s, "drain_rate": (len(starts) - 1) / (starts[-1] - starts[0])}


def pool_latency(args: argparse.Namespace) -> dict[str, float]:
    STARTS.clear()
    lats: list[float] = []
    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        for k in range(-10, args.lat_n):
            _started.clear()
            _expect[0] = k + 10_000_000
            t0 = time.monotonic()
            pool.submit(noop, k + 10_000_000)
            if not _started.wait(10):
                raise SystemExit(f"pool: latency job {k} did not start within 10s")
            if k >= 0:
                lats.append((STARTS[k + 10_000_000] - t0) * 1000)
    return {"latency_p50": statistics.median(lats), "latency_p99": percentile(lats, 99)}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def throughput(impl: str, args: argparse.Namespace) -> dict[str, float]:
    if impl == "pool":
        return pool_throughput(args)
    STARTS.clear()
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    wm = manager(impl, args, prefix).start()
    try:
        t0 = time.perf_counter()
        for i in range(args.n):
            wm.schedule(Noop(i=i), after_commit=False)
        enqueue_s = time.perf_counter() - t0
        wm.enable_processing("bench", True)
        if not wm.await_completion("bench", timeout=args.timeout):
            raise SystemExit(f"{impl}: drain did not finish in {args.timeout}s: {wm.metrics('bench')}")
        starts = sorted(STARTS.values())
        assert len(STARTS) == args.n, (len(STARTS), args.n)
        drain = (len(starts) - 1) / (starts[-1] - starts[0])
        return {"enqueue_rate": args.n / enqueue_s, "drain_rate": drain}
    finally:
        wm.shutdown(5)
        purge = getattr(wm, "purge", None)
        if purge is not None:
            purge()


def latency(impl: str, args: argparse.Namespace) -> dict[str, float]:
    if impl == "pool":
        return pool_latency(args)
    STARTS.clear()
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    wm = manager(impl, args, prefix)
    wm.enable_processing("bench", True)
    wm.start()
    lats: list[float] = []
    try:
        for k in range(-10, args.lat_n):  # 10 warm-up jobs
            _started.clear()
            _expect[0] = k + 10_000_000
            t0 = time.monotonic()
            wm.schedule(Noop(i=k + 10_000_000), after_commit=False)
            if not _started.wait(10):
                raise SystemExit(f"{impl}: latency job {k} did not start within 10s")
            if k >= 0:
                lats.append((STARTS[k + 10_000_000] - t0) * 1000)
    finally:
        wm.shutdown(5)
        purge = getattr(wm, "purge", None)
        if purge is not None:
            purge()
    return {"latency_p50": statistics.median(lats), "latency_p99": percentile(lats, 99)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impl", nargs="+", default=IMPLS, choices=IMPLS)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lat-n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args()
    rows: list[tuple[str, dict[str, list[float]]]] = []
    for impl in args.impl:
        if impl.startswith("stream-local") and importlib.util.find_spec("conveyor.log.local") is None:
            print(json.dumps({"impl": impl, "skipped": "conveyor.log.local is not installed"}), flush=True)
            continue
        results: dict[str, list[float]] = {}
        for run in range(args.repeats):
            got: dict[str, Any] = {**throughput(impl, args), **latency(impl, args)}
            for metric, value in got.items():
                results.setdefault(metric, []).append(value)
                print(
                    json.dumps(
                        {
                            "impl": impl,
                            "run": run,
                            "metric": metric,
                            "value": round(value, 3),
                            "n": args.n,
                            "threads": args.threads,
                        }
                    ),
                    flush=True,
                )
        rows.append((impl, results))
    print()
    print(
        f"| implementation | enqueue jobs/s | drain jobs/s | latency p50 ms | latency p99 ms |  (N={args.n}, "
        f"{args.threads} worker threads, median of {args.repeats})"
    )
    print("|---|---|---|---|---|")
    for impl, r in rows:
        med = {k: statistics.median(v) for k, v in r.items()}
        print(
            f"| {impl} | {med['enqueue_rate']:,.0f} | {med['drain_rate']:,.0f} | {med['latency_p50']:.2f} | "
            f"{med['latency_p99']:.2f} |"
        )


if __name__ == "__main__":
    main()
