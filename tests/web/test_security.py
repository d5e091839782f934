"""Tokens: required on non-loopback addresses, enforced as bearer or cookie; secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conveyor import Conveyor
from conveyor.errors import ConfigurationError
from conveyor.web import WebServer, create_app
from conveyor.web.security import check_bind, is_loopback, resolve_token
from tests.web.conftest import BASE_URL, TOKEN, node_config


@pytest.fixture
def secured(node: Conveyor) -> TestClient:
    return TestClient(create_app(node, token=TOKEN), base_url=BASE_URL)


def test_requests_without_the_token_are_401(secured: TestClient) -> None:
    for path in ("/api/v1/nodes", "/api/v1/work/queues", "/metrics", "/api/v1/bulk", "/api/v1/overview"):
        response = secured.get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in response.json()["detail"]
    assert secured.put("/api/v1/work/queues/quick/processing", json={"enabled": False}).status_code == 401
    response = secured.get("/api/v1/nodes", headers={"Authorization": "Bearer wrong-token-xxxxxxxx"})
    assert response.status_code == 401


def test_bearer_token_opens_the_api(secured: TestClient) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert secured.get("/api/v1/nodes", headers=headers).status_code == 200
    assert secured.get("/metrics", headers=headers).status_code == 200


def test_health_stays_open_for_probes(secured: TestClient) -> None:
    assert secured.get("/health").status_code == 200


def test_dashboard_redirects_to_sign_in_then_uses_a_cookie(secured: TestClient) -> None:
    response = secured.get("/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert "API token" in secured.get("/login").text
    assert secured.post("/login", json={"token": "wrong-token-xxxxxxxx"}).status_code == 401
    response = secured.post("/login", json={"token": TOKEN})
    assert response.status_code == 204
    assert "httponly" in response.headers["set-cookie"].lower()
    assert "samesite=strict" in response.headers["set-cookie"].lower()
    assert secured.get("/").status_code == 200
    assert secured.get("/api/v1/overview").status_code == 200


def test_public_bind_without_token_is_refused(node: Conveyor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_WEB_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match=r"refusing to serve the management API on '0\.0\.0\.0'"):
        WebServer(node, host="0.0.0.0", port=0)
    monkeypatch.setenv("CONVEYOR_WEB_TOKEN", TOKEN)
    server = WebServer(node, host="0.0.0.0", port=0)
    assert server.token == TOKEN


def test_token_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_WEB_TOKEN", raising=False)
    conveyor = Conveyor.from_config(node_config(tmp_path, host="0.0.0.0", token=TOKEN))
    try:
        server = WebServer(conveyor, port=0)
        assert (server.host, server.token) == ("0.0.0.0", TOKEN)
        assert conveyor.settings.redacted()["web"]["token"] == "***"
    finally:
        conveyor.stop()


def test_bind_rules() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.com")
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", TOKEN)
    with pytest.raises(ConfigurationError, match="CONVEYOR_WEB_TOKEN"):
        check_bind("10.0.0.1", None)
    with pytest.raises(ConfigurationError, match="too short"):
        resolve_token("short", {})
    assert resolve_token(None, {"CONVEYOR_WEB_TOKEN": TOKEN}) == TOKEN
    assert resolve_token(None, {}) is None


def test_passwords_in_backend_urls_are_masked(tmp_path: Path) -> None:
    config = node_config(tmp_path)
    config["kv"] = {"url": "redis://:hunter2@127.0.0.1:1/0"}
    conveyor = Conveyor.from_config(config)
    try:
        with TestClient(create_app(conveyor), base_url=BASE_URL) as client:
            body = client.get("/api/v1/node").json()
            assert body["settings"]["kv"]["url"] == "redis://:***@127.0.0.1:1/0"
            health = client.get("/health")
            assert "hunter2" not in health.text
            assert health.json()["checks"]["kv"]["url"] == "redis://:***@127.0.0.1:1/0"
            assert health.status_code == 503
            assert health.json()["checks"]["kv"]["status"] == "failed"
    finally:
        conveyor.stop()
