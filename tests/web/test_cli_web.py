"""``conveyor web``: serves the dashboard until interrupted; refuses a public address without token."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from conveyor.cli.web import register
from tests.services import free_port
from tests.web.conftest import start_conveyor_web


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "conveyor.toml"
    path.write_text(f'[node]\nid = "cli-web"\ndata_dir = "{tmp_path}/data"\n', encoding="utf-8")
    return path


def test_public_address_without_token_is_refused(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_WEB_TOKEN", raising=False)
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps `web` a named subcommand
    result = CliRunner().invoke(app, ["web", "--host", "0.0.0.0", "--config", str(config)])
    assert result.exit_code == 1
    assert "refusing to serve the management API on '0.0.0.0'" in result.output
    assert "CONVEYOR_WEB_TOKEN" in result.output


def test_web_serves_until_interrupted(config: Path) -> None:
    port = free_port()
    process = start_conveyor_web(config, port)
    try:
        base = f"http://127.0.0.1:{port}"
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert httpx.get(base + "/api/v1/nodes", timeout=5).json()[0]["node_id"] == "cli-web"
        assert "conveyor_node_up" in httpx.get(base + "/metrics", timeout=5).text
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr.decode()
    assert b"node cli-web stopped" in stderr
