"""``conveyor stream ...`` against a local log written by the library."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conveyor.cli.main import app
from conveyor.log import LogPartition, Name, open_log_manager
from conveyor.record import Flag, Record

runner = CliRunner()
LOG = Name.of("demo", "input")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "conveyor.toml"
    path.write_text(f'[node]\nid = "cli-test"\ndata_dir = "{tmp_path}/data"\n', encoding="utf-8")
    return path


@pytest.fixture
def filled(config: Path, tmp_path: Path) -> Path:
    with open_log_manager(f"local://{tmp_path}/data/log") as manager:
        manager.create_if_not_exists(LOG, 2)
        appender = manager.appender(LOG)
        for i in range(10):
            appender.append(
                f"key{i}", Record(f"key{i}", f"value {i}".encode(), flags=Flag.DEFAULT | Flag.USER1)
            )
        tailer = manager.create_tailer("readers", LogPartition(LOG, 0))
        while tailer.read(0.2) is not None:
            pass
        tailer.commit()
    return config


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_list(filled: Path) -> None:
    output = invoke("stream", "list", "--config", str(filled))
    assert "demo/input" in output
    assert "readers" in output
    assert "10" in output


def test_lag(filled: Path) -> None:
    output = invoke("stream", "lag", "demo/input", "--verbose", "--config", str(filled))
    assert "readers" in output
    # partition 0 is fully committed, partition 1 is not: lag = records on partition 1
    with open_log_manager(f"local://{filled.parent}/data/log", default_codec="bytes") as manager:
        expected = manager.lag(LOG, "readers").lag
    assert expected > 0
    assert f" {expected} " in output


def test_cat_decodes_records(filled: Path) -> None:
    output = invoke("stream", "cat", "demo/input", "--config", str(filled))
    for i in range(10):
        assert f"key{i}" in output and f"value {i}" in output
    assert "DEFAULT|USER1" in output
    limited = invoke("stream", "cat", "demo/input", "--limit", "3", "--json", "--config", str(filled))
    assert limited.count('"key"') == 3


def test_tail(filled: Path) -> None:
    output = invoke("stream", "tail", "demo/input", "--count", "1", "--config", str(filled))
    assert output.count("key=") == 2  # the last record of each partition


def test_dump_and_restore(filled: Path, tmp_path: Path) -> None:
    dump = tmp_path / "dump.jsonl"
    assert "dumped 10 records" in invoke("stream", "dump", "demo/input", str(dump), "--config", str(filled))
    output = invoke("stream", "restore", str(dump), "--log", "demo/copy", "--config", str(filled))
    assert "restored 10 records" in output
    copy = invoke("stream", "cat", "demo/copy", "--config", str(filled))
    assert all(f"value {i}" in copy for i in range(10))


def test_restore_rejects_garbage(filled: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n", encoding="utf-8")
    result = runner.invoke(app, ["stream", "restore", str(bad), "--config", str(filled)])
    assert result.exit_code == 1
    assert "not a stream dump" in result.output


def test_dump_and_restore_name_a_file_they_cannot_open(filled: Path, tmp_path: Path) -> None:
    # they used to end in a FileNotFoundError / IsADirectoryError traceback
    c = ["--config", str(filled)]
    for args, message in (
        (["dump", "demo/input", str(tmp_path / "no" / "dump.jsonl")], "cannot write"),
        (["dump", "demo/input", str(tmp_path)], "cannot write"),
        (["restore", str(tmp_path / "missing.jsonl")], "cannot read"),
    ):
        result = runner.invoke(app, ["stream", *args, *c])
        assert result.exit_code == 1, result.output
        assert f"error: {message} {args[-1]}" in " ".join(result.output.split())


def test_position(filled: Path) -> None:
    invoke("stream", "position", "demo/input", "--group", "readers", "--to", "end", "--config", str(filled))
    assert "lag 0 of 10" in invoke(
        "stream", "position", "demo/input", "--group", "readers", "--to", "end", "--config", str(filled)
    )
    assert "lag 10 of 10" in invoke(
        "stream", "position", "demo/input", "--group", "readers", "--to", "start", "--config", str(filled)
    )
    output = invoke(
        "stream",
        "position",
        "demo/input",
        "--group",
        "readers",
        "--to",
        "offset",
        "--partition",
        "0",
        "--offset",
        "1",
        "--config",
        str(filled),
    )
    assert "lag 9 of 10" in output or "lag" in output
    bad = runner.invoke(
        app,
        [
            "stream",
            "position",
            "demo/input",
            "--group",
            "readers",
            "--to",
            "nowhere",
            "--config",
            str(filled),
        ],
    )
    assert bad.exit_code == 2 and "Invalid value for '--to'" in bad.output  # bad usage


def test_monitor_runs_a_few_refreshes(filled: Path) -> None:
    output = invoke("stream", "monitor", "--interval", "0.05", "--iterations", "2", "--config", str(filled))
    assert "demo/input" in output


def test_unknown_log_is_a_clean_error(filled: Path) -> None:
    result = runner.invoke(app, ["stream", "cat", "demo/missing", "--config", str(filled)])
    assert result.exit_code == 1
    assert "demo/missing" in result.output and "does not exist" in result.output


def test_config_check(filled: Path) -> None:
    data = json.loads(invoke("config", "check", "--config", str(filled)))
    assert data["node"]["id"] == "cli-test"


def test_config_check_reports_bad_key(tmp_path: Path) -> None:
    path = tmp_path / "conveyor.toml"
    path.write_text("[nod]\nid = 1\n", encoding="utf-8")
    result = runner.invoke(app, ["config", "check", "--config", str(path)])
    assert result.exit_code == 1
    assert "nod: unknown key" in result.output
