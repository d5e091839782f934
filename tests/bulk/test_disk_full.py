"""The Bulk Service's computations wait out a full disk under their local log and resume (issue 14 item 5)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.bulk import BulkCommand, BulkService, BulkState
from conveyor.kv import KeyValueStore
from conveyor.log import open_log_manager
from conveyor.repository import Repository
from tests.bulk import sample_actions  # noqa: F401  (registers testSlowTag)
from tests.bulk.conftest import import_docs
from tests.stream.test_disk_full import fill


@pytest.mark.slow
def test_bulk_computations_resume_once_the_full_disk_has_space(
    small_tmpfs: Callable[[int], Path],
    kv: KeyValueStore,
    repo: Repository,
    caplog: pytest.LogCaptureFixture,
) -> None:
    disk = small_tmpfs(2048)
    logs = open_log_manager(f"local://{disk}/log", default_codec="json", segment_bytes=256 << 10)
    service = BulkService(logs, kv, repo)
    caplog.set_level(logging.INFO, logger="conveyor")
    try:
        service.start()
        assert service.processor is not None and service.processor.wait_for_assignments(30)
        import_docs(repo, 60)
        command_id = service.submit(
            BulkCommand("testSlowTag", "SELECT * FROM File", params={"delay": 0.25, "tag": "full"})
        )
        filler = disk / "filler"
        fill(filler)

        def hit() -> bool:
            return any(
                r.levelno >= logging.ERROR and "disk is full" in r.getMessage() for r in caplog.records
            )

        deadline = time.monotonic() + 30
        while not hit() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hit(), "no bulk computation met the full disk"
        assert not service.status(command_id).is_completed
        time.sleep(1)
        filler.unlink()

        assert service.wait(command_id, 120)
        status = service.status(command_id)
        assert status.state is BulkState.COMPLETED and status.error_count == 0
        assert status.processed == status.total == 60
        assert all(d.properties.get("test:tag") == "full" for d in repo.query("SELECT * FROM File"))
        assert not service.processor.is_terminated()
        assert not [r for r in caplog.records if "terminated on failure" in r.getMessage()]
    finally:
        assert service.close(20)
        logs.close()
