"""``conveyor stream delete-group``: deletes a consumer group without members from logs, with a
confirmation; refuses one whose consumers run."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from conveyor.cli.main import app
from conveyor.log import Name, open_log_manager

runner = CliRunner()
LOGS = [Name.of("demo", "input"), Name.of("demo", "other")]
GROUP = Name.of("demo", "readers")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "conveyor.toml"
    path.write_text(f'[node]\nid = "cli-test"\ndata_dir = "{tmp_path}/data"\n', encoding="utf-8")
    with open_log_manager(f"local://{tmp_path}/data/log", default_codec="bytes") as manager:
        for log in LOGS:
            manager.create_if_not_exists(log, 2)
            manager.appender(log).append(0, b"record")
            with manager.create_tailer(GROUP, log) as tailer:
                assert tailer.read(5.0) is not None
                tailer.commit()
    return path


def groups(config: Path) -> dict[str, list[str]]:
    with open_log_manager(f"local://{config.parent}/data/log") as manager:
        return {log.urn: [g.urn for g in manager.list_consumer_groups(log)] for log in LOGS}


def test_delete_group_asks_then_deletes(config: Path) -> None:
    args = ["stream", "delete-group", "-g", GROUP.urn, "demo/input", "demo/other", "--config", str(config)]
    declined = runner.invoke(app, args, input="n\n")
    assert declined.exit_code == 1
    assert groups(config) == {"demo/input": [GROUP.urn], "demo/other": [GROUP.urn]}

    accepted = runner.invoke(app, args, input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "deleted consumer group demo/readers from demo/input" in accepted.output
    assert "deleted consumer group demo/readers from demo/other" in accepted.output
    assert groups(config) == {"demo/input": [], "demo/other": []}

    again = runner.invoke(app, [*args, "--yes"])
    assert again.exit_code == 1
    assert "has no committed position on demo/input" in again.output


def test_delete_group_with_members_is_refused(config: Path) -> None:
    with open_log_manager(f"local://{config.parent}/data/log", default_codec="bytes") as manager:
        member = manager.subscribe(GROUP, LOGS[0])
        try:
            result = runner.invoke(
                app,
                [
                    "stream",
                    "delete-group",
                    "-g",
                    GROUP.urn,
                    "demo/input",
                    "demo/other",
                    "-y",
                    "--config",
                    str(config),
                ],
            )
        finally:
            member.close()
    assert result.exit_code == 1
    assert "refused" in result.output and "stop its consumers first" in result.output
    assert "deleted consumer group demo/readers from demo/other" in result.output
    assert groups(config) == {"demo/input": [GROUP.urn], "demo/other": []}


def test_delete_group_of_unknown_log(config: Path) -> None:
    result = runner.invoke(
        app, ["stream", "delete-group", "-g", GROUP.urn, "demo/none", "-y", "--config", str(config)]
    )
    assert result.exit_code == 1
    assert "demo/none" in result.output and "does not exist" in result.output
