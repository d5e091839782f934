"""CLI commands that used to surprise (issue 15 item 2, all but ``conveyor stream``): one test each.

Through typer's runner on an embedded config, except where the process matters (the ``conveyor``
script's ``sys.path``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.cli.demo import demo_documents
from conveyor.codec import BytesCodec
from conveyor.work.dlq import DLQ_STREAM
from tests.cli.test_commands import config, flat, invoke
from tests.work.works import RUNS

__all__ = ["config"]  # the fixture, shared with test_commands

CONVEYOR_SCRIPT = Path(sys.executable).with_name("conveyor")


# --- kv get --------------------------------------------------------------------------------------


def test_kv_get_prints_a_long_value_as_it_is(config: Path) -> None:
    c = ("--config", str(config))
    value = "".join(chr(ord("a") + i % 26) for i in range(200)) + " and [bold]x[/bold] é"
    invoke("kv", "put", "long", value, *c)
    assert invoke("kv", "get", "long", *c).stdout_bytes == value.encode()  # one line, unfolded
    data = json.loads(invoke("kv", "get", "long", "--json", *c).stdout)
    assert data == {"store": "default", "key": "long", "value": value}
    with Conveyor.from_config(config) as node:
        node.kv_store().put("binary", b"\xff\x00\x01")
    assert invoke("kv", "get", "binary", *c).stdout_bytes == b"\xff\x00\x01"  # bytes, not hex
    assert json.loads(invoke("kv", "get", "binary", "--json", *c).stdout)["value_base64"] == "/wAB"


# --- work schedule --run, --param ----------------------------------------------------------------


def test_work_schedule_run_of_a_failing_work_exits_1_and_stats_count_it_failed(
    config: Path, unique: str
) -> None:
    c = ("--config", str(config))
    result = invoke(
        "work", "schedule", "Flaky", "-p", f"token={unique}", "-p", "failures=100", "--run", *c, code=1
    )
    text = flat(result.output)
    work_id = re.search(r"scheduled Flaky id=(\S+)", text).group(1)  # type: ignore[union-attr]
    assert (
        f"Work Flaky id={work_id} failed and went to the dead letters: RuntimeError: flaky failure 3" in text
    )
    assert f"conveyor work dead-letters show {work_id}" in text
    assert RUNS[unique] == ["attempt"] * 3
    stats = invoke("work", "stats", *c).output
    row = next(line for line in stats.splitlines() if " default " in line)
    # scheduled, running, succeeded, failed, dead-lettered, canceled
    assert re.search(r"default\s+│\s+0\s+│\s+0\s+│\s+0\s+│\s+1\s+│\s+1\s+│\s+0\s+│", row), stats


def test_work_schedule_checks_param_types_before_scheduling(config: Path, unique: str) -> None:
    c = ("--config", str(config))
    bad = flat(
        invoke("work", "schedule", "Note", "-p", f"token={unique}", "-p", "value=abc", *c, code=2).output
    )
    assert "--param value='abc': field 'value' of Note is int" in bad
    unknown = flat(invoke("work", "schedule", "Note", "-p", "bogus=1", *c, code=2).output)
    assert "unknown field 'bogus'" in unknown and "token (str), value (int)" in unknown
    stats = invoke("work", "stats", *c).output
    assert re.search(r"notes\s+│\s+0\s+│", stats), stats  # nothing was scheduled
    # a str field takes digits as text; an int field takes its JSON number
    invoke("work", "schedule", "Note", "-p", "token=123", "-p", "value=7", "--run", *c)
    assert [v for v, _ in RUNS["123"]] == [7]
    RUNS.pop("123")


# --- work dead-letters ---------------------------------------------------------------------------


def test_work_dead_letters_list_show_rerun_and_a_damaged_one(config: Path, unique: str) -> None:
    c = ("--config", str(config))
    assert "no dead letters" in invoke("work", "dead-letters", *c).output
    ids = []
    for token in (f"{unique}-a", f"{unique}-b"):
        out = invoke("work", "schedule", "Flaky", "-p", f"token={token}", "--run", *c, code=1).output
        ids.append(re.search(r"scheduled Flaky id=(\S+)", out).group(1))  # type: ignore[union-attr]
    with Conveyor.from_config(config) as node:  # an entry that cannot be decoded, its id still readable
        node.log_manager.appender(DLQ_STREAM, codec=BytesCodec()).append(
            "x", b'{"id":"damaged-1","queue":"notes","type":"Note","error":5}'
        )
    listing = invoke("work", "dead-letters", *c).output
    assert all(work_id in listing for work_id in ids)  # ids whole, never folded
    damaged_row = next(line for line in listing.splitlines() if "damaged-1" in line)
    assert "damaged" in damaged_row.replace("damaged-1", "") and "undecodable dead letter" in damaged_row
    assert "3 dead letter(s)" in listing
    assert invoke("work", "dead-letters", "list", *c).output == listing
    lines = [json.loads(line) for line in invoke("work", "dead-letters", "--json", *c).stdout.splitlines()]
    assert [(d["id"], d["damaged"]) for d in lines] == [(ids[0], False), (ids[1], False), ("damaged-1", True)]

    shown = invoke("work", "dead-letters", "show", ids[0], *c).output
    assert f"id: {ids[0]}\ntype: Flaky\nqueue: default\n" in shown
    assert "error: RuntimeError: flaky failure" in shown
    assert "traceback:\nTraceback (most recent call last):" in shown
    assert 'raise RuntimeError(f"flaky failure' in shown  # the Work's own line
    damaged = invoke("work", "dead-letters", "show", "damaged-1", *c).output
    assert damaged.startswith("DAMAGED dead letter at work-dlq-00:") and "cannot be re-run" in damaged
    assert (
        "no dead letter for Work 'nope'" in invoke("work", "dead-letters", "show", "nope", *c, code=1).output
    )

    out = invoke("work", "dead-letters", "rerun", ids[0], *c).output
    assert "rescheduled 1 failed Work(s)" in out
    left = [
        json.loads(line)["id"] for line in invoke("work", "dead-letters", "--json", *c).stdout.splitlines()
    ]
    assert sorted(left) == sorted([ids[1], "damaged-1"])
    refused = flat(invoke("work", "dead-letters", "rerun", "damaged-1", "nope", *c, code=1).output)
    assert "damaged dead letter(s), kept and not re-run: damaged-1" in refused
    invoke("work", "dead-letters", "rerun", *c, code=2)  # neither ids nor --all
    assert "rescheduled 1 failed Work(s)" in invoke("work", "dead-letters", "rerun", "--all", *c).output
    left = [
        json.loads(line)["id"] for line in invoke("work", "dead-letters", "--json", *c).stdout.splitlines()
    ]
    assert left == ["damaged-1"]  # re-run Works are queued (no node runs them here); the damaged one is kept


# --- config check --------------------------------------------------------------------------------


def test_config_check_refuses_an_unknown_url_scheme_without_connecting(config: Path) -> None:
    config.write_text(config.read_text() + '[log]\nurl = "kafak://broker:9092"\n', encoding="utf-8")
    text = flat(invoke("config", "check", "--config", str(config), code=1).output)
    assert f"{config}: log.url: unknown log backend scheme 'kafak'" in text
    assert "known schemes: file, kafka, local, memory" in text
    # a Kafka URL's client properties too, with no broker to ask
    config.write_text(
        config.read_text().replace("kafak://broker:9092", "kafka://broker:9092?no.such.property=1"),
        encoding="utf-8",
    )
    text = flat(invoke("config", "check", "--config", str(config), code=1).output)
    assert "log.url: Kafka log 'kafka://broker:9092?no.such.property=1'" in text
    assert 'No such configuration property: "no.such.property"' in text


def test_config_check_connect_is_bounded(config: Path) -> None:
    # nothing listens on port 1: the Kafka client would try for 30 s by default
    config.write_text(config.read_text() + '[log]\nurl = "kafka://127.0.0.1:1"\n', encoding="utf-8")
    result = invoke("config", "check", "--connect", "--timeout", "1", "--config", str(config), code=1)
    text = flat(result.output)
    assert f"{config}: log.url:" in text and "127.0.0.1:1" in text
    assert "kv.url" not in text and "repository.url" not in text  # those answered


def test_config_check_refuses_a_module_it_cannot_find(config: Path) -> None:
    # every other command (node, work, bulk) fails on a mistyped node.modules: the check must too
    modules = 'modules = ["json", "no_such_tasks_mod"]'
    config.write_text(config.read_text().replace('modules = ["tests.work.works"]', modules), encoding="utf-8")
    text = flat(invoke("config", "check", "--config", str(config), code=1).output)
    assert "node.modules: no module 'no_such_tasks_mod' in the working directory" in text
    assert "'json'" not in text


# --- environment ---------------------------------------------------------------------------------


def test_an_unknown_conveyor_variable_that_looks_like_a_setting_is_refused(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_NODE_LOG_LEVEL", "DEBUG")
    text = flat(invoke("config", "check", "--config", str(config), code=1).output)
    assert "environment variable CONVEYOR_NODE_LOG_LEVEL is not a Conveyor setting" in text
    assert "did you mean CONVEYOR_LOG_LEVEL, for node.log_level?" in text
    monkeypatch.delenv("CONVEYOR_NODE_LOG_LEVEL")
    for name in (
        "CONVEYOR_REDIS",
        "CONVEYOR_REQUIRE_SERVICES",
        "CONVEYOR_UPDATE_SCREENSHOT",
        "CONVEYOR_KAFKA",
    ):
        monkeypatch.setenv(name, "1")  # the test suite's own: never refused
    monkeypatch.setenv("CONVEYOR_LOG_LEVEL", "DEBUG")
    assert (
        json.loads(invoke("config", "check", "--config", str(config)).stdout)["node"]["log_level"] == "DEBUG"
    )


def test_an_unknown_conveyor_variable_is_warned_about(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_COLOUR", "blue")
    env = dict(os.environ)
    done = subprocess.run(
        [str(CONVEYOR_SCRIPT), "config", "check", "--config", str(config)],
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "environment variable CONVEYOR_COLOUR is not a Conveyor setting: ignored" in done.stderr


# --- node.modules from the working directory -----------------------------------------------------


def test_node_modules_are_imported_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(
        "from pathlib import Path\n\nfrom conveyor.work import Work\n\n\nclass Hello(Work):\n"
        "    name: str = 'x'\n\n    def work(self) -> None:\n"
        "        Path('hello.txt').write_text(self.name)\n",
        encoding="utf-8",
    )
    (tmp_path / "conveyor.toml").write_text(
        f'[node]\ndata_dir = "{tmp_path / "data"}"\nmodules = ["tasks"]\n', encoding="utf-8"
    )
    # the working directory is on no path given (no PYTHONPATH=. needed)
    env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_CONFIG"}
    assert str(tmp_path) not in env.get("PYTHONPATH", "").split(os.pathsep)
    done = subprocess.run(
        [str(CONVEYOR_SCRIPT), "work", "schedule", "Hello", "-p", "name=cwd", "--run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "scheduled Hello" in done.stdout
    assert (tmp_path / "hello.txt").read_text() == "cwd"


# --- help, nodes ---------------------------------------------------------------------------------


def test_web_help_keeps_the_table_names() -> None:
    text = flat(invoke("web", "--help").output)
    assert "needs an API token ([web] token or $CONVEYOR_WEB_TOKEN)" in text
    assert text.count("[web]") == 3  # and in the --host and --port help


def test_no_help_text_has_a_table_name_rich_would_take_for_markup() -> None:
    import typer.main

    from conveyor.cli.main import app

    def commands(cmd: Any, path: str) -> Iterator[tuple[str, Any]]:
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():  # a group
            yield from commands(sub, f"{path} {name}")

    markup = re.compile(r"(?<!\\)\[[a-z_.]+\]")  # "[web]" vanishes, "\\[web]" shows as "[web]"
    found = [
        (path, text)
        for path, cmd in commands(typer.main.get_command(app), "conveyor")
        for text in [cmd.help or "", *(getattr(p, "help", None) or "" for p in cmd.params)]
        if markup.search(text)
    ]
    assert not found
    assert len({path for path, _ in commands(typer.main.get_command(app), "conveyor")}) > 30  # all seen


def test_nodes_says_when_no_node_runs(config: Path) -> None:
    result = invoke("nodes", "--config", str(config))
    assert "no node is running" in result.output and "start one with 'conveyor node'" in flat(result.output)
    assert "┏" not in result.output  # no empty table


# --- bulk result ---------------------------------------------------------------------------------


def test_bulk_result_downloads_a_csv_export(config: Path, tmp_path: Path) -> None:
    with Conveyor.from_config(config) as node:
        assert node.repository.import_documents(demo_documents(12)) == 12
    c = ("--config", str(config))
    command_id = invoke(
        "bulk", "submit", "csvExport", "-q", "SELECT * FROM File", "-p", 'columns=["ecm:uuid"]', "--run", *c
    ).output.partition("\n")[0]
    result = json.loads(invoke("bulk", "result", command_id, *c).stdout)
    assert result["count"] == 8 and result["filename"] == "export.csv"
    target = tmp_path / "out" / "export.csv"
    target.parent.mkdir()
    out = flat(invoke("bulk", "result", command_id, "-o", str(target), *c).output)
    assert f"wrote {result['length']} bytes to {target}" in out
    rows = target.read_text(encoding="utf-8-sig").splitlines()
    assert rows[0] == "ecm:uuid" and len(rows) == 9
    assert invoke("bulk", "result", command_id, "-o", "-", *c).stdout_bytes == target.read_bytes()
    assert not list(target.parent.glob("*.part"))
    assert "no bulk command 'nope'" in invoke("bulk", "result", "nope", "-o", str(target), *c, code=1).output
    # a command with no file to download
    other = invoke("bulk", "submit", "trash", "-q", "SELECT * FROM Note", "--run", *c).output.partition("\n")[
        0
    ]
    none = flat(invoke("bulk", "result", other, "-o", str(tmp_path / "x.csv"), *c, code=1).output)
    assert f"bulk command {other} (trash) has no file to download" in none


def test_a_near_miss_of_a_conveyor_variable_is_refused(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # CONVEYOR_LOGURL starts with no table name, but it is CONVEYOR_LOG_URL mistyped: ignoring it would
    # run the node on the default log while the operator believes it uses the one named
    monkeypatch.setenv("CONVEYOR_LOGURL", "memory://")
    text = flat(invoke("config", "check", "--config", str(config), code=1).output)
    assert "variable CONVEYOR_LOGURL is not a Conveyor setting (did you mean CONVEYOR_LOG_URL?)" in text


def test_bulk_submit_keeps_the_sizes_configured_for_the_action(config: Path) -> None:
    # the options used to default to 100 and 25, overriding [[bulk.actions]] (and an action's own)
    sizes = '[[bulk.actions]]\nname = "setProperties"\nbucket_size = 7\nbatch_size = 3\n'
    config.write_text(config.read_text() + sizes, encoding="utf-8")
    c = ("--config", str(config))
    query = ("-q", "SELECT * FROM File", "-p", "dc:source=x")
    configured = invoke("bulk", "submit", "setProperties", *query, *c).output.partition("\n")[0]
    given = invoke(
        "bulk", "submit", "setProperties", *query, "--bucket-size", "10", "--batch-size", "5", *c
    ).output.partition("\n")[0]
    with Conveyor.from_config(config) as node:
        first, second = (node.bulk_service.get_command(i) for i in (configured, given))
    assert first is not None and (first.bucket_size, first.batch_size) == (7, 3)
    assert second is not None and (second.bucket_size, second.batch_size) == (10, 5)
    assert "--batch-size" in flat(
        invoke("bulk", "submit", "setProperties", *query, "--batch-size", "0", *c, code=2).output
    )


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("stream", "monitor", "-i", "0", "--iterations", "1"), "--interval"),
        (("stream", "monitor", "--iterations", "0"), "--iterations"),
        (("stream", "cat", "demo/none", "-n", "-1"), "--limit"),
        (("stream", "tail", "demo/none", "-n", "-2"), "--count"),
        (("kv", "put", "k", "v", "--ttl", "-1"), "--ttl"),
    ],
)
def test_out_of_range_numbers_are_usage_errors(config: Path, args: tuple[str, ...], option: str) -> None:
    # Before, `monitor -i 0` spun printing, `cat -n -1` was taken, and a negative TTL failed as a
    # store error (exit 1) once the command had opened the node.
    assert option in flat(invoke(*args, "-c", str(config), code=2).output)
