"""Every ``conveyor`` subcommand (besides ``stream`` and ``web``) on an embedded config, output checked.

``node`` runs as a subprocess, since signals matter; the rest go through typer's runner.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from conveyor import Conveyor
from conveyor.cli.demo import demo_documents
from conveyor.cli.main import app
from tests.work.works import RUNS, Marked, Steps

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

CONFIG = """
[node]
id = "cli-node"
data_dir = "{data}"
modules = ["tests.work.works"]
heartbeat_s = 0.3
shutdown_timeout_s = {shutdown}
[[work.queues]]
id = "notes"
categories = ["notes"]
max_threads = 2
[[work.queues]]
id = "marked"
categories = ["marked"]
[[work.queues]]
id = "steps"
categories = ["steps"]
max_threads = 1
[web]
token = "very-secret-token"
"""


def write_config(
    tmp_path: Path, name: str = "conveyor.toml", shutdown: float = 20.0, extra: str = ""
) -> Path:
    path = tmp_path / name
    path.write_text(CONFIG.format(data=tmp_path / "data", shutdown=shutdown) + extra, encoding="utf-8")
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path)


def invoke(*args: str, code: int = 0) -> Result:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result


def flat(text: str) -> str:
    """Output with runs of whitespace (and rich's line folding) collapsed."""
    return " ".join(text.split())


# --- help ------------------------------------------------------------------------------------------

SUBCOMMANDS = [
    ([], "Works, streams, bulk actions"),
    (["node"], "Run a node until SIGTERM or SIGINT"),
    (["nodes"], "List the nodes of the cluster"),
    (["demo"], "Show the platform at work"),
    (["config"], "Inspect the configuration"),
    (["config", "check"], "Validate the configuration"),
    (["work"], "Schedule Works"),
    (["work", "schedule"], "Schedule one Work of WORK_TYPE"),
    (["work", "stats"], "Scheduled, running, completed"),
    (["work", "queues"], "The configured queues"),
    (["work", "rerun-failed"], "Schedule again the Works"),
    (["work", "dead-letters"], "List the dead letters"),
    (["work", "dead-letters", "show"], "Show the dead letter of the Work ID"),
    (["work", "dead-letters", "rerun"], "Schedule again the dead letters"),
    (["bulk", "result"], "Write the result of a bulk command"),
    (["bulk"], "Run actions over the documents"),
    (["bulk", "submit"], "Submit a bulk command"),
    (["bulk", "status"], "Print the status of a bulk command"),
    (["bulk", "wait"], "Follow a bulk command"),
    (["bulk", "abort"], "Abort a bulk command"),
    (["kv"], "Read and write key-value stores"),
    (["kv", "get"], "Print the value of KEY"),
    (["kv", "put"], "Set KEY to VALUE"),
    (["kv", "keys"], "List the keys of a store"),
    (["kv", "delete"], "Remove KEY"),
    (["stream"], ""),
]


@pytest.mark.parametrize(
    ("path", "text"), SUBCOMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_help(path: list[str], text: str) -> None:
    output = flat(invoke(*path, "--help").output)
    assert "Usage:" in output
    assert text in output
    if path in (["node"], ["nodes"]) or len(path) > 1:
        assert "--config" in output  # every command but demo (embedded by design) takes --config


def test_no_arguments_shows_the_subcommands() -> None:
    result = runner.invoke(app, [])
    assert result.exit_code in (0, 2)  # click >= 8.2 exits 2 on no_args_is_help
    for name in ("stream", "work", "bulk", "kv", "node", "nodes", "config", "demo"):
        assert name in result.output


# --- config --------------------------------------------------------------------------------------


def test_config_check_prints_effective_settings_with_secrets_masked(config: Path, tmp_path: Path) -> None:
    config.write_text(
        config.read_text() + '[kv]\nurl = "postgresql://conveyor:hunter2@localhost/test"\n', encoding="utf-8"
    )
    result = invoke("config", "check", "--config", str(config))
    assert "hunter2" not in result.output and "very-secret-token" not in result.output
    data = json.loads(result.output)
    assert data["node"]["id"] == "cli-node"
    assert data["kv"]["url"] == "postgresql://conveyor:***@localhost/test"
    assert data["web"]["token"] == "***"
    assert data["log"]["url"] == f"local://{tmp_path / 'data'}/log"  # {data_dir} resolved
    assert data["transient"]["blob_dir"] == f"{tmp_path / 'data'}/transient"
    assert [q["id"] for q in data["work"]["queues"]] == ["notes", "marked", "steps"]


def test_config_from_environment_variable(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_CONFIG", str(config))
    monkeypatch.setenv("CONVEYOR_NODE_ID", "from-env")
    data = json.loads(invoke("config", "check").output)
    assert data["node"]["id"] == "from-env"


@pytest.mark.parametrize(
    ("command", "text", "message"),
    [
        (["config", "check"], "[node]\nid = 'x'\nheartbeat = 1\n", r"node\.heartbeat: unknown key"),
        (["work", "stats"], "[[work.queues]]\nid = 'q'\nmax_threads = 'two'\n", r"max_threads: .*integer"),
        (["kv", "keys"], "[node]\nlog_format = 'xml'\n", r"node\.log_format: .*'text', 'json' or 'kv'"),
        (["nodes"], "[work\nurl = 1\n", r"invalid TOML"),
        (["bulk", "status", "x"], "[bulk]\nprocessing = 'maybe'\n", r"bulk\.processing: .*boolean"),
    ],
)
def test_bad_config_exits_1_naming_file_and_key(
    tmp_path: Path, command: list[str], text: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    result = invoke(*command, "--config", str(path), code=1)
    assert str(path) in result.output  # the file, unfolded
    assert re.search(message, flat(result.output)), result.output
    assert "Traceback" not in result.output


def test_config_check_connect_reaches_the_backends(config: Path) -> None:
    result = invoke("config", "check", "--connect", "--config", str(config))
    assert "backends reachable: log, kv, repository" in result.output


def test_config_check_connect_names_an_unreachable_backend(config: Path, tmp_path: Path) -> None:
    config.write_text(config.read_text() + '[kv]\nurl = "postgresql://u:pw@127.0.0.1:1/test"\n')
    result = invoke("config", "check", "--connect", "--config", str(config), code=1)
    text = flat(result.output)
    assert f"{config}: kv.url: cannot reach" in text
    assert "u:***@127.0.0.1:1" in text and ":pw@" not in text


def test_missing_config_file(tmp_path: Path) -> None:
    result = invoke("config", "check", "--config", str(tmp_path / "nope.toml"), code=1)
    assert f"{tmp_path / 'nope.toml'}: configuration file not found" in result.output


def test_bad_usage_exits_2(config: Path) -> None:
    assert runner.invoke(app, ["work", "schedule", "--config", str(config)]).exit_code == 2
    assert (
        runner.invoke(app, ["bulk", "submit", "trash", "--config", str(config)]).exit_code == 2
    )  # no --query
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2


# --- work ----------------------------------------------------------------------------------------


def test_work_schedule_run_then_stats(config: Path, unique: str) -> None:
    out = invoke(
        "work",
        "schedule",
        "Note",
        "--param",
        f"token={unique}",
        "--param",
        "value=7",
        "--run",
        "--timeout",
        "20",
        "--config",
        str(config),
    ).output
    assert re.search(r"scheduled Note id=\S+ on queue notes", out), out
    assert [v for v, _ in RUNS[unique]] == [7]  # the JSON value 7 reached the Work as an int
    stats = invoke("work", "stats", "--config", str(config)).output
    row = next(line for line in stats.splitlines() if " notes " in line)
    # scheduled, running, succeeded, failed, dead-lettered, canceled, processing here
    assert re.search(r"notes\s+│\s+0\s+│\s+0\s+│\s+1\s+│\s+0\s+│\s+0\s+│\s+0\s+│\s+yes", row), stats


def test_work_schedule_without_run_leaves_it_scheduled(config: Path, unique: str) -> None:
    invoke("work", "schedule", "Note", "--param", f"token={unique}", "--config", str(config))
    assert RUNS[unique] == []
    stats = invoke("work", "stats", "--config", str(config)).output
    row = next(line for line in stats.splitlines() if " notes " in line)
    assert re.search(r"notes\s+│\s+1\s+│", row), stats


def test_work_schedule_errors(config: Path) -> None:
    unknown = flat(invoke("work", "schedule", "Nope", "--config", str(config), code=2).output)
    assert "unknown Work type 'Nope'" in unknown and "Note" in unknown  # lists the registered types
    bad = flat(invoke("work", "schedule", "Note", "-p", "bogus=1", "--config", str(config), code=2).output)
    assert "cannot build Note" in bad and "bogus" in bad
    usage = flat(invoke("work", "schedule", "Note", "-p", "novalue", "--config", str(config), code=2).output)
    assert "expected KEY=VALUE" in usage


def test_work_queues(config: Path) -> None:
    lines = invoke("work", "queues", "--config", str(config)).output.splitlines()
    notes = next(line for line in lines if "│ notes" in line)
    assert re.search(r"notes\s+│\s+notes\s+│\s+2\s+│\s+notes\s+│\s+-", notes), notes
    assert any("│ steps" in line for line in lines) and any("│ default" in line for line in lines)


def test_work_rerun_failed(config: Path, unique: str) -> None:
    out = invoke(
        "work",
        "schedule",
        "Flaky",
        "-p",
        f"token={unique}",
        "-p",
        "failures=3",
        "--run",
        "--config",
        str(config),
        code=1,  # the Work went to the dead letters
    ).output
    assert "scheduled Flaky" in out
    assert RUNS[unique] == ["attempt"] * 3  # first attempt + retry_count=2, all failed: a dead letter
    out = invoke("work", "rerun-failed", "--config", str(config)).output
    assert "rescheduled 1 failed Work(s)" in out
    assert "rescheduled 0 failed Work(s)" in invoke("work", "rerun-failed", "--config", str(config)).output


# --- bulk ----------------------------------------------------------------------------------------


@pytest.fixture
def documents(config: Path) -> Path:
    with Conveyor.from_config(config) as node:
        assert node.repository.import_documents(demo_documents(12)) == 12
    return config


def test_bulk_submit_run_processes_here(documents: Path) -> None:
    # no node runs: --run runs the bulk computations in the command itself
    result = invoke(
        "bulk",
        "submit",
        "setProperties",
        "--query",
        "SELECT * FROM Document WHERE ecm:primaryType = 'File'",
        "--param",
        "dc:source=cli",
        "--bucket-size",
        "3",
        "--batch-size",
        "2",
        "--run",
        "--timeout",
        "30",
        "--config",
        str(documents),
    )
    command_id, _, status_json = result.output.partition("\n")
    status = json.loads(status_json)
    assert status["command_id"] == command_id
    assert status["state"] == "COMPLETED"
    assert status["processed"] == status["total"] == 8  # 12 documents, every third a Note
    with Conveyor.from_config(documents) as node:
        assert node.repository.count("SELECT * FROM Document WHERE dc:source = 'cli'") == 8
    again = json.loads(invoke("bulk", "status", command_id, "--config", str(documents)).output)
    assert again["state"] == "COMPLETED" and again["processed"] == 8


def test_bulk_submit_then_wait_in_another_command(documents: Path) -> None:
    command_id = invoke(
        "bulk",
        "submit",
        "setProperties",
        "-q",
        "SELECT * FROM Note",
        "-p",
        "dc:source=later",
        "--config",
        str(documents),
    ).output.strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", command_id)
    # nothing ran it: `bulk submit` only submits
    assert json.loads(invoke("bulk", "status", command_id, "--config", str(documents)).output)["state"] == (
        "SCHEDULED"
    )
    status = json.loads(
        invoke("bulk", "wait", command_id, "--run", "--timeout", "30", "--config", str(documents)).output
    )
    assert status["state"] == "COMPLETED" and status["processed"] == 4


def test_bulk_abort(tmp_path: Path, documents: Path) -> None:
    # a node that does not run the bulk pipeline: the command stays queued until aborted
    idle = write_config(tmp_path, "idle.toml", extra="[bulk]\nprocessing = false\n")
    command_id = invoke(
        "bulk", "submit", "trash", "-q", "SELECT * FROM File", "--config", str(idle)
    ).output.strip()
    before = json.loads(invoke("bulk", "status", command_id, "--config", str(idle)).output)
    assert before["state"] == "SCHEDULED"
    aborted = json.loads(invoke("bulk", "abort", command_id, "--config", str(idle)).output)
    assert aborted["state"] == "ABORTED" and aborted["command_id"] == command_id
    result = invoke("bulk", "wait", command_id, "--timeout", "5", "--config", str(idle), code=1)
    assert json.loads(result.output)["state"] == "ABORTED"  # an aborted command is not a success


def test_bulk_wait_times_out_with_exit_3(tmp_path: Path, documents: Path) -> None:
    idle = write_config(tmp_path, "idle.toml", extra="[bulk]\nprocessing = false\n")
    command_id = invoke(
        "bulk", "submit", "trash", "-q", "SELECT * FROM File", "--config", str(idle)
    ).output.strip()
    result = invoke("bulk", "wait", command_id, "--timeout", "0.3", "--config", str(idle), code=3)
    assert "command still SCHEDULED after 0.3 s" in flat(result.output)
    invoke("bulk", "abort", command_id, "--config", str(idle))


@pytest.mark.parametrize("command", ["status", "wait", "abort"])
def test_bulk_unknown_command(config: Path, command: str) -> None:
    result = invoke("bulk", command, "no-such-id", "--config", str(config), code=1)
    assert "no bulk command 'no-such-id'" in result.output


# --- kv ------------------------------------------------------------------------------------------


def test_kv_put_get_keys_delete(config: Path) -> None:
    c = ("--config", str(config))
    invoke("kv", "put", "greeting", "hello world", *c)
    invoke("kv", "put", "gifts", "1", *c)
    invoke("kv", "put", "other", "1", "--store", "second", *c)
    assert invoke("kv", "get", "greeting", *c).output == "hello world"  # as stored: no newline added
    assert invoke("kv", "get", "other", "-s", "second", *c).output == "1"
    assert invoke("kv", "keys", *c).output.split() == ["gifts", "greeting"]
    assert invoke("kv", "keys", "gre", *c).output.split() == ["greeting"]
    assert invoke("kv", "keys", "--store", "second", *c).output.split() == ["other"]
    invoke("kv", "delete", "gifts", *c)
    invoke("kv", "put", "gone-soon", "x", "--ttl", "0.2", *c)
    time.sleep(0.4)
    assert "no key 'gone-soon' in store 'default'" in invoke("kv", "get", "gone-soon", *c, code=1).output
    invoke("kv", "delete", "greeting", *c)
    assert "no key 'greeting'" in invoke("kv", "get", "greeting", *c, code=1).output
    assert invoke("kv", "keys", *c).output.split() == []


def test_kv_markup_is_printed_verbatim(config: Path) -> None:
    invoke("kv", "put", "k", "[bold]not markup[/bold]", "--config", str(config))
    assert invoke("kv", "get", "k", "--config", str(config)).output == "[bold]not markup[/bold]"


# --- demo ----------------------------------------------------------------------------------------


def test_demo_with_small_sizes(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    data.mkdir()
    (data / "stale").write_text("emptied first")
    out = invoke(
        "demo",
        "--data-dir",
        str(data),
        "--documents",
        "30",
        "--works",
        "5",
        "--records",
        "40",
        "--timeout",
        "30",
    ).output
    text = flat(out)
    assert "imported 30 documents into the repository" in text
    assert "stream topology drained: True; lag of demo-count: 0" in text
    assert "documents with dc:source = 'bulk-demo': 20" in text
    assert "What ran" in text
    for step, items in (
        ("repository import", 30),
        ("works (4 threads)", 5),
        ("stream topology", 40),
        ("bulk setProperties", 20),
    ):
        assert re.search(rf"{re.escape(step)}\s+│\s+{items}\s+│", out), out
    assert "kv.db" in text and "repository.db" in text
    assert not (data / "stale").exists()


# --- node and nodes (subprocesses) ---------------------------------------------------------------


class NodeProcess:
    """``conveyor node`` in a subprocess, its stderr in a file."""

    def __init__(self, config: Path, stderr: Path, **env: str) -> None:
        self.stderr_path = stderr
        self._stderr = stderr.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "conveyor.cli.main", "node", "--config", str(config)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        )
        wait_for(lambda: " running (data in " in self.stderr() or self.process.poll() is not None, 30)
        assert self.process.poll() is None, self.stderr()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self._stderr.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._stderr.close()


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def started() -> Iterator[list[NodeProcess]]:
    nodes: list[NodeProcess] = []
    yield nodes
    for node in nodes:
        node.kill()


def schedule(config: Path, works: list[Steps] | list[Marked]) -> None:
    """Schedule from this process without running any queue."""
    with Conveyor.from_config(config, env={"CONVEYOR_WORK_PROCESSING": "*=false"}) as node:
        for work in works:
            node.work_manager.schedule(work, after_commit=False)


def test_node_processes_a_queue_and_stops_cleanly_on_sigterm(
    config: Path, tmp_path: Path, started: list[NodeProcess]
) -> None:
    path = tmp_path / "steps.log"
    schedule(config, [Steps(id="s1", path=str(path), total=40, step_s=0.05)])
    node = NodeProcess(config, tmp_path / "node1.err", CONVEYOR_LOG_FORMAT="json", CONVEYOR_NODE_ID="n1")
    started.append(node)
    assert wait_for(lambda: len(lines(path)) >= 5, 20), node.stderr()
    node.signal(signal.SIGTERM)
    assert node.wait(20) == 0, node.stderr()  # well within shutdown_timeout_s
    err = node.stderr()
    assert "SIGTERM: shutting down" in err and "node n1 stopped" in err and "timeout" not in err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert records and all(r["node"] == "n1" for r in records)  # structured logs, node id in context
    assert any(r["msg"] == "node started" for r in records)
    stopped_at = len(lines(path))
    assert 5 <= stopped_at < 40

    # nothing lost: a new node resumes the suspended Work where it stopped
    second = NodeProcess(config, tmp_path / "node2.err", CONVEYOR_NODE_ID="n2")
    started.append(second)
    assert wait_for(lambda: len(lines(path)) >= 40, 30), second.stderr()
    second.signal(signal.SIGINT)
    assert second.wait(20) == 0, second.stderr()
    done = lines(path)
    assert [int(step) for _, step, _ in done] == list(range(1, 41))
    assert {pid for _, _, pid in done[stopped_at:]} == {str(second.process.pid)}


def test_a_second_signal_forces_exit(tmp_path: Path, started: list[NodeProcess]) -> None:
    config = write_config(tmp_path, shutdown=60.0)
    path = tmp_path / "marked.log"
    schedule(config, [Marked(id="slow", path=str(path), seconds=30.0)])
    node = NodeProcess(config, tmp_path / "node.err")
    started.append(node)

    def running() -> bool:
        stats = invoke("work", "stats", "--config", str(config)).output
        return bool(re.search(r"marked\s+│\s+\d+\s+│\s+1\s+│", stats))

    assert wait_for(running, 20), node.stderr()
    node.signal(signal.SIGTERM)
    assert wait_for(lambda: "shutting down" in node.stderr(), 10)
    with pytest.raises(subprocess.TimeoutExpired):
        node.process.wait(1.0)  # the graceful stop waits for the 30 s Work
    node.signal(signal.SIGTERM)
    assert node.wait(10) == 1
    assert "second signal: forcing exit" in node.stderr()
    assert lines(path) == []


def test_two_nodes_split_queues_by_processing_flags(
    config: Path, tmp_path: Path, started: list[NodeProcess]
) -> None:
    marked = tmp_path / "marked.log"
    steps = tmp_path / "steps.log"
    a = NodeProcess(
        config, tmp_path / "a.err", CONVEYOR_NODE_ID="node-a", CONVEYOR_WORK_PROCESSING="*=false,marked=true"
    )
    started.append(a)
    b = NodeProcess(
        config, tmp_path / "b.err", CONVEYOR_NODE_ID="node-b", CONVEYOR_WORK_PROCESSING="*=false,steps=true"
    )
    started.append(b)

    listing = invoke("nodes", "--config", str(config)).output
    row_a = next(line for line in listing.splitlines() if "node-a" in line)
    row_b = next(line for line in listing.splitlines() if "node-b" in line)
    assert "marked" in row_a and "steps" not in row_a and "ago" in row_a
    assert "steps" in row_b and "marked" not in row_b

    schedule(config, [Marked(id=f"m{i}", path=str(marked), seconds=0.01) for i in range(6)])
    schedule(config, [Steps(id=f"s{i}", path=str(steps), total=2, step_s=0.01) for i in range(3)])
    assert wait_for(lambda: len(lines(marked)) == 6 and len(lines(steps)) == 6, 30)
    assert {pid for _, pid in lines(marked)} == {str(a.process.pid)}
    assert {pid for _, _, pid in lines(steps)} == {str(b.process.pid)}

    for node in (a, b):
        node.signal(signal.SIGTERM)
    assert a.wait(20) == 0 and b.wait(20) == 0
    # a stopped node withdraws from the cluster list
    listing = invoke("nodes", "--config", str(config)).output
    assert "node-a" not in listing and "node-b" not in listing
