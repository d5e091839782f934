"""Bulk Service throughput: ``setProperties`` end to end against hand-written SQL, same run.

    .venv/bin/python bench/bulk.py [--docs 200000] [--backends sqlite,postgresql] [--bucket 1000]

For each database, on one fresh table of ``--docs`` documents, the same change (one JSON
property set on every document) done three ways, each timed:

- ``single UPDATE``: one ``UPDATE ... SET properties = <json set>`` of every row (the physical limit);
- ``executemany loop``: a plain Python loop over the ids, one ``executemany`` of
  ``UPDATE ... WHERE id = ?`` per 1000 ids, one transaction each;
- ``bulk end to end``: ``BulkService.submit`` to COMPLETED (scroll, buckets on a ``local://`` log,
  action computation threads, status merging in a SQLite KV store), in this one process.

Rates are documents/s; ratios are against the single UPDATE of the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from conveyor.bulk import BulkCommand, BulkService
from conveyor.kv import open_kv_store
from conveyor.log import open_log_manager
from conveyor.repository import Repository, open_repository

URLS = {
    "sqlite": "sqlite:///{tmp}/bench-bulk.db",
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test",
}


def _json_set(dialect: str, value: str) -> str:
    if dialect == "postgresql":
        return f"properties || jsonb_build_object('dc:source', '{value}')"
    return f"json_set(properties, '$.\"dc:source\"', '{value}')"


def single_update(repo: Repository, value: str) -> float:
    engine = repo._engine
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {repo.table_name} SET properties = {_json_set(repo.dialect, value)}"))
    return time.perf_counter() - started


def executemany_loop(repo: Repository, value: str, ids: list[str]) -> float:
    engine = repo._engine
    stmt = sa.text(
        f"UPDATE {repo.table_name} SET properties = {_json_set(repo.dialect, value)} WHERE id = :id"
    )
    started = time.perf_counter()
    for i in range(0, len(ids), 1000):
        with engine.begin() as conn:
            conn.execute(stmt, [{"id": x} for x in ids[i : i + 1000]])
    return time.perf_counter() - started


def bulk_end_to_end(repo: Repository, value: str, tmp: Path, bucket: int) -> float:
    with (
        open_log_manager(f"local://{tmp}/log-{value}", default_codec="json") as logs,
        open_kv_store(f"sqlite:///{tmp}/kv-{value}.db", "bulk") as kv,
        BulkService(logs, kv, repo) as service,
    ):
        started = time.perf_counter()
        command = BulkCommand(
            "setProperties",
            "SELECT * FROM Document",
            params={"dc:source": value},
            bucket_size=bucket,
            batch_size=bucket,
        )
        command_id = service.submit(command)
        assert service.wait(command_id, 3600), service.status(command_id)
        elapsed = time.perf_counter() - started
        status = service.status(command_id)
        assert status.processed == status.total, status
    return elapsed


def run(backend: str, docs: int, bucket: int) -> list[tuple[str, str, float]]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        repo = open_repository(URLS[backend].format(tmp=tmp), table_prefix="benchbulk_")
        try:
            repo._engine.dispose()
            if repo.count("SELECT * FROM Document"):
                with repo._engine.begin() as conn:
                    conn.execute(sa.text(f"DELETE FROM {repo.table_name}"))
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
            ids = repo.query_ids("SELECT * FROM Document")
            rows = [
                ("single UPDATE", single_update(repo, "a")),
                ("executemany loop", executemany_loop(repo, "b", ids)),
                ("bulk end to end", bulk_end_to_end(repo, "c", tmp, bucket)),
            ]
            assert repo.count("SELECT * FROM Document WHERE dc:source = 'c'") == total
        finally:
            repo.drop()
    return [(backend, name, total / seconds) for name, seconds in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--bucket", type=int, default=1000, help="bucket and batch size of the bulk command")
    args = parser.parse_args()
    results: list[tuple[str, str, float]] = []
    for backend in args.backends.split(","):
        results.extend(run(backend, args.docs, args.bucket))
    print(f"{args.docs:,} documents, bucket = batch = {args.bucket}")
    print("| database | method | documents/s | vs single UPDATE |\n|---|---|---:|---:|")
    for backend, name, rate in results:
        base = next(r for b, n, r in results if b == backend and n == "single UPDATE")
        print(f"| {backend} | {name} | {rate:,.0f} | {rate / base:.2f} |")


if __name__ == "__main__":
    main()
