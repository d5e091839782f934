"""Bulk commands through the API: submit, status, list, abort (stops a running command), download."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from conveyor import Conveyor

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("conveyor.bulk") is None,
    reason="the Bulk Service (conveyor.bulk) is not installed",
)

QUERY = "SELECT * FROM File WHERE ecm:path STARTSWITH '/docs'"


@pytest.fixture(autouse=True)
def documents(node: Conveyor) -> None:
    import tests.web.actions  # noqa: F401  (registers webSlow, webHidden)

    node.repository.import_documents(
        {"type": "File", "name": f"d{i}", "parent_path": "/docs", "properties": {"dc:title": f"doc {i}"}}
        for i in range(200)
    )


def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_abort_through_the_api_stops_a_running_command(client: TestClient) -> None:
    response = client.post("/api/v1/bulk/webSlow", json={"query": QUERY, "username": "alice"})
    assert response.status_code == 202
    command_id = response.json()["command_id"]

    def processed() -> int:
        return int(client.get(f"/api/v1/bulk/{command_id}").json()["processed"])

    wait_for(lambda: processed() >= 10)
    running = client.get(f"/api/v1/bulk/{command_id}").json()
    assert running["state"] == "RUNNING"
    assert running["total"] == 200
    assert 0 < running["progress"] < 1
    assert running["rate"] > 0
    assert running["eta_s"] is not None

    aborted = client.put(f"/api/v1/bulk/{command_id}/abort").json()
    assert aborted["state"] == "ABORTED"
    time.sleep(0.5)  # a batch in flight may finish; nothing after it
    settled = processed()
    time.sleep(0.5)
    final = client.get(f"/api/v1/bulk/{command_id}").json()
    assert final["state"] == "ABORTED"
    assert final["processed"] == settled < 200

    assert [s["command_id"] for s in client.get("/api/v1/bulk", params={"user": "alice"}).json()] == [
        command_id
    ]
    assert client.get("/api/v1/bulk", params={"user": "bob"}).json() == []
    assert len(client.get("/api/v1/bulk", params={"state": "aborted"}).json()) == 1
    assert client.get("/api/v1/bulk", params={"state": "RUNNING"}).json() == []


def test_completed_command_and_csv_download(client: TestClient) -> None:
    body = {"query": QUERY, "params": {"columns": ["dc:title"]}}
    command_id = client.post("/api/v1/bulk/csvExport", json=body).json()["command_id"]
    wait_for(lambda: client.get(f"/api/v1/bulk/{command_id}").json()["state"] == "COMPLETED")
    status = client.get(f"/api/v1/bulk/{command_id}").json()
    assert (status["processed"], status["total"], status["progress"]) == (200, 200, 1.0)
    download = client.get(f"/api/v1/bulk/{command_id}/result")
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    lines = download.text.strip().splitlines()
    assert len(lines) == 201
    assert "doc 0" in download.text


def test_result_of_a_command_without_file_is_404(client: TestClient) -> None:
    command_id = client.post(
        "/api/v1/bulk/setProperties", json={"query": QUERY, "params": {"dc:source": "x"}}
    ).json()["command_id"]
    wait_for(lambda: client.get(f"/api/v1/bulk/{command_id}").json()["state"] == "COMPLETED")
    response = client.get(f"/api/v1/bulk/{command_id}/result")
    assert response.status_code == 404
    assert response.json()["detail"] == f"bulk command {command_id!r} has no downloadable result"


def test_unknown_command_is_404_with_message(client: TestClient) -> None:
    for response in (
        client.get("/api/v1/bulk/nope"),
        client.put("/api/v1/bulk/nope/abort"),
        client.get("/api/v1/bulk/nope/result"),
    ):
        assert response.status_code == 404
        assert response.json()["detail"] == "unknown bulk command 'nope'"


def test_unknown_action_is_404_and_hidden_action_403(client: TestClient) -> None:
    response = client.post("/api/v1/bulk/nope", json={"query": QUERY})
    assert response.status_code == 404
    assert response.json()["detail"].startswith("unknown bulk action 'nope'; known: ")
    response = client.post("/api/v1/bulk/webHidden", json={"query": QUERY})
    assert response.status_code == 403
    assert "not enabled over HTTP" in response.json()["detail"]


def test_bad_query_is_400_and_bad_state_filter_is_400(client: TestClient) -> None:
    response = client.post("/api/v1/bulk/webSlow", json={"query": "SELEC * FROM File"})
    assert response.status_code == 400
    assert "SELEC" in response.json()["detail"]
    response = client.get("/api/v1/bulk", params={"state": "DONE"})
    assert response.status_code == 400
    assert "unknown state 'DONE'" in response.json()["detail"]


def test_running_command_in_metrics_and_overview(client: TestClient) -> None:
    command_id = client.post("/api/v1/bulk/webSlow", json={"query": QUERY}).json()["command_id"]
    wait_for(lambda: client.get(f"/api/v1/bulk/{command_id}").json()["processed"] > 0)
    text = client.get("/metrics").text
    assert f'conveyor_bulk_command_total{{action="webSlow",command_id="{command_id}"}} 200.0' in text
    assert 'conveyor_bulk_commands{state="RUNNING"} 1.0' in text
    overview = client.get("/api/v1/overview").json()
    assert overview["bulk"][0]["command_id"] == command_id
    client.put(f"/api/v1/bulk/{command_id}/abort")
