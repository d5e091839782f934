"""Listings of the management API with one undecodable entry: 200, the others listed, the damaged
one marked (issue 14, item 6)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from conveyor import Conveyor
from conveyor.codec import BytesCodec
from conveyor.work.dlq import DLQ_STREAM
from tests.web.conftest import DEMO
from tests.web.works import Broken


def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_dead_letters_endpoint_lists_a_damaged_entry(client: TestClient, node: Conveyor) -> None:
    wm = node.work_manager
    wm.schedule(Broken(n=1), after_commit=False)
    wait_for(lambda: len(wm.dead_letters()) == 1)
    node.log_manager.appender(DLQ_STREAM, codec=BytesCodec()).append("broken:x", b"\x00garbage\xff")
    wm.schedule(Broken(n=2), after_commit=False)
    wait_for(lambda: len(wm.dead_letters()) == 3)

    assert [getattr(x, "damaged", False) for x in wm.dead_letters()] == [False, True, False]
    response = client.get("/api/v1/work/dead-letters")
    assert response.status_code == 200
    first, damaged, last = response.json()
    assert "broken work 1 failed on purpose" in first["error"] and not first["damaged"]
    assert "broken work 2 failed on purpose" in last["error"] and not last["damaged"]
    assert damaged["damaged"] is True
    assert damaged["size"] == len(b"\x00garbage\xff")
    assert damaged["position"] == "work-dlq-00:+1"
    assert damaged["error"].startswith("undecodable dead letter (9 bytes at work-dlq-00:+1): ")

    overview = client.get("/api/v1/overview").json()
    assert overview["errors"] == {} and len(overview["dead_letters"]) == 3
    assert "damaged" in client.get("/").text  # the dashboard marks it

    # re-run: the two good letters run again (and fail again), the damaged one is kept
    assert client.post("/api/v1/work/dead-letters/rerun").json()["rerun"] == 2
    wait_for(lambda: len(client.get("/api/v1/work/dead-letters").json()) == 3)
    assert [x["damaged"] for x in client.get("/api/v1/work/dead-letters").json()].count(True) == 1


def test_bulk_listing_shows_a_damaged_status(client: TestClient, node: Conveyor) -> None:
    from conveyor.bulk import BulkCommand

    service = node.bulk_service
    first = service.submit(
        BulkCommand(action="setProperties", query="SELECT * FROM File", params={"dc:source": "x"})
    )
    node.kv_store("bulk").put("status:damaged-1", b"{not json")
    node.kv_store("bulk").put("status:damaged-2", b"[" * 100_000)
    second = service.submit(
        BulkCommand(action="setProperties", query="SELECT * FROM Note", params={"dc:source": "x"})
    )

    statuses = service.statuses()
    assert {s.command_id for s in statuses} == {first, second, "damaged-1", "damaged-2"}
    damaged = {s.command_id: s for s in statuses if getattr(s, "damaged", False)}
    assert set(damaged) == {"damaged-1", "damaged-2"}
    assert damaged["damaged-1"].error_message is not None
    assert damaged["damaged-1"].error_message.startswith(
        "undecodable status (9 bytes at key status:damaged-1)"
    )
    assert damaged["damaged-2"].size == 100_000  # type: ignore[attr-defined]
    assert service.wait_all(10)  # damaged entries never end: not waited for
    assert service.store.describe().get("DAMAGED") == 2

    response = client.get("/api/v1/bulk")
    assert response.status_code == 200
    listed = {s["command_id"]: s for s in response.json()}
    assert set(listed) == {first, second, "damaged-1", "damaged-2"}
    assert listed["damaged-1"]["damaged"] is True and listed["damaged-1"]["state"] == "UNKNOWN"
    assert "undecodable status" in listed["damaged-1"]["error_message"]
    assert listed["damaged-2"]["size"] == 100_000
    assert listed[first]["damaged"] is False and listed[first]["state"] != "UNKNOWN"
    one = client.get("/api/v1/bulk/damaged-1")
    assert one.status_code == 200 and one.json()["damaged"] is True
    assert one.json()["error_message"] == listed["damaged-1"]["error_message"]
    assert client.get("/api/v1/overview").json()["errors"] == {}
    assert "DAMAGED" in client.get("/").text


def test_nodes_listing_shows_a_damaged_heartbeat(client: TestClient, node: Conveyor) -> None:
    from conveyor.runtime.node import NODES_STORE

    store = node.kv_store(NODES_STORE)
    store.put("node:garbled", b"\xff{not json")
    store.put("node:odd", json.dumps({"node_id": "odd", "started_at": "yesterday"}))
    response = client.get("/api/v1/nodes")
    assert response.status_code == 200
    listed = {n["node_id"]: n for n in response.json()}
    assert set(listed) == {"web-test", "garbled", "odd"}
    assert not listed["web-test"]["damaged"] and listed["web-test"]["this_node"]
    assert listed["garbled"]["damaged"] is True
    assert listed["garbled"]["error"].startswith("undecodable heartbeat (10 bytes at key node:garbled)")
    assert "started_at is not a number" in listed["odd"]["error"]
    assert "damaged" in client.get("/").text


def _flip(tmp_path: Path, value: bytes) -> None:
    """Flip a bit in the data of the record holding ``value``: its checksum fails."""
    files = [p for p in (tmp_path / "data").rglob("*") if p.is_file() and value in p.read_bytes()]
    assert len(files) == 1, files
    data = bytearray(files[0].read_bytes())
    data[data.index(value) + len(value) - 1] ^= 0x01
    files[0].write_bytes(bytes(data))


def test_consumers_listing_goes_on_past_a_damaged_record(client: TestClient, tmp_path: Path) -> None:
    _flip(tmp_path, b"value 8")  # the next record demo/readers reads on partition 0 (offset 4)
    response = client.get("/api/v1/management/stream/consumers", params={"stream": DEMO.urn})
    assert response.status_code == 200
    (readers,) = [c for c in response.json() if c["consumer"] == "demo/readers"]
    part = readers["partitions"][0]
    assert part["lag"] == 1 and part["latency_ms"] == 0  # unknown
    assert client.get("/api/v1/overview").json()["errors"] == {}


def test_stream_tail_reports_a_damaged_log(client: TestClient, node: Conveyor, tmp_path: Path) -> None:
    _flip(tmp_path, b"value 4")
    params: dict[str, str | int | float] = {"stream": DEMO.urn, "partition": 0, "rewind": 5, "timeout": 5}
    with client.stream("GET", "/api/v1/management/stream/cat", params=params) as response:
        assert response.status_code == 200
        text = "".join(response.iter_text())
    events = [block for block in text.split("\n\n") if block.startswith("event:")]
    assert [e.split("\n")[0] for e in events] == ["event: record"] * 2 + ["event: error"]
    error = json.loads(events[-1].split("data: ", 1)[1])
    assert error["records"] == 2 and "LogCorruptedError" in error["error"]
