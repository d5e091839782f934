"""Queries that are no text or too large get a 400 from the API, never a 500 (issue 14, item 7)."""

from __future__ import annotations

import importlib.util

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("conveyor.bulk") is None,
    reason="the Bulk Service (conveyor.bulk) is not installed",
)


def test_a_query_with_a_lone_surrogate_is_a_400(client: TestClient) -> None:
    import tests.web.actions  # noqa: F401  (registers webSlow)

    # JSON may escape a lone surrogate (``\ud800``); it decodes to a str that is no text
    body = b'{"query": "SELECT * FROM File WHERE dc:title = \'caf\\ud800\'"}'
    response = client.post("/api/v1/bulk/webSlow", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert "surrogate" in response.json()["detail"]
    assert client.get("/api/v1/bulk").json() == []  # nothing was submitted


def test_a_bulk_command_with_a_lone_surrogate_names_it(client: TestClient) -> None:
    from conveyor.bulk import BulkCommand
    from conveyor.errors import BulkValidationError

    node = client.app.state.node  # type: ignore[attr-defined]
    query = "SELECT * FROM File WHERE dc:title = 'caf\udc80'"
    with pytest.raises(BulkValidationError, match="query holds a lone surrogate") as caught:
        node.bulk_service.submit(BulkCommand(action="setProperties", query=query, params={"dc:a": 1}))
    str(caught.value).encode("utf-8")
    with pytest.raises(BulkValidationError, match="params holds a lone surrogate"):
        node.bulk_service.submit(
            BulkCommand(action="setProperties", query="SELECT * FROM File", params={"dc:a": "\udc80"})
        )
    assert node.bulk_service.statuses() == []
