"""A bulk worker process for the multi-process tests: ``python -m tests.bulk.worker LOG KV REPO STOP``.

Processes bulk commands on the shared local log, KV and repository until the file STOP exists.
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


def main(log_url: str, kv_url: str, repo_url: str, stop_file: str) -> None:
    with open_log_manager(log_url, default_codec="json") as logs, open_kv_store(kv_url, "bulk") as kv:
        repo = open_repository(repo_url)
        service = BulkService(logs, kv, repo).start()
        print("ready", flush=True)
        while not Path(stop_file).exists():
            time.sleep(0.1)
        service.close(10)
        repo.close()


if __name__ == "__main__":
    main(*sys.argv[1:5])
