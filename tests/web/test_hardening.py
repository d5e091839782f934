"""The management server under hostile requests, through real HTTP (uvicorn on a free port): a body
is never read before the token is checked and never past ``[web] max_body_bytes``; other Hosts
(DNS rebinding) get 400, cross-site state changes 403, undecodable input 400, never 500."""

from __future__ import annotations

import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from conveyor import Conveyor
from conveyor.errors import ConfigurationError
from conveyor.runtime.config import load_settings
from conveyor.web import WebServer, create_app, start_web_server
from tests.services import free_port
from tests.web.conftest import TOKEN, node_config, start_conveyor_web

MiB = 1024 * 1024
BEARER = {"Authorization": f"Bearer {TOKEN}"}
RERUN = "/api/v1/work/dead-letters/rerun"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def secured(node: Conveyor) -> Iterator[WebServer]:
    """The node's server with a token, on 127.0.0.1."""
    server = start_web_server(node, host="127.0.0.1", port=0, token=TOKEN)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def open_server(node: Conveyor) -> Iterator[WebServer]:
    """The node's server without token, on 127.0.0.1 (the default)."""
    server = start_web_server(node, host="127.0.0.1", port=0)
    try:
        yield server
    finally:
        server.stop()


def post_big(
    port: int, size: int, *, chunked: bool = False, headers: bytes = b"", timeout: float = 120
) -> tuple[int, bytes]:
    """POST ``size`` bytes (made up as they go) to the bulk API; reads the response whenever the
    server sends one. Returns the bytes of body sent and what the server answered (up to 4 KiB)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % size
    pending = (
        b"POST /api/v1/bulk/setProperties HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n" + headers + framing + b"\r\n\r\n"
    )
    piece = b" " * (64 * 1024)
    sent = 0
    answer = b""
    sending = True
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(answer) < 4096:
            writing = sending and (bool(pending) or sent < size)
            readable, writable, _ = select.select([sock], [sock] if writing else [], [], 5)
            if readable:
                data = sock.recv(4096)
                if not data:
                    break
                answer += data
            elif writable:
                if not pending:
                    part = piece[: size - sent]
                    sent += len(part)
                    pending = b"%x\r\n%b\r\n" % (len(part), part) if chunked else part
                    if chunked and sent >= size:
                        pending += b"0\r\n\r\n"
                try:
                    pending = pending[sock.send(pending) :]
                except (ConnectionResetError, BrokenPipeError):
                    sending = False  # the server closed instead of reading the rest: read its answer
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return sent, answer


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer[9:12])


# (a) authentication before the body, and a body limit


def test_a_huge_body_without_token_gets_401_before_it_is_read(secured: WebServer) -> None:
    for chunked in (False, True):
        sent, answer = post_big(secured.port, 200 * MiB, chunked=chunked)
        assert status_of(answer) == 401
        assert b"connection: close" in answer.lower()
        assert b"Authorization: Bearer" in answer
        assert sent < 40 * MiB, f"the client could send {sent // MiB} MiB before the 401"
    # the server still answers, and honours the token; the API's description stays public
    assert httpx.get(secured.url + "/api/v1/nodes", headers=BEARER, timeout=10).status_code == 200
    assert httpx.get(secured.url + "/openapi.json", timeout=10).status_code == 200
    assert httpx.get(secured.url + "/health", timeout=10).status_code == 200


def test_bodies_over_the_limit_get_413_before_they_are_read(secured: WebServer) -> None:
    token = f"Authorization: Bearer {TOKEN}\r\n".encode()
    sent, answer = post_big(secured.port, 200 * MiB, headers=token)
    assert status_of(answer) == 413
    assert b"max_body_bytes (1048576)" in answer
    assert sent < 40 * MiB
    sent, answer = post_big(secured.port, 200 * MiB, chunked=True, headers=token)
    assert status_of(answer) == 413
    assert sent < 40 * MiB
    # within the limit the route gets the body (and says what is wrong with it)
    query = "SELECT * FROM Document" + " " * (900 * 1024)
    response = httpx.post(
        secured.url + "/api/v1/bulk/noSuchAction", json={"query": query}, headers=BEARER, timeout=30
    )
    assert response.status_code == 422 and "string_too_long" in response.text
    # a small chunked body is read and handed to the route
    response = httpx.put(
        secured.url + "/api/v1/work/queues/quick/processing",
        content=iter([b'{"enabled":', b" true}"]),
        headers={**BEARER, "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200, response.text


# (b) DNS rebinding


def test_other_host_headers_get_400(open_server: WebServer) -> None:
    url = open_server.url + "/api/v1/node"
    port = open_server.port
    response = httpx.get(url, headers={"Host": "attacker.example"}, timeout=10)
    assert response.status_code == 400
    assert "allowed_hosts" in response.json()["detail"]
    assert httpx.get(url, headers={"Host": f"attacker.example:{port}"}, timeout=10).status_code == 400
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}", "127.0.0.1"):
        assert httpx.get(url, headers={"Host": host}, timeout=10).status_code == 200, host


def test_allowed_hosts_and_public_binds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_WEB_TOKEN", raising=False)
    config = node_config(tmp_path, allowed_hosts=["conveyor.example.com", "*.nodes.example"], token=TOKEN)
    conveyor = Conveyor.from_config(config)
    try:
        servers = [start_web_server(conveyor, port=0), start_web_server(conveyor, host="0.0.0.0", port=0)]
        try:
            for server in servers:
                url = f"http://127.0.0.1:{server.port}/api/v1/nodes"
                for host, expected in [
                    ("conveyor.example.com", 200),
                    ("n1.nodes.example:8080", 200),
                    ("nodes.example", 400),
                    ("attacker.example", 400),
                    ("localhost", 200),
                ]:
                    response = httpx.get(url, headers={"Host": host, **BEARER}, timeout=10)
                    assert response.status_code == expected, (server.host, host)
        finally:
            for server in servers:
                server.stop()
        # a public address without allowed_hosts: the token is the protection, any Host is served
        server = start_web_server(
            Conveyor.from_config(node_config(tmp_path / "other", token=TOKEN)), host="0.0.0.0", port=0
        )
        try:
            url = f"http://127.0.0.1:{server.port}/api/v1/nodes"
            assert (
                httpx.get(url, headers={"Host": "anything.example", **BEARER}, timeout=10).status_code == 200
            )
            assert httpx.get(url, headers={"Host": "anything.example"}, timeout=10).status_code == 401
        finally:
            server.stop()
            server.node.stop()
    finally:
        conveyor.stop()


def test_an_ip_address_the_connection_came_to_is_a_valid_host(node: Conveyor) -> None:
    # (a Kubernetes probe sends the pod's address): the test client's connection "came to" 10.1.2.3
    with TestClient(create_app(node), base_url="http://10.1.2.3:8080") as client:
        assert client.get("/api/v1/nodes").status_code == 200
        assert client.get("/api/v1/nodes", headers={"Host": "10.9.9.9:8080"}).status_code == 400


def test_allowed_hosts_setting_is_checked() -> None:
    settings = load_settings({"web": {"allowed_hosts": ["Conveyor.Example.COM.", "[::1]", "*"]}}, env={})
    assert settings.web.allowed_hosts == ("conveyor.example.com", "::1", "*")
    env = {"CONVEYOR_WEB_ALLOWED_HOSTS": "a.example, b.example", "CONVEYOR_WEB_MAX_BODY_BYTES": "2097152"}
    settings = load_settings({}, env=env)
    assert settings.web.allowed_hosts == ("a.example", "b.example")
    assert settings.web.max_body_bytes == 2 * MiB
    assert load_settings({}, env={}).web.max_body_bytes == MiB
    for bad in ("http://x.example", "x.example:8080", "x.example/path", "a b"):
        with pytest.raises(ConfigurationError, match="invalid allowed host"):
            load_settings({"web": {"allowed_hosts": [bad]}}, env={})


# (c) cross-site request forgery


def test_cross_site_state_changes_get_403(open_server: WebServer) -> None:
    url = open_server.url + RERUN
    same = open_server.url

    def post(**headers: str) -> int:
        return httpx.post(url, headers=headers, content=b"category=broken", timeout=10).status_code

    assert post(Origin="http://attacker.example", **FORM) == 403
    assert post(Origin="null", **FORM) == 403
    assert post(Referer="http://attacker.example/page", **FORM) == 403
    assert post(**FORM) == 403  # no Origin nor Referer, and not JSON
    assert post(Origin="http://attacker.example", **{"Content-Type": "application/json"}) == 403
    assert post(Origin=f"http://127.0.0.1:{open_server.port + 1}", **FORM) == 403  # another port
    response = httpx.post(url, headers={"Origin": "http://attacker.example", **FORM}, timeout=10)
    assert "cross-site request refused" in response.json()["detail"]
    # the dashboard's own pages, and API clients sending JSON
    assert post(Origin=same, **FORM) == 200
    assert post(Referer=same + "/", **FORM) == 200
    assert post(**{"Content-Type": "application/json; charset=utf-8"}) == 200
    assert httpx.post(url, json={}, timeout=10).status_code == 200
    # reads are not state changes
    assert httpx.get(
        open_server.url + "/api/v1/work/queues", headers={"Origin": "http://x.example"}
    ).is_success


def test_with_a_token_only_the_bearer_header_skips_the_origin_check(secured: WebServer) -> None:
    url = secured.url + RERUN
    attacker = {"Origin": "http://attacker.example", **FORM}
    assert httpx.post(url, headers={**BEARER, **attacker}, timeout=10).status_code == 200
    with httpx.Client(base_url=secured.url, timeout=10) as browser:
        assert browser.post("/login", json={"token": TOKEN}).status_code == 204  # sets the cookie
        assert browser.post(RERUN, headers=attacker).status_code == 403
        assert browser.post(RERUN, headers={"Origin": secured.url, **FORM}).status_code == 200


# (d) decoding errors


def test_undecodable_input_gets_400_not_500(open_server: WebServer) -> None:
    base = open_server.url
    json_headers = {"Content-Type": "application/json", "Origin": base}
    for path in (
        "/api/v1/bulk?user=%ED%A0%80",  # a lone surrogate, UTF-8 encoded
        "/api/v1/bulk?user=%FF",
        "/api/v1/bulk?user=%zz",
        "/api/v1/bulk?user=%E2%82",
        "/api/v1/nodes/%ED%A0%80",
        "/api/v1/work/queues/%C0%80",
    ):
        response = httpx.get(base + path, timeout=10)
        assert response.status_code == 400, path
        assert "percent" in response.json()["detail"] or "UTF-8" in response.json()["detail"]
    for body in (
        b'{"enabled": "\\ud800"}',
        b'{"enabled": true, "\\udfff": 1}',
        b'{"enabled": "\xed\xa0\x80"}',
    ):
        response = httpx.put(
            base + "/api/v1/work/queues/quick/processing", content=body, headers=json_headers
        )
        assert response.status_code == 400, body
    response = httpx.put(
        base + "/api/v1/work/queues/quick/processing", content=b"{nope", headers=json_headers
    )
    assert response.status_code == 422
    # a surrogate pair is a real character: fine
    response = httpx.put(
        base + "/api/v1/work/queues/quick/processing",
        content=b'{"enabled": true, "note": "\\ud83d\\ude00"}',
        headers=json_headers,
    )
    assert response.status_code < 500


def test_bodies_fastapi_cannot_echo_in_a_validation_error_get_422_not_500(secured: WebServer) -> None:
    # FastAPI hands such a body to the validation error as bytes, and its encoder then fails on them
    for content_type in ("text/plain", "application/octet-stream", None):
        headers = dict(BEARER) | ({"Content-Type": content_type} if content_type else {})
        response = httpx.post(
            secured.url + "/api/v1/bulk/setProperties",
            content=b'{"query": "SELECT * FROM Document", "params": {"dc:title": "\xff"}}',
            headers=headers,
            timeout=10,
        )
        assert response.status_code == 422, (content_type, response.text)
        assert "\ufffd" in response.json()["detail"][0]["input"]
    # numbers JSON has no room for, where an integer is expected: said back as strings
    for number in (b"1e400", b"NaN", b"-Infinity"):
        response = httpx.post(
            secured.url + "/api/v1/bulk/setProperties",
            content=b'{"query": "SELECT * FROM Document", "bucket_size": %b}' % number,
            headers=BEARER | {"Content-Type": "application/json"},
            timeout=10,
        )
        assert response.status_code == 422, (number, response.text)
        assert response.json()["detail"][0]["loc"] == ["body", "bucket_size"]


def test_the_dashboard_works_through_the_guard(open_server: WebServer) -> None:
    base = open_server.url
    assert "dashboard.js" in httpx.get(base + "/", timeout=10).text
    assert httpx.get(base + "/static/dashboard.js", timeout=10).status_code == 200
    # what dashboard.js sends for its buttons: fetch() with a same-origin Origin, JSON when a body
    headers = {"Origin": base, "Accept": "application/json"}
    assert httpx.post(base + RERUN, headers=headers, timeout=10).status_code == 200
    response = httpx.put(
        base + "/api/v1/work/queues/quick/processing", json={"enabled": True}, headers=headers, timeout=10
    )
    assert response.status_code == 200


# memory


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_server_memory_stays_flat_under_huge_unauthenticated_bodies(tmp_path: Path) -> None:
    config = tmp_path / "conveyor.toml"
    config.write_text(
        f'[node]\nid = "rss"\ndata_dir = "{tmp_path}/data"\n[web]\ntoken = "{TOKEN}"\n', encoding="utf-8"
    )
    port = free_port()
    process = start_conveyor_web(config, port, stdout=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        assert process.poll() is None
        for _ in range(3):  # warm up: the routes, the JSON error path
            httpx.get(base + "/api/v1/nodes", headers=BEARER, timeout=10)
            post_big(port, 1000, headers=b"Connection: close\r\n")
        idle = _rss_bytes(process.pid)
        peak = idle
        done = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _rss_bytes(process.pid))
                time.sleep(0.01)

        results: list[tuple[int, bytes]] = []
        clients = [
            threading.Thread(target=lambda: results.append(post_big(port, 200 * MiB))) for _ in range(4)
        ]
        watcher = threading.Thread(target=watch)
        watcher.start()
        for client in clients:
            client.start()
        for client in clients:
            client.join(180)
        done.set()
        watcher.join()
        grown = peak - idle
        print(f"server RSS: idle {idle / MiB:.1f} MiB, peak {peak / MiB:.1f} MiB")
        assert grown < 50 * 10**6, f"RSS grew by {grown / MiB:.1f} MiB (idle {idle / MiB:.1f} MiB)"
        assert len(results) == 4
        for sent, answer in results:
            assert status_of(answer) == 401
            assert sent < 40 * MiB
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
