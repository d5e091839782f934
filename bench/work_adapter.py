"""Adapters for the peer harness (``../shared/bench-peers/wq/wq_bench.py``): our Redis WorkManager
(``ConveyorRedisAdapter``) and the stream WorkManager on the local log (``ConveyorStreamLocalAdapter``).

Driver side: ``enqueue(i)`` schedules a ``BenchJob(i=i)`` with a WorkManager that does not
process (``processing={"*": False}``). Worker side: ``python bench/work_adapter.py worker URL
THREADS`` runs the ``bench`` queue with THREADS threads until SIGTERM; the job body calls
``mark.mark(i)`` (the harness's 32-byte probe). Run it (our venv needs ``psutil``)::

    PYTHONPATH=bench .venv/bin/python ../shared/bench-peers/wq/wq_bench.py \\
        --adapter work_adapter:ConveyorRedisAdapter --variant "1 process x 2 threads" \\
        --python "$PWD/.venv/bin/python"

``ConveyorStreamLocalAdapter``: the Works in a ``local://`` log in a fresh temporary directory per
run (deleted by ``close()``), shared by the driver and the worker processes; the state (which the
processes must share) in the harness's Redis DB under the ``bench:work:`` prefix. Worker side:
``python bench/work_adapter.py stream-worker LOG_DIR REDIS_URL THREADS [state|nostate]``.
``ConveyorStreamLocalNoStateAdapter``: the same with ``store_state=false`` (no state per Work).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
from typing import Any
from urllib.parse import quote

from conveyor.work import QueueConfig, Work, WorkManager, open_work_manager

HERE = os.path.dirname(os.path.abspath(__file__))
QUEUE = "bench"
PREFIX = "bench:work:"


class BenchJob(Work):
    """A no-op job that marks its start time."""

    type_name = "bench.Job"
    category = QUEUE
    i: int

    def work(self) -> None:
        import mark  # the harness's probe, on the worker's PYTHONPATH

        mark.mark(self.i)


def _queues(threads: int) -> list[QueueConfig]:
    return [QueueConfig(QUEUE, max_threads=threads, categories=(QUEUE,))]


def _url(redis_url: str) -> str:
    sep = "&" if "?" in redis_url else "?"
    return f"{redis_url}{sep}prefix={PREFIX}"


class ConveyorRedisAdapter:
    """The harness's adapter interface, for ``redis://`` Conveyor WorkManager."""

    system = "conveyor-redis"
    VARIANTS: dict[str, dict[str, int]] = {
        "1 process x 2 threads": {"procs": 1, "threads": 2},
        "2 processes x 1 thread": {"procs": 2, "threads": 1},
        # Dramatiq's configuration in the harness (2 processes x 8 threads): more Works in
        # flight per process, still none taken before a thread is free.
        "2 processes x 8 threads": {"procs": 2, "threads": 8},
    }

    def __init__(self, variant: str, redis_url: str, python: str = sys.executable) -> None:
        if variant not in self.VARIANTS:
            raise SystemExit(f"{self.system}: unknown variant {variant!r}; known: {list(self.VARIANTS)}")
        self.variant = variant
        self.cfg = self.VARIANTS[variant]
        self.redis_url = redis_url
        self.python = python
        self.wm: WorkManager | None = None

    def describe(self) -> str:
        return (
            f"{self.cfg['procs']} worker process(es) x {self.cfg['threads']} thread(s), no prefetch "
            "(a thread takes a Work only when free), at-least-once (claims + node heartbeat)"
        )

    def worker_env(self) -> dict[str, str]:
        return {"PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def worker_cmds(self) -> list[list[str]]:
        me = os.path.abspath(__file__)
        return [
            [self.python, me, "worker", self.redis_url, str(self.cfg["threads"])]
            for _ in range(self.cfg["procs"])
        ]

    def connect(self) -> None:
        self.wm = open_work_manager(_url(self.redis_url), queues=_queues(1), processing={"*": False})

    def enqueue(self, i: int) -> None:
        assert self.wm is not None
        self.wm.schedule(BenchJob(i=i), after_commit=False)

    def enqueue_all(self, ids: Any) -> None:
        for i in ids:
            self.enqueue(i)

    def close(self) -> None:
        if self.wm is not None:
            self.wm.shutdown(1)

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version

        return {"conveyor": version("conveyor"), "redis-py": version("redis")}


def _stream_url(log_dir: str, redis_url: str, store_state: bool = True) -> str:
    kv = quote(_url(redis_url), safe="")
    url = f"stream://?log={quote(f'local://{log_dir}', safe='')}&kv={kv}&prefix={PREFIX}"
    return url if store_state else url + "&store_state=false"


def _stream_queues(threads: int) -> list[QueueConfig]:
    # The same partitions in the driver and every worker, whatever their threads.
    return [QueueConfig(QUEUE, max_threads=threads, categories=(QUEUE,), partitions=4)]


class ConveyorStreamLocalAdapter(ConveyorRedisAdapter):
    """The harness's adapter interface, for the ``stream`` WorkManager on a ``local://`` log."""

    system = "conveyor-stream-local"
    store_state = True

    def __init__(self, variant: str, redis_url: str, python: str = sys.executable) -> None:
        super().__init__(variant, redis_url, python)
        self.log_dir = tempfile.mkdtemp(prefix="bench-work-stream-")

    def describe(self) -> str:
        return (
            f"{self.cfg['procs']} worker process(es) x {self.cfg['threads']} thread(s) on a local:// "
            "log (state in Redis), no prefetch, at-least-once (lazy offset commits, claims + node heartbeat)"
        )

    def worker_cmds(self) -> list[list[str]]:
        me = os.path.abspath(__file__)
        return [
            [
                self.python,
                me,
                "stream-worker",
                self.log_dir,
                self.redis_url,
                str(self.cfg["threads"]),
                "state" if self.store_state else "nostate",
            ]
            for _ in range(self.cfg["procs"])
        ]

    def connect(self) -> None:
        url = _stream_url(self.log_dir, self.redis_url, self.store_state)
        self.wm = open_work_manager(url, queues=_stream_queues(1), processing={"*": False})

    def close(self) -> None:
        """Close the driver's WorkManager and delete this run's log directory.

        The harness stops the workers before calling it.
        """
        super().close()
        shutil.rmtree(self.log_dir, ignore_errors=True)


class ConveyorStreamLocalNoStateAdapter(ConveyorStreamLocalAdapter):
    """The stream WorkManager on a ``local://`` log with ``store_state=false``: no state per Work
    (the Redis database holds only the node heartbeats and counters)."""

    system = "conveyor-stream-local-nostate"
    store_state = False

    def describe(self) -> str:
        return (
            f"{self.cfg['procs']} worker process(es) x {self.cfg['threads']} thread(s) on a local:// "
            "log, store_state=false (no per-Work state), no prefetch, at-least-once (lazy offset commits)"
        )


def worker(redis_url: str, threads: int) -> int:
    """Run the bench queue until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    wm = open_work_manager(_url(redis_url), queues=_queues(threads)).start()
    stop.wait()
    return 0 if wm.shutdown(5) else 1


def stream_worker(log_dir: str, redis_url: str, threads: int, store_state: bool = True) -> int:
    """Run the bench queue of the local log in ``log_dir`` until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    url = _stream_url(log_dir, redis_url, store_state)
    wm = open_work_manager(url, queues=_stream_queues(threads)).start()
    stop.wait()
    return 0 if wm.shutdown(5) else 1


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "stream-worker":
        threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
        sys.exit(stream_worker(sys.argv[2], sys.argv[3], threads, sys.argv[5:6] != ["nostate"]))
    if len(sys.argv) >= 3 and sys.argv[1] == "worker":
        sys.exit(worker(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 2))
    raise SystemExit(__doc__)
