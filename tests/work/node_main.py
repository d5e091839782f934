"""A WorkManager node in its own process, for restart and kill -9 tests.

``python -m tests.work.node_main URL QUEUE MAX_THREADS [--until-idle] [--max-recoveries N]``: runs
the queue until SIGTERM (then shuts down, suspending Works) or, with ``--until-idle``, until it
is empty; ``--max-recoveries`` sets the queue's ``max_recoveries``.
"""

from __future__ import annotations

import signal
import sys
import threading

import tests.work.works  # noqa: F401  (registers the Work classes)
from conveyor.work import QueueConfig, open_work_manager


def main() -> int:
    url, queue, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    until_idle = "--until-idle" in sys.argv
    limit = int(sys.argv[sys.argv.index("--max-recoveries") + 1]) if "--max-recoveries" in sys.argv else None
    config = QueueConfig(queue, max_threads=threads, categories=(queue,), max_recoveries=limit)
    wm = open_work_manager(url, queues=[config])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    wm.start()
    print("started", flush=True)
    if until_idle:
        ok = wm.await_completion(queue, timeout=60)
        wm.shutdown(10)
        return 0 if ok else 1
    stop.wait()
    return 0 if wm.shutdown(10) else 2


if __name__ == "__main__":
    sys.exit(main())
