"""The management API on a real embedded node: every endpoint, clear 404s, processing toggles."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from fastapi.testclient import TestClient

from conveyor import Conveyor
from tests.web.conftest import DEMO, READERS
from tests.web.works import GATE, Broken, Gated, Quick


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


# --- health, nodes ------------------------------------------------------------------------------


def test_health_reports_every_probe(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"log", "kv", "work", "streamStatus"}
    assert body["checks"]["log"]["url"].startswith("local://")


def test_nodes_list_this_node(client: TestClient, node: Conveyor) -> None:
    (info,) = client.get("/api/v1/nodes").json()
    assert info["node_id"] == node.node_id
    assert info["this_node"] is True
    assert set(info["queues"]) == {"quick", "gated", "broken", "default"}
    assert client.get(f"/api/v1/nodes/{node.node_id}").json()["node_id"] == node.node_id
    this = client.get("/api/v1/node").json()
    assert this["node_id"] == node.node_id
    assert this["settings"]["node"]["id"] == node.node_id


def test_unknown_node_is_404_with_message(client: TestClient) -> None:
    response = client.get("/api/v1/nodes/nope")
    assert response.status_code == 404
    assert response.json()["detail"] == "unknown node 'nope' (no recent heartbeat)"


# --- work --------------------------------------------------------------------------------------


def test_queues_count_completed_works(client: TestClient, node: Conveyor) -> None:
    for i in range(3):
        node.work_manager.schedule(Quick(n=i), after_commit=False)
    assert node.work_manager.await_completion("quick", 10)
    queues = {q["id"]: q for q in client.get("/api/v1/work/queues").json()}
    assert set(queues) == {"quick", "gated", "broken", "default"}
    assert queues["quick"]["completed"] == 3
    assert queues["quick"]["processing"] is True
    one = client.get("/api/v1/work/queues/quick").json()
    assert (one["scheduled"], one["running"], one["completed"]) == (0, 0, 3)


def test_unknown_queue_is_404_with_message(client: TestClient) -> None:
    for response in (
        client.get("/api/v1/work/queues/nope"),
        client.put("/api/v1/work/queues/nope/processing", json={"enabled": False}),
    ):
        assert response.status_code == 404
        assert response.json()["detail"].startswith("unknown work queue 'nope'; queues: ")


def test_processing_switched_off_through_the_api_stops_the_queue(client: TestClient, node: Conveyor) -> None:
    response = client.put("/api/v1/work/queues/quick/processing", json={"enabled": False})
    assert response.status_code == 200
    assert response.json()["processing"] is False
    assert node.work_manager.is_processing_enabled("quick") is False
    for i in range(3):
        node.work_manager.schedule(Quick(n=i), after_commit=False)
    time.sleep(0.5)  # give a (wrongly) running queue the time to take them
    queue = client.get("/api/v1/work/queues/quick").json()
    assert (queue["scheduled"], queue["completed"]) == (3, 0)
    assert node.work_manager.metrics("default").completed == 0

    assert client.put("/api/v1/work/queues/quick/processing", json={"enabled": True}).json()["processing"]
    assert node.work_manager.await_completion("quick", 10)
    assert client.get("/api/v1/work/queues/quick").json()["completed"] == 3


def test_processing_of_every_queue(client: TestClient, node: Conveyor) -> None:
    queues = client.put("/api/v1/work/processing", json={"enabled": False}).json()
    assert all(not q["processing"] for q in queues)
    assert not node.work_manager.is_processing_enabled()
    queues = client.put("/api/v1/work/processing", json={"enabled": True}).json()
    assert all(q["processing"] for q in queues)


def test_processing_body_is_validated(client: TestClient) -> None:
    response = client.put("/api/v1/work/queues/quick/processing", json={"enabled": "maybe"})
    assert response.status_code == 422


def test_running_works_are_counted(client: TestClient, node: Conveyor) -> None:
    node.work_manager.schedule(Gated(n=1), after_commit=False)
    node.work_manager.schedule(Gated(n=2), after_commit=False)
    wait_for(lambda: client.get("/api/v1/work/queues/gated").json()["running"] == 1)
    assert client.get("/api/v1/work/queues/gated").json()["scheduled"] == 1
    GATE.set()
    try:
        assert node.work_manager.await_completion("gated", 10)
    finally:
        GATE.clear()


def test_dead_letters_listed_and_rerun(client: TestClient, node: Conveyor) -> None:
    node.work_manager.schedule(Broken(n=7), after_commit=False)
    wait_for(lambda: len(client.get("/api/v1/work/dead-letters").json()) == 1)
    (letter,) = client.get("/api/v1/work/dead-letters").json()
    assert letter["queue"] == "broken"
    assert "broken work 7 failed on purpose" in letter["error"]
    assert client.get("/api/v1/overview").json()["dead_letter_count"] == 1

    response = client.post("/api/v1/work/dead-letters/rerun", params={"category": "broken"})
    assert response.json() == {"rerun": 1, "category": "broken"}
    # it fails again, and is back in the dead letters
    wait_for(lambda: len(client.get("/api/v1/work/dead-letters").json()) == 1)
    assert client.post("/api/v1/work/dead-letters/rerun", params={"category": "other"}).json()["rerun"] == 0


# --- streams -----------------------------------------------------------------------------------


def test_streams_list_partitions_records_codec(client: TestClient) -> None:
    streams = {s["name"]: s for s in client.get("/api/v1/management/stream/streams").json()}
    demo = streams[DEMO.urn]
    assert demo["partitions"] == 2
    assert demo["records"] == 10
    assert demo["end_offsets"] == [5, 5]
    assert demo["consumers"] == [READERS]
    assert demo["codec"]
    overview = client.get("/api/v1/management/stream").json()
    assert DEMO.urn in [s["name"] for s in overview["streams"]]


def test_consumers_with_lag_and_latency(client: TestClient) -> None:
    (consumer,) = client.get("/api/v1/management/stream/consumers", params={"stream": DEMO.urn}).json()
    assert consumer["consumer"] == READERS
    assert (consumer["pos"], consumer["end"], consumer["lag"]) == (4, 10, 6)
    parts = consumer["partitions"]
    assert [(p["pos"], p["lag"]) for p in parts] == [(4, 1), (0, 5)]
    assert all(0 <= p["latency_ms"] < 600_000 for p in parts)
    assert consumer["latency_ms"] == max(p["latency_ms"] for p in parts)
    everything = client.get("/api/v1/management/stream/consumers").json()
    assert READERS in [c["consumer"] for c in everything]


def test_unknown_stream_and_consumer_are_404(client: TestClient) -> None:
    response = client.get("/api/v1/management/stream/consumers", params={"stream": "demo/nope"})
    assert response.status_code == 404
    assert response.json()["detail"] == "unknown stream 'demo/nope'"
    response = client.get(
        "/api/v1/management/stream/consumer/position", params={"stream": DEMO.urn, "consumer": "demo/nobody"}
    )
    assert response.status_code == 404
    assert response.json()["detail"] == "unknown consumer 'demo/nobody' on stream 'demo/input'"
    response = client.get("/api/v1/management/stream/cat", params={"stream": "demo/nope"})
    assert response.status_code == 404


def test_invalid_stream_name_is_400(client: TestClient) -> None:
    response = client.get("/api/v1/management/stream/consumers", params={"stream": "bad name/$$"})
    assert response.status_code == 400
    assert "invalid" in response.json()["detail"]


def test_consumer_position_changes(client: TestClient) -> None:
    where = {"stream": DEMO.urn, "consumer": READERS}
    base = "/api/v1/management/stream/consumer/position"
    assert client.get(base, params=where).json()["lag"] == 6
    assert client.put(f"{base}/end", params=where).json()["lag"] == 0
    assert client.put(f"{base}/beginning", params=where).json()["lag"] == 10
    moved = client.put(f"{base}/offset", params={**where, "partition": 1, "offset": 3}).json()
    assert [p["pos"] for p in moved["partitions"]] == [0, 3]
    assert client.put(f"{base}/after", params={**where, "date": "2000-01-01T00:00:00Z"}).json()["lag"] == 10
    assert (
        client.put(f"{base}/after", params={**where, "date": str(int(time.time() * 1000) + 60_000)}).json()[
            "lag"
        ]
        == 0
    )


def test_consumer_position_bad_input(client: TestClient) -> None:
    where = {"stream": DEMO.urn, "consumer": READERS}
    base = "/api/v1/management/stream/consumer/position"
    response = client.put(f"{base}/offset", params={**where, "partition": 9, "offset": 0})
    assert response.status_code == 400
    assert "partition 9 out of range" in response.json()["detail"]
    response = client.put(f"{base}/offset", params={**where, "partition": 0, "offset": 99})
    assert response.status_code == 400
    assert "offset 99 out of range 0..5" in response.json()["detail"]
    response = client.put(f"{base}/after", params={**where, "date": "yesterday"})
    assert response.status_code == 400
    assert "ISO-8601" in response.json()["detail"]


def test_sse_tail_of_a_stream(client: TestClient) -> None:
    params: dict[str, str | int | float] = {"stream": DEMO.urn, "rewind": 2, "limit": 3, "timeout": 5}
    with client.stream("GET", "/api/v1/management/stream/cat", params=params) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    events = [block for block in text.split("\n\n") if block.startswith("event:")]
    records = [json.loads(e.split("data: ", 1)[1]) for e in events if e.startswith("event: record")]
    assert len(records) == 3
    assert all(r["key"].startswith("key") and r["data"].startswith("value") for r in records)
    assert events[-1].startswith("event: end")


def test_sse_tail_from_a_group_position(client: TestClient) -> None:
    params: dict[str, str | int | float] = {
        "stream": DEMO.urn,
        "partition": 0,
        "from_group": READERS,
        "limit": 5,
        "timeout": 0.5,
    }
    with client.stream("GET", "/api/v1/management/stream/cat", params=params) as response:
        text = "".join(response.iter_text())
    records = [
        json.loads(b.split("data: ", 1)[1]) for b in text.split("\n\n") if b.startswith("event: record")
    ]
    assert [r["position"] for r in records] == [4]  # partition 0 holds 5 records, 4 consumed
    assert '"records": 1' in text


def test_processors_listed(client: TestClient) -> None:
    processors = client.get("/api/v1/management/stream/processors").json()
    assert [p["name"] for p in processors] in ([], ["bulk"])  # the Bulk Service's, once installed
    for processor in processors:
        assert processor["terminated"] is False
        assert all(c["state"] == "running" for c in processor["computations"])


# --- metrics and overview ------------------------------------------------------------------------


def test_metrics_are_prometheus_text(client: TestClient, node: Conveyor) -> None:
    node.work_manager.schedule(Quick(n=1), after_commit=False)
    assert node.work_manager.await_completion("quick", 10)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'conveyor_node_up{node="web-test"} 1.0' in text
    assert 'conveyor_work_queue_completed_total{node="web-test",queue="quick"} 1.0' in text
    assert 'conveyor_work_queue_worker_restarts_total{node="web-test",queue="quick"} 0.0' in text
    assert 'conveyor_stream_group_lag{group="demo/readers",stream="demo/input"} 6.0' in text
    assert 'conveyor_stream_partition_lag{group="demo/readers",partition="1",stream="demo/input"} 5.0' in text
    assert 'conveyor_stream_appended_total{stream="demo/input"} 10.0' in text
    assert "conveyor_stream_group_latency_seconds" in text
    assert "conveyor_web_scrape_errors" in text
    assert "conveyor_web_scrape_errors{" not in text  # no section failed


def test_every_documented_metric_name_is_known(client: TestClient) -> None:
    from conveyor.web import METRICS

    text = client.get("/metrics").text
    for name in (
        "conveyor_node_up",
        "conveyor_work_queue_scheduled",
        "conveyor_stream_group_pos",
        "conveyor_computation_records_total",
        "conveyor_work_dead_letters",
    ):
        assert name in METRICS
        assert f"# HELP {name.removesuffix('_total')}" in text or f"# HELP {name}" in text


def test_overview_has_every_section(client: TestClient) -> None:
    body = client.get("/api/v1/overview").json()
    for key in ("nodes", "queues", "streams", "consumers", "processors", "dead_letters", "bulk", "errors"):
        assert key in body
    assert [q["id"] for q in body["queues"]] == ["quick", "gated", "broken", "default"]


def test_dashboard_page_is_server_rendered(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert 'data-queue="quick"' in response.text
    assert "demo/readers" in response.text
    assert client.get("/static/dashboard.js").status_code == 200
    assert client.get("/static/dashboard.css").status_code == 200


def test_openapi_describes_the_api(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/bulk/{action}",
        "/api/v1/bulk/{command_id}/abort",
        "/api/v1/management/stream/consumers",
        "/api/v1/management/stream/consumer/position/end",
        "/api/v1/work/queues/{queue_id}/processing",
        "/api/v1/nodes",
        "/health",
        "/metrics",
        "/api/v1/management/stream/cat",
    ):
        assert path in paths, path
