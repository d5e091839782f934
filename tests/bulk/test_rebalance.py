"""A rebalance of one bulk computation must not break the others of the same process."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conveyor.bulk import BulkCommand, BulkService, BulkState
from conveyor.errors import RebalanceError
from conveyor.log import open_log_manager
from conveyor.repository import Repository
from tests.bulk import sample_actions  # noqa: F401  (registers testSlowTag)
from tests.bulk.conftest import CODEC, import_docs


def _run(service: BulkService) -> None:
    command_id = service.submit(BulkCommand("testSlowTag", "SELECT * FROM File", params={"delay": 0}))
    assert service.wait(command_id, 30), service.status(command_id)
    status = service.status(command_id)
    assert (status.state, status.processed, status.error_count) == (BulkState.COMPLETED, 40, 0)


@pytest.mark.parametrize("log_url", ["local"], indirect=True)
def test_scroller_rebalance_keeps_actions_running(
    service: BulkService, repo: Repository, tmp_path: Path
) -> None:
    import_docs(repo, 40)
    _run(service)  # the scroller and the action now hold the manager's bulk/status appender
    # Another member joins the scroller's group, takes a partition, then leaves: the scroller
    # rebalances twice (its computation is destroyed and created again each time).
    with (
        open_log_manager(f"local://{tmp_path}/log", default_codec=CODEC) as other,
        other.subscribe("bulk/scroller", ["bulk/command"]) as member,
    ):
        deadline = time.monotonic() + 30
        while not member.assignments():
            assert time.monotonic() < deadline, "the scroller never gave a partition up"
            try:
                member.read(0.05)
            except RebalanceError:
                pass
    _run(service)  # the action's checkpoints append to bulk/status: it must still be open
