"""Benchmark of the local (memory-mapped file) log against its peers, in one run.

    .venv/bin/python bench/log_local.py [--records 200000] [--size 100] [--repeats 3]

Rows (records of ``--size`` bytes, one partition, medians of ``--repeats`` runs):
- ``raw os.write``: the physical limit: the same framed bytes written to one file, in batches.
- ``sqlite3 WAL``: the usual Python "persistent queue": an autoincrement table, executemany in
  batches, read back by ``rowid`` ranges (synchronous=NORMAL).
- ``local append``: ``LogAppender.append`` one record at a time (a lock, a write per record).
- ``local append_many``: ``append_many`` in batches of 1,000.
- ``local read_batch``: a tailer reading everything in batches of 1,000.
- ``memory`` rows: the in-process backend, for scale.
Ratios are against the sqlite3 row of the same run.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable

from conveyor.log import Name, open_log_manager
from conveyor.log.local.segment import frame_many

LOG = Name.of("bench", "local")
BATCH = 1000


def _timed(action: Callable[[], int]) -> float:
    started = time.perf_counter()
    count = action()
    return count / (time.perf_counter() - started)


def raw_write(directory: str, payloads: list[bytes]) -> tuple[float, float]:
    path = os.path.join(directory, "raw.bin")

    def write() -> int:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            for start in range(0, len(payloads), BATCH):
                os.write(fd, frame_many(payloads[start : start + BATCH]))
        finally:
            os.close(fd)
        return len(payloads)

    def read() -> int:
        with open(path, "rb") as file:
            while file.read(1 << 20):
                pass
        return len(payloads)

    return _timed(write), _timed(read)


def sqlite_queue(directory: str, payloads: list[bytes]) -> tuple[float, float]:
    connection = sqlite3.connect(os.path.join(directory, "queue.db"), isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("CREATE TABLE q (id INTEGER PRIMARY KEY AUTOINCREMENT, data BLOB)")

    def write() -> int:
        for start in range(0, len(payloads), BATCH):
            connection.execute("BEGIN")
            connection.executemany(
                "INSERT INTO q (data) VALUES (?)", [(p,) for p in payloads[start : start + BATCH]]
            )
            connection.execute("COMMIT")
        return len(payloads)

    def read() -> int:
        last = 0
        count = 0
        while True:
            rows = connection.execute(
                "SELECT id, data FROM q WHERE id > ? ORDER BY id LIMIT ?", (last, BATCH)
            ).fetchall()
            if not rows:
                return count
            count += len(rows)
            last = rows[-1][0]

    try:
        return _timed(write), _timed(read)
    finally:
        connection.close()


def conveyor_log(url: str, payloads: list[bytes], one_by_one: bool) -> tuple[float, float]:
    with open_log_manager(url, default_codec="bytes") as manager:
        manager.create_if_not_exists(LOG, 1)
        appender = manager.appender(LOG)

        def write() -> int:
            if one_by_one:
                append = appender.append
                for payload in payloads:
                    append(0, payload)
            else:
                for start in range(0, len(payloads), BATCH):
                    appender.append_many([(0, p) for p in payloads[start : start + BATCH]])
            return len(payloads)

        def read() -> int:
            tailer = manager.create_tailer("bench", LOG)
            count = 0
            while batch := tailer.read_batch(BATCH, timeout=0.05):
                count += len(batch)
            tailer.close()
            return count

        return _timed(write), _timed(read)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    payloads = [os.urandom(args.size) for _ in range(args.records)]
    rows: dict[str, list[tuple[float, float]]] = {}
    for run in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="bench-log-") as directory:
            results = {
                "raw os.write (limit)": raw_write(directory, payloads),
                "sqlite3 WAL (peer)": sqlite_queue(directory, payloads),
                "local append": conveyor_log(f"local://{directory}/one", payloads[: args.records // 4], True),
                "local append_many": conveyor_log(f"local://{directory}/many", payloads, False),
                "memory append_many": conveyor_log(f"memory://bench{run}", payloads, False),
            }
        for name, figures in results.items():
            rows.setdefault(name, []).append(figures)
    peer_write = statistics.median(w for w, _ in rows["sqlite3 WAL (peer)"])
    peer_read = statistics.median(r for _, r in rows["sqlite3 WAL (peer)"])
    print(f"{args.records:,} records of {args.size} bytes, 1 partition, median of {args.repeats}\n")
    print(
        f"| {'system':<22} | {'write rec/s':>12} | {'vs sqlite':>9} | {'read rec/s':>12} | {'vs sqlite':>9} |"
    )
    print(f"|{'-' * 24}|{'-' * 14}:|{'-' * 10}:|{'-' * 14}:|{'-' * 10}:|")
    for name, figures in rows.items():
        write = statistics.median(w for w, _ in figures)
        read = statistics.median(r for _, r in figures)
        print(
            f"| {name:<22} | {write:>12,.0f} | {write / peer_write:>8.2f}x "
            f"| {read:>12,.0f} | {read / peer_read:>8.2f}x |"
        )


if __name__ == "__main__":
    main()
