"""Bulk Service throughput: ``setProperties`` end to end against hand-written SQL, same run.

    .venv/bin/python bench/bulk.py [--docs 200000] [--backends sqlite,postgresql] [--bucket 1000]
                                      [--repeats 3]

For each database, on one fresh table of ``--docs`` documents, the same change (one JSON
property set, and ``modified`` stamped, on every document) done four ways, each timed:

- ``single UPDATE``: one ``UPDATE ... SET properties = <json set>`` of every row (the physical limit);
- ``plain batched loop``: what one writes by hand for "set this property on the rows of a query":
  select the ids (in the table's storage order, as the bulk scroller does), then one
  ``UPDATE ... WHERE id IN (<1000 ids>)`` per 1000 ids on the driver's own connection, one
  transaction each;
- ``bulk end to end``: ``BulkService.submit`` to COMPLETED (scroll, buckets on a ``local://`` log,
  action computation threads, status merging in a SQLite KV store), in this one process;
- ``bulk end to end, 2 processes``: the same with the computations in two other processes sharing
  the command's buckets on the same local log (this process only submits and waits).

Rates are documents/s; ratios are against the single UPDATE of the same run and the plain loop.
With ``--repeats N`` the whole run (a fresh table each time) is done N times: rates are the
medians, ratios the medians of each run's ratios, with [min-max] of the rates.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from conveyor.bulk import BulkCommand, BulkService
from conveyor.kv import open_kv_store
from conveyor.log import open_log_manager
from conveyor.repository import Repository, open_repository

URLS = {
    "sqlite": "sqlite:///{tmp}/bench-bulk.db",
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test",
    "mysql": "mysql://root@127.0.0.1:3306/test",
}
PREFIX = "benchbulk_"
LOOP_BATCH = 1000


def _stamp() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _json_set(dialect: str, placeholder: str) -> str:
    """SQL setting ``dc:source`` to the string bound at ``placeholder``."""
    if dialect == "postgresql":
        return f"properties || jsonb_build_object('dc:source', CAST({placeholder} AS text))"
    if dialect in ("mysql", "mariadb"):
        return f"json_set(properties, '$.\"dc:source\"', {placeholder})"
    return f"json_set(properties, '$.\"dc:source\"', {placeholder})"


def settle(repo: Repository) -> None:
    """Start each method from the same state: the previous one's WAL checkpointed (SQLite), its
    dead row versions vacuumed (PostgreSQL), so no method pays for the one before it."""
    if repo.dialect == "sqlite":
        with repo.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    elif repo.dialect == "postgresql":
        with repo.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"VACUUM ANALYZE {repo.table_name}")


def single_update(repo: Repository, value: str) -> float:
    stmt = sa.text(
        f"UPDATE {repo.table_name} SET properties = {_json_set(repo.dialect, ':v')}, modified = :now"
    )
    started = time.perf_counter()
    with repo.engine.begin() as conn:
        conn.execute(stmt, {"v": value, "now": _stamp()})
    return time.perf_counter() - started


def plain_loop(repo: Repository, value: str) -> float:
    """Ids in storage order, then one ``UPDATE ... WHERE id IN (...)`` per batch, on the DBAPI."""
    table, dialect = repo.table_name, repo.dialect
    mark = "?" if dialect == "sqlite" else "%s"
    order = "rowid" if dialect == "sqlite" else "id"
    started = time.perf_counter()
    raw = repo.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(f"SELECT id FROM {table} ORDER BY {order}")
        ids = [row[0] for row in cursor.fetchall()]
        if dialect != "sqlite":
            raw.commit()
        for i in range(0, len(ids), LOOP_BATCH):
            chunk = ids[i : i + LOOP_BATCH]
            where = (
                f"id = ANY({mark})" if dialect == "postgresql" else f"id IN ({','.join([mark] * len(chunk))})"
            )
            params: list[Any] = [value, _stamp()]
            params += [chunk] if dialect == "postgresql" else chunk
            if dialect == "sqlite":
                cursor.execute("BEGIN IMMEDIATE")  # the repository's connections run in autocommit
            changes = f"properties = {_json_set(dialect, mark)}, modified = {mark}"
            cursor.execute(f"UPDATE {table} SET {changes} WHERE {where}", params)
            if dialect == "sqlite":
                cursor.execute("COMMIT")
            else:
                raw.commit()
        cursor.close()
    finally:
        raw.close()
    return time.perf_counter() - started


def _command(value: str, bucket: int) -> BulkCommand:
    return BulkCommand(
        "setProperties",
        "SELECT * FROM Document",
        params={"dc:source": value},
        bucket_size=bucket,
        batch_size=bucket,
    )


def _run_command(service: BulkService, value: str, bucket: int) -> float:
    started = time.perf_counter()
    command_id = service.submit(_command(value, bucket))
    assert service.wait(command_id, 3600), service.status(command_id)
    elapsed = time.perf_counter() - started
    status = service.status(command_id)
    assert status.processed == status.total and not status.error_count, status
    return elapsed


def bulk_end_to_end(repo: Repository, value: str, tmp: Path, bucket: int) -> float:
    with (
        open_log_manager(f"local://{tmp}/log-{value}", default_codec="json") as logs,
        open_kv_store(f"sqlite:///{tmp}/kv-{value}.db", "bulk") as kv,
        BulkService(logs, kv, repo) as service,
    ):
        # Timed from submit on a node already running, as in the 2-process variant.
        assert service.processor is not None and service.processor.wait_for_assignments(30)
        return _run_command(service, value, bucket)


def worker(log_url: str, kv_url: str, repo_url: str, stop_file: str) -> None:
    """A bulk processing node (``bulk.py --worker ...``) until ``stop_file`` exists."""
    with (
        open_log_manager(log_url, default_codec="json") as logs,
        open_kv_store(kv_url, "bulk") as kv,
        open_repository(repo_url) as repo,
    ):
        service = BulkService(logs, kv, repo).start()
        print("ready", flush=True)
        while not Path(stop_file).exists():
            time.sleep(0.1)
        service.close(30)


def bulk_two_processes(repo: Repository, repo_url: str, value: str, tmp: Path, bucket: int) -> float:
    log_url, kv_url, stop = (
        f"local://{tmp}/log-{value}",
        f"sqlite:///{tmp}/kv-{value}.db",
        tmp / f"stop-{value}",
    )
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", log_url, kv_url, repo_url, str(stop)],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")},
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        with (
            open_log_manager(log_url, default_codec="json") as logs,
            open_kv_store(kv_url, "bulk") as kv,
            BulkService(logs, kv, repo, processing=False) as service,
        ):
            time.sleep(2)  # both workers join the consumer groups and split the partitions
            return _run_command(service, value, bucket)
    finally:
        stop.touch()
        for proc in procs:
            proc.wait(60)
            if proc.stdout is not None:
                proc.stdout.close()


def run(backend: str, docs: int, bucket: int) -> list[tuple[str, str, float]]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        url = URLS[backend].format(tmp=tmp)
        repo_url = f"{url}{'&' if '?' in url else '?'}table_prefix={PREFIX}"
        repo = open_repository(url, table_prefix=PREFIX)
        try:
            if repo.count("SELECT * FROM Document"):
                repo.drop()
                repo = open_repository(url, table_prefix=PREFIX)
            repo.import_documents(
                (
                    {
                        "type": "File",
                        "name": f"d{i:07d}",
                        "parent_path": f"/f{i % 10}",
                        "properties": {"dc:title": f"doc {i}", "demo:index": i},
                    }
                    for i in range(docs)
                ),
                batch_size=5000,
            )
            total = repo.count("SELECT * FROM Document")
            rows: list[tuple[str, float]] = []
            settle(repo)
            rows.append(("single UPDATE", single_update(repo, "a")))
            settle(repo)
            rows.append(("plain batched loop", plain_loop(repo, "b")))
            settle(repo)
            rows.append(("bulk end to end", bulk_end_to_end(repo, "c", tmp, bucket)))
            assert repo.count("SELECT * FROM Document WHERE dc:source = 'c'") == total
            settle(repo)
            rows.append(
                ("bulk end to end, 2 processes", bulk_two_processes(repo, repo_url, "d", tmp, bucket))
            )
            assert repo.count("SELECT * FROM Document WHERE dc:source = 'd'") == total
        finally:
            repo.drop()
    return [(backend, name, total / seconds) for name, seconds in rows]


def _table(runs: list[list[tuple[str, str, float]]]) -> list[str]:
    """Markdown rows: median rate [min-max], median ratios to the run's single UPDATE and loop."""
    lines = []
    for backend, name, _ in runs[0]:
        rates, to_single, to_loop = [], [], []
        for results in runs:
            rate = next(r for b, n, r in results if b == backend and n == name)
            base = next(r for b, n, r in results if b == backend and n == "single UPDATE")
            loop = next(r for b, n, r in results if b == backend and n == "plain batched loop")
            rates.append(rate)
            to_single.append(rate / base)
            to_loop.append(rate / loop)
        spread = f" [{min(rates):,.0f}-{max(rates):,.0f}]" if len(rates) > 1 else ""
        lines.append(
            f"| {backend} | {name} | {statistics.median(rates):,.0f}{spread} "
            f"| {statistics.median(to_single):.2f} | {statistics.median(to_loop):.2f} |"
        )
    return lines


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        worker(*sys.argv[2:6])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--backends", default="sqlite,postgresql", help=f"among {', '.join(URLS)}")
    parser.add_argument("--bucket", type=int, default=1000, help="bucket and batch size of the bulk command")
    parser.add_argument("--repeats", type=int, default=1, help="whole runs; the table shows medians")
    args = parser.parse_args()
    runs: list[list[tuple[str, str, float]]] = []
    for repeat in range(args.repeats):
        results: list[tuple[str, str, float]] = []
        for backend in args.backends.split(","):
            results.extend(run(backend, args.docs, args.bucket))
        if args.repeats > 1:
            print(f"run {repeat + 1}: " + ", ".join(f"{b} {n} {r:,.0f}" for b, n, r in results), flush=True)
        runs.append(results)
    print(
        f"{args.docs:,} documents, bucket = batch = {args.bucket}, plain loop batches of {LOOP_BATCH}, "
        f"{'median of ' + str(args.repeats) if args.repeats > 1 else 'one run'}"
    )
    print("| database | method | documents/s | vs single UPDATE | vs plain loop |\n|---|---|---:|---:|---:|")
    for line in _table(runs):
        print(line)


if __name__ == "__main__":
    main()
