"""The REST API moves consumer positions with the same code as ``conveyor stream position``
(``conveyor.log.positions``): by time on Work logs too, refused while the group has consumers."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from conveyor import Conveyor
from tests.web.conftest import DEMO, READERS
from tests.web.works import Quick

BASE = "/api/v1/management/stream/consumer/position"


def test_position_by_date_on_a_work_log(client: TestClient, node: Conveyor) -> None:
    for n in range(2):
        node.work_manager.schedule(Quick(n=n), after_commit=False)
    assert node.work_manager.await_completion("quick", 30)
    tailer = node.log_manager.create_tailer("demo/replay", "work/quick", codec="bytes")
    tailer.to_end()
    tailer.commit()
    tailer.close()
    where = {"stream": "work/quick", "consumer": "demo/replay"}
    response = client.put(f"{BASE}/after", params={**where, "date": "2000-01-01T00:00:00Z"})
    assert response.status_code == 200, response.text
    assert response.json()["lag"] == node.log_manager.lag("work/quick", "demo/replay").upper >= 2
    future = str(int(time.time() * 1000) + 3_600_000)
    response = client.put(f"{BASE}/after", params={**where, "date": future})
    assert response.status_code == 200, response.text
    assert response.json()["lag"] == 0


def test_position_refused_while_the_group_has_consumers(client: TestClient, node: Conveyor) -> None:
    subscriber = node.log_manager.subscribe(READERS, DEMO, codec="bytes")
    try:
        deadline = time.monotonic() + 30
        while not subscriber.assignments() and time.monotonic() < deadline:
            subscriber.read(0.1)
        before = client.get(BASE, params={"stream": DEMO.urn, "consumer": READERS}).json()["lag"]
        response = client.put(f"{BASE}/beginning", params={"stream": DEMO.urn, "consumer": READERS})
        assert response.status_code == 409, response.text
        assert "is consuming log 'demo/input'" in response.json()["detail"]
    finally:
        subscriber.close()
    assert client.get(BASE, params={"stream": DEMO.urn, "consumer": READERS}).json()["lag"] == before
