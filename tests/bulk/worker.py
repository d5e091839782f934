"""A bulk worker process for the multi-process tests: ``python -m tests.bulk.worker LOG KV REPO STOP``.

Processes bulk commands on the shared log (local or Kafka), KV and repository until the file STOP
exists. Prints ``ready`` once it holds partitions of the ``testSlowTag`` action, or ``not ready:
...`` (and exits) if it does not within a minute.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from conveyor.bulk import BulkService
from conveyor.kv import open_kv_store
from conveyor.log import open_log_manager
from conveyor.repository import open_repository
from tests.bulk import sample_actions  # noqa: F401  (registers the test actions)

READY_TIMEOUT = 60.0
SLOW_TAG = "bulk/testSlowTag"


def holds_slow_tag_partitions(service: BulkService, timeout: float) -> bool:
    """Whether this worker's threads joined their groups and hold partitions of ``testSlowTag``.

    A worker that joins a group where another one is holds partitions only once that one gave
    some up, so the second worker's ``ready`` means both share the action's partitions.
    """
    processor = service.processor
    assert processor is not None
    deadline = time.monotonic() + timeout
    if not processor.wait_for_assignments(timeout):
        return False
    while processor.status()[SLOW_TAG].partitions == 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def main(log_url: str, kv_url: str, repo_url: str, stop_file: str) -> None:
    with open_log_manager(log_url, default_codec="json") as logs, open_kv_store(kv_url, "bulk") as kv:
        repo = open_repository(repo_url)
        service = BulkService(logs, kv, repo).start()
        if not holds_slow_tag_partitions(service, READY_TIMEOUT):
            print(f"not ready: no partition of {SLOW_TAG} after {READY_TIMEOUT} s", flush=True)
            service.close(10)
            repo.close()
            sys.exit(1)
        print("ready", flush=True)
        while not Path(stop_file).exists():
            time.sleep(0.1)
        service.close(10)
        repo.close()


if __name__ == "__main__":
    main(*sys.argv[1:5])
