"""Key-value store throughput: our API against the raw client doing the same, in the same run.

    .venv/bin/python bench/kv.py [--redis redis://127.0.0.1:6379/0] [-n 5000]

Prints ops/s for put and get through ``conveyor.kv`` and through redis-py (and SQLAlchemy core on
SQLite), with our overhead in percent; and the round trips ``get_many`` takes on Redis.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Callable

import redis
import sqlalchemy as sa

from conveyor.kv import open_kv_store


def rate(n: int, op: Callable[[int], object]) -> float:
    """Operations per second of ``op(i)`` for i in range(n)."""
    start = time.perf_counter()
    for i in range(n):
        op(i)
    return n / (time.perf_counter() - start)


def report(what: str, ours: float, raw: float) -> None:
    """One line: our rate, the raw rate, our overhead."""
    overhead = 100 * (raw / ours - 1)
    print(f"{what:<22} ours {ours:>9.0f} ops/s   raw {raw:>9.0f} ops/s   overhead {overhead:5.1f}%")


def bench_redis(url: str, n: int) -> None:
    """put/get through RedisKeyValueStore vs redis-py SET/GET on the same keys."""
    name = "bench" + uuid.uuid4().hex[:8]
    store = open_kv_store(url, name)
    client = redis.Redis.from_url(url)
    value = b"x" * 100
    prefix = f"conveyor:kv:{name}:".encode()
    report("redis put", rate(n, lambda i: store.put(f"k{i}", value)),
           rate(n, lambda i: client.set(prefix + f"k{i}".encode(), value)))  # fmt: skip
    report("redis get", rate(n, lambda i: store.get(f"k{i}")),
           rate(n, lambda i: client.get(prefix + f"k{i}".encode())))  # fmt: skip
    keys = [f"k{i}" for i in range(100)]
    before = int(client.info("stats")["total_commands_processed"])
    store.get_many(keys)
    after = int(client.info("stats")["total_commands_processed"])
    print(f"redis get_many(100)    {after - before - 1} command(s) on the server")  # minus the INFO itself
    for key in list(store.keys()):
        store.put(key, None)
    store.close()
    client.close()


def bench_sqlite(n: int) -> None:
    """put/get through SQLKeyValueStore vs SQLAlchemy core on a similar table."""
    with tempfile.TemporaryDirectory() as tmp:
        store = open_kv_store(f"sqlite:///{tmp}/kv.db", "bench")
        engine = sa.create_engine(f"sqlite:///{tmp}/raw.db")
        meta = sa.MetaData()
        table = sa.Table("kv", meta, sa.Column("k", sa.LargeBinary, primary_key=True),
                         sa.Column("v", sa.LargeBinary), sa.Column("expires", sa.Double))  # fmt: skip
        meta.create_all(engine)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        value = b"x" * 100

        def raw_put(i: int) -> None:
            with engine.begin() as conn:
                stmt = sa.dialects.sqlite.insert(table).values(k=f"k{i}".encode(), v=value, expires=None)
                conn.execute(stmt.on_conflict_do_update(index_elements=[table.c.k], set_={"v": value}))

        def raw_get(i: int) -> None:
            with engine.connect() as conn:
                conn.execute(sa.select(table.c.v).where(table.c.k == f"k{i}".encode())).scalar()

        report("sqlite put", rate(n, lambda i: store.put(f"k{i}", value)), rate(n, raw_put))
        report("sqlite get", rate(n, lambda i: store.get(f"k{i}")), rate(n, raw_get))
        store.close()
        engine.dispose()


def main() -> None:
    """Run the benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("-n", type=int, default=5000)
    args = parser.parse_args()
    bench_redis(args.redis, args.n)
    bench_sqlite(args.n)


if __name__ == "__main__":
    main()
