"""A bulk command whose stored status cannot be decoded: shown as damaged, and abort replaces it by
an ABORTED status (200, never 500), through the REST API and the Python API (issue 14 item 6)."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from conveyor import Conveyor
from conveyor.bulk import BulkCommand, BulkState, BulkStatus
from conveyor.bulk.status import StatusDelta
from conveyor.bulk.store import DamagedBulkStatus
from conveyor.record import Record
from tests.web.test_damaged_listings import wait_for


def test_a_damaged_status_is_shown_then_aborted_over_rest(client: TestClient, node: Conveyor) -> None:
    service = node.bulk_service
    # a command that was stored, and whose status was damaged (no node scrolls it: not in the log)
    service.store.put_command(BulkCommand("webSlow", "SELECT * FROM File", id="broken-1"))
    node.kv_store("bulk").put("status:broken-1", b"{not json")

    found = service.status("broken-1")
    assert isinstance(found, DamagedBulkStatus) and found.state is BulkState.UNKNOWN
    assert found.error_message is not None
    assert found.error_message.startswith("undecodable status (9 bytes at key status:broken-1)")
    one = client.get("/api/v1/bulk/broken-1")
    assert one.status_code == 200 and one.json()["damaged"] is True and one.json()["size"] == 9
    result = client.get("/api/v1/bulk/broken-1/result")
    assert result.status_code == 409 and "undecodable status" in result.json()["detail"]

    aborted = client.put("/api/v1/bulk/broken-1/abort")
    assert aborted.status_code == 200, aborted.text
    body = aborted.json()
    assert body["state"] == "ABORTED" and body["action"] == "webSlow" and body["error_count"] == 1
    assert "damaged stored status (9 bytes at key status:broken-1" in body["error_message"]
    assert "counters were lost" in body["error_message"]

    after = service.status("broken-1")
    assert after.state is BulkState.ABORTED and not getattr(after, "damaged", False)
    assert service.wait("broken-1", 5)
    again = client.put("/api/v1/bulk/broken-1/abort")  # already ended: unchanged
    assert again.status_code == 200 and again.json()["state"] == "ABORTED"
    listed = {s["command_id"]: s for s in client.get("/api/v1/bulk").json()}
    assert listed["broken-1"]["state"] == "ABORTED" and listed["broken-1"]["damaged"] is False
    assert client.get("/api/v1/bulk/broken-1").json()["state"] == "ABORTED"
    assert client.put("/api/v1/bulk/nobody/abort").status_code == 404


def test_abort_of_a_damaged_status_in_the_python_api(node: Conveyor) -> None:
    service = node.bulk_service
    node.kv_store("bulk").put("status:broken-2", b"[" * 10_000)  # no command stored either
    assert getattr(service.status("broken-2"), "damaged", False)
    assert not service.wait("broken-2", 0.1)  # it cannot end by itself

    status = service.abort("broken-2")
    assert status.state is BulkState.ABORTED and status.action is None and status.completed_time
    assert "damaged stored status (10000 bytes" in (status.error_message or "")
    assert service.status("broken-2").state is BulkState.ABORTED
    assert service.abort("broken-2").state is BulkState.ABORTED
    assert [s.command_id for s in service.statuses() if getattr(s, "damaged", False)] == []


def test_a_damaged_status_holds_up_neither_its_deltas_nor_the_others(
    client: TestClient, node: Conveyor, caplog: pytest.LogCaptureFixture
) -> None:
    from conveyor.cli.demo import demo_documents

    node.repository.import_documents(demo_documents(10))
    service = node.bulk_service
    processor = service.processor
    assert processor is not None
    caplog.set_level(logging.INFO, logger="conveyor.bulk")
    # a command whose status was damaged while it ran: its deltas still come
    node.kv_store("bulk").put("status:broken-3", b"{not json")
    delta = BulkStatus.delta_of("broken-3", processed=5)
    service._status_stream().append("broken-3", Record("broken-3", StatusDelta(delta).encode()))
    # a damaged command in bulk/command is not scrolled (nor retried: the commands behind it go on)
    service.store.put_command(BulkCommand("webSlow", "SELECT * FROM Document", id="broken-4"))
    node.kv_store("bulk").put("status:broken-4", b"{not json")
    command = service.store.get_command("broken-4")
    assert command is not None
    service._command_appender().append("broken-4", Record("broken-4", command.encode()))
    other = service.submit(BulkCommand("webSlow", "SELECT * FROM Document", query_limit=5))

    def skipped() -> bool:
        return any(
            "status delta not merged" in r.getMessage() and "broken-3" in r.getMessage()
            for r in caplog.records
        )

    wait_for(skipped, 30)
    assert service.wait(other, 30)
    assert service.status(other).state is BulkState.COMPLETED
    wait_for(lambda: processor.lag("bulk/status") == 0 and processor.lag("bulk/scroller") == 0, 30)
    assert processor.status()["bulk/status"].state == "running"
    assert processor.status()["bulk/scroller"].failures == 0

    assert client.put("/api/v1/bulk/broken-3/abort").json()["state"] == "ABORTED"
    assert service.wait("broken-3", 5)
