"""Key-value store throughput: our API against the raw client doing the same, in the same run.

    .venv/bin/python bench/kv.py [--redis redis://127.0.0.1:6379/0] [-n 5000] [--sql URL ...]

Prints ops/s for put and get through ``conveyor.kv`` and through redis-py (and the sqlite3 driver
alone on SQLite), with our overhead in percent; the round trips ``get_many`` takes on Redis; and µs per
call of every primitive on SQLite and on each ``--sql`` database (PostgreSQL, MariaDB).
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable

import redis

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
    """put/get through SQLKeyValueStore vs the sqlite3 driver alone (same settings: WAL,
    ``synchronous=NORMAL``, autocommit; one statement per call on a similar table): the floor."""
    with tempfile.TemporaryDirectory() as tmp:
        store = open_kv_store(f"sqlite:///{tmp}/kv.db", "bench")
        db = sqlite3.connect(f"{tmp}/raw.db", isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
            db.execute(f"PRAGMA {pragma}")
        db.execute("CREATE TABLE kv (s TEXT, k BLOB, v BLOB NOT NULL, expires REAL, PRIMARY KEY (s, k))")
        value = b"x" * 100
        put_sql = (
            "INSERT INTO kv (s, k, v, expires) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (s, k) DO UPDATE SET v = excluded.v, expires = excluded.expires"
        )
        get_sql = "SELECT v FROM kv WHERE s = ? AND k = ? AND (expires IS NULL OR expires > ?)"

        def raw_put(i: int) -> None:
            db.execute(put_sql, ("bench", f"k{i}".encode(), value, None))

        def raw_get(i: int) -> None:
            db.execute(get_sql, ("bench", f"k{i}".encode(), time.time())).fetchone()

        report("sqlite put", rate(n, lambda i: store.put(f"k{i}", value)), rate(n, raw_put))
        report("sqlite get", rate(n, lambda i: store.get(f"k{i}")), rate(n, raw_get))
        store.close()
        db.close()


def bench_primitives(url: str, n: int) -> None:
    """µs per call of each primitive (the stream WorkManager's state is put / compare_and_set /
    add_and_get / get), on existing keys."""
    store = open_kv_store(url, "bench" + uuid.uuid4().hex[:8])
    old, new = b"x" * 100, b"y" * 100
    ops: list[tuple[str, Callable[[int], object]]] = [
        ("put", lambda i: store.put(f"k{i}", old)),
        ("get", lambda i: store.get(f"k{i}")),
        ("compare_and_set", lambda i: store.compare_and_set(f"k{i}", old, new)),
        ("cas if absent", lambda i: store.compare_and_set(f"a{i}", None, new)),
        ("add_and_get", lambda i: store.add_and_get(f"c{i % 10}", 1)),
        ("set_ttl", lambda i: store.set_ttl(f"k{i}", 60)),
        ("get_many(10)", lambda i: store.get_many([f"k{j}" for j in range(i, i + 10)])),
        ("delete", lambda i: store.put(f"k{i}", None)),
    ]
    shown = url.partition("://")[0]
    for what, op in ops:
        print(f"{shown:<10} {what:<16} {1e6 / rate(n, op):8.1f} µs")
    for key in sorted(store.keys()):
        store.put(key, None)
    store.close()


def main() -> None:
    """Run the benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--sql", action="append", default=[], help="another SQL database URL")
    args = parser.parse_args()
    bench_redis(args.redis, args.n)
    bench_sqlite(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        for url in [f"sqlite:///{tmp}/kv.db", *args.sql]:
            bench_primitives(url, args.n if url.startswith("sqlite") else max(1, args.n // 5))


if __name__ == "__main__":
    main()
