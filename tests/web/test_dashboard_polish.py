"""The dashboard's server side: the favicon, the history the server keeps for the charts, and the
deletion of a consumer group without members (REST)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from conveyor import Conveyor
from conveyor.log import Name
from conveyor.web import create_app
from tests.web.conftest import BASE_URL, DEMO, READERS, TOKEN

CONSUMER = "/api/v1/management/stream/consumer"
TIMEOUT = 30.0


@pytest.fixture
def sampled(node: Conveyor) -> Iterator[TestClient]:
    """A client on an app sampling its history every 0.1 s over 0.5 s (5 samples at most)."""
    app = create_app(node, history_interval_s=0.1, history_window_s=0.5)
    with TestClient(app, base_url=BASE_URL, headers={"Origin": BASE_URL}) as client:
        yield client


def wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_favicon_is_served_without_token(node: Conveyor) -> None:
    with TestClient(create_app(node, TOKEN), base_url=BASE_URL) as client:
        response = client.get("/favicon.ico")
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/x-icon"
        assert response.content[:4] == b"\x00\x00\x01\x00"  # an ICO file
        assert client.get("/static/favicon.svg").status_code == 200
        assert client.get("/api/v1/history").status_code == 401  # the history is not public


def test_history_holds_samples_taken_before_the_page_opened(sampled: TestClient) -> None:
    def samples() -> list[dict[str, object]]:
        answer = sampled.get("/api/v1/history")
        assert answer.status_code == 200
        found: list[dict[str, object]] = answer.json()["samples"]
        return found

    wait_for(lambda: len(samples()) >= 3, "3 samples")
    opened = time.time()
    assert sampled.get("/").status_code == 200

    body = sampled.get("/api/v1/history").json()
    assert body["interval_s"] == 0.1 and body["window_s"] == 0.5
    before = [s for s in body["samples"] if s["time"] < opened]
    assert len(before) >= 2
    readers = [c for c in before[0]["consumers"] if c["consumer"] == READERS]
    assert readers == [{"stream": DEMO.urn, "consumer": READERS, "pos": 4, "lag": 6}]
    assert {q["id"] for q in before[0]["queues"]} >= {"quick", "gated", "broken"}
    # a ring buffer: never more than window / interval samples
    time.sleep(0.6)
    assert len(sampled.get("/api/v1/history").json()["samples"]) <= 5


def test_delete_consumer_group(node: Conveyor, client: TestClient) -> None:
    params = {"stream": DEMO.urn, "consumer": READERS}
    member = node.log_manager.subscribe(READERS, DEMO)
    try:
        refused = client.delete(CONSUMER, params=params)
        assert refused.status_code == 409, refused.text
        assert "stop its consumers first" in refused.json()["detail"]
        assert Name.of_urn(READERS) in node.log_manager.list_consumer_groups(DEMO)
    finally:
        member.close()

    done = client.delete(CONSUMER, params=params)
    assert done.status_code == 200, done.text
    assert done.json() == {"stream": DEMO.urn, "consumer": READERS, "deleted": True}
    assert node.log_manager.list_consumer_groups(DEMO) == []
    listed = client.get("/api/v1/management/stream/consumers", params={"stream": DEMO.urn}).json()
    assert listed == []
    assert client.delete(CONSUMER, params=params).status_code == 404  # gone
    assert client.delete(CONSUMER, params={"stream": "demo/nothing", "consumer": READERS}).status_code == 404


def test_delete_consumer_group_refused_cross_site(node: Conveyor) -> None:
    with TestClient(create_app(node), base_url=BASE_URL) as client:
        params = {"stream": DEMO.urn, "consumer": READERS}
        forged = client.delete(CONSUMER, params=params, headers={"Origin": "http://attacker.example"})
        assert forged.status_code == 403
        assert Name.of_urn(READERS) in node.log_manager.list_consumer_groups(DEMO)
