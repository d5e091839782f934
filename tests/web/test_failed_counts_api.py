"""Failed and dead-lettered Works apart from the completed ones in the REST API and /metrics
(issue 15 item 2)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from conveyor import Conveyor
from tests.web.works import Broken, Quick


def test_queues_and_metrics_count_failed_works_apart(client: TestClient, node: Conveyor) -> None:
    node.work_manager.schedule(Broken(n=1), after_commit=False)
    node.work_manager.schedule(Quick(n=1), after_commit=False)
    assert node.work_manager.await_completion(timeout=10)
    queues = {q["id"]: q for q in client.get("/api/v1/work/queues").json()}
    broken, quick = queues["broken"], queues["quick"]
    assert (broken["completed"], broken["failed"], broken["dead_lettered"]) == (1, 1, 1)
    assert (quick["completed"], quick["failed"], quick["dead_lettered"]) == (1, 0, 0)
    text = client.get("/metrics").text
    assert f'conveyor_work_queue_failed_total{{node="{node.node_id}",queue="broken"}} 1.0' in text
    assert f'conveyor_work_queue_dead_lettered_total{{node="{node.node_id}",queue="broken"}} 1.0' in text
    assert f'conveyor_work_queue_failed_total{{node="{node.node_id}",queue="quick"}} 0.0' in text
    (letter,) = client.get("/api/v1/work/dead-letters").json()
    assert "Traceback (most recent call last)" in letter["traceback"]
