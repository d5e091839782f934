"""Repository throughput: ``conveyor.repository`` against raw SQLAlchemy Core, same run, same schema.

    .venv/bin/python bench/repository.py [-n 20000] [--repeats 3] [--backends sqlite,postgresql,mysql]

For each database: documents/s imported by ``import_documents`` (folders created, free names
checked, JSON encoded) vs a plain ``executemany`` INSERT of the same rows into an identical table;
a property query (``demo:group = 7``, 1% of the rows, a full scan) through NXQL vs a hand-written
``json_extract`` SELECT; ``scroll_ids`` ids/s; ``set_properties`` over all rows. Medians of
``--repeats`` runs, each on fresh tables that are dropped afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from conveyor.repository import Repository, open_repository
from conveyor.repository.store import create_engine, documents_table, split_url
from conveyor.sql_setup import create_table

URLS = {
    "sqlite": "sqlite:///{tmp}/bench-repository.db",
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test",
    "mysql": "mysql://root@127.0.0.1:3306/test",
}


def documents(n: int) -> list[dict[str, Any]]:
    """``n`` documents in 10 folders, with a title, a group (0-99) and an index."""
    return [
        {
            "type": "File",
            "name": f"doc-{i:07d}",
            "parent_path": f"/bench/folder-{i % 10}",
            "properties": {"dc:title": f"Document {i}", "demo:group": i % 100, "demo:index": i},
        }
        for i in range(n)
    ]


def raw_rows(n: int, folder_ids: list[str]) -> list[dict[str, Any]]:
    """The rows ``import_documents`` would write, ready for a plain INSERT."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return [
        {
            "id": str(uuid.uuid4()),
            "parent_id": folder_ids[i % 10],
            "path": f"/bench/folder-{i % 10}/doc-{i:07d}",
            "name": f"doc-{i:07d}",
            "type": "File",
            "properties": {"dc:title": f"Document {i}", "demo:group": i % 100, "demo:index": i},
            "trashed": False,
            "created": now,
            "modified": now,
        }
        for i in range(n)
    ]


def raw_property_query(table: sa.Table, dialect: str) -> sa.Select[Any]:
    """What a person would write by hand for ``demo:group = 7`` (no type guards)."""
    props = table.c.properties
    if dialect == "postgresql":
        value: Any = sa.cast(props.op("->>")(sa.literal("demo:group")), sa.Integer)
    elif dialect in ("mysql", "mariadb"):
        value = sa.func.json_extract(props, sa.literal('$."demo:group"'))
    else:
        value = sa.func.json_extract(props, sa.literal('$."demo:group"'))
    return sa.select(table.c.id).where(value == 7)


def timed(op: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = op()
    return time.perf_counter() - start, result


def one_run(url: str, n: int) -> dict[str, float]:
    """One run of every measure on fresh tables; rates per second."""
    prefix = "b" + uuid.uuid4().hex[:8] + "_"
    docs = documents(n)
    repo: Repository = open_repository(url, table_prefix=prefix)
    db_url, _ = split_url(url)
    engine = create_engine(db_url, url)
    raw = documents_table(sa.MetaData(), prefix + "raw_")
    create_table(engine, raw, url, "repository")
    out: dict[str, float] = {}
    try:
        seconds, count = timed(lambda: repo.import_documents(docs))
        assert count == n
        out["import ours"] = n / seconds
        folder_ids = [repo.get_by_path(f"/bench/folder-{i}").id for i in range(10)]
        rows = raw_rows(n, folder_ids)

        def raw_insert() -> None:
            for i in range(0, n, 1000):
                # conveyor_write: on SQLite this engine emits BEGIN only for writes (else autocommit)
                with engine.connect() as conn:
                    conn.execution_options(conveyor_write=True)
                    with conn.begin():
                        conn.execute(sa.insert(raw), rows[i : i + 1000])

        seconds, _ = timed(raw_insert)
        out["import raw"] = n / seconds

        nxql = "SELECT * FROM File WHERE demo:group = 7"
        seconds, ids = timed(lambda: repo.query_ids(nxql))
        assert len(ids) == len(range(7, n, 100))
        out["query ours"] = 1 / seconds
        stmt = raw_property_query(raw, engine.dialect.name)

        def raw_query() -> list[str]:
            with engine.connect() as conn:
                return list(conn.execute(stmt).scalars())

        seconds, found = timed(raw_query)
        assert len(found) == len(ids)
        out["query raw"] = 1 / seconds

        seconds, pages = timed(lambda: list(repo.scroll_ids("SELECT * FROM File", 1000)))
        assert sum(len(p) for p in pages) == n
        out["scroll ids"] = n / seconds
        all_ids = [i for page in pages for i in page]
        seconds, changed = timed(lambda: repo.set_properties(all_ids, {"dc:source": "bench"}))
        assert changed == n
        out["set_properties"] = n / seconds
    finally:
        raw.drop(engine, checkfirst=True)
        engine.dispose()
        repo.drop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=20000, help="documents per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql,mysql")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{args.n} documents, median of {args.repeats} runs\n")
        print("| database | import ours docs/s | import raw docs/s | ours/raw | property query ours ms"
              " | raw ms | scroll_ids ids/s | set_properties docs/s |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        for backend in args.backends.split(","):
            url = URLS[backend].format(tmp=tmp)
            runs = [one_run(url, args.n) for _ in range(args.repeats)]
            med = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
            print(
                f"| {backend} | {med['import ours']:,.0f} | {med['import raw']:,.0f} "
                f"| {med['import ours'] / med['import raw']:.0%} | {1000 / med['query ours']:.1f} "
                f"| {1000 / med['query raw']:.1f} | {med['scroll ids']:,.0f} "
                f"| {med['set_properties']:,.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
