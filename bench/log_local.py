"""Benchmark of the local (memory-mapped file) log against raw Python loops, in one run.

    .venv/bin/python bench/log_local.py [--records 1000000] [--size 100] [--repeats 3]

Records of ``--size`` bytes on ``--partitions`` partitions (default 4), medians of ``--repeats``.
Every measured side runs in its own subprocess, so its peak RSS (``ru_maxrss``) is its own:

- ``raw buffered append``: ``[u32 length][payload]`` written record by record to a plain
  buffered file (``open(..., "wb")``); ``+crc32`` adds a zlib crc32 per record to the prefix.
- ``raw buffered read``: the same file read record by record through a buffered reader;
  ``raw mmap read``: read through ``mmap`` (``unpack_from`` + slice per record).
- ``local append_many``: one appender, ``append_many`` in batches of ``--batch`` over the
  partitions; ``local read_batch``: one tailer over every partition, ``read_batch(--batch)``.
- ``sqlite3 WAL`` (peer): an autoincrement table written with ``executemany`` per batch and read
  back by ``rowid`` ranges (synchronous=NORMAL), the usual Python persistent queue.
- ``latency``: a child process appends timestamped records one by one at ``--latency-rate``
  per second; another process tails them: p50 and p99 of append-to-read (CLOCK_MONOTONIC is
  shared by the processes of a machine).

Targets (issue 2): append >= 0.5x raw buffered+crc32 append, batch read >= 0.5x raw mmap read,
cross-process latency p50 < 1 ms, peak RSS < 200 MB.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import resource
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from typing import Any

from conveyor.log import Name, open_log_manager

LOG = Name.of("bench", "local")
POOL = 1024  # distinct payloads, cycled: a million distinct bytes objects would dominate RSS
LENGTH = struct.Struct("<I")
LENGTH_CRC = struct.Struct("<II")
STAMP = struct.Struct("<q")


def _payloads(size: int) -> list[bytes]:
    return [os.urandom(size) for _ in range(POOL)]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# --- the measured sides (each runs in a worker process) -------------------------------------------


def raw_append(path: str, records: int, size: int, crc: bool) -> int:
    """Length-prefixed records (with a crc32 if ``crc``) written one by one to a buffered file."""
    payloads = _payloads(size)
    with open(path, "wb") as file:
        write = file.write
        if crc:
            pack2 = LENGTH_CRC.pack
            crc32 = zlib.crc32
            for i in range(records):
                payload = payloads[i % POOL]
                write(pack2(len(payload), crc32(payload)))
                write(payload)
        else:
            pack = LENGTH.pack
            for i in range(records):
                payload = payloads[i % POOL]
                write(pack(len(payload)))
                write(payload)
    return records


def raw_buffered_read(path: str) -> int:
    """Records of a ``raw_append`` file (no crc) read one by one through a buffered reader."""
    count = 0
    unpack = LENGTH.unpack
    with open(path, "rb", buffering=1 << 16) as file:
        read = file.read
        while head := read(4):
            (length,) = unpack(head)
            read(length)
            count += 1
    return count


def raw_mmap_read(path: str, crc: bool) -> int:
    """Records of a ``raw_append`` file read through mmap (with the crc checked if ``crc``)."""
    count = 0
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        size = len(buf)
        pos = 0
        if crc:
            unpack2 = LENGTH_CRC.unpack_from
            crc32 = zlib.crc32
            while pos < size:
                length, stored = unpack2(buf, pos)
                data = buf[pos + 8 : pos + 8 + length]
                if crc32(data) != stored:
                    raise ValueError(f"bad crc at {pos}")
                pos += 8 + length
                count += 1
        else:
            unpack = LENGTH.unpack_from
            while pos < size:
                (length,) = unpack(buf, pos)
                buf[pos + 4 : pos + 4 + length]
                pos += 4 + length
                count += 1
    return count


def local_append(root: str, records: int, size: int, partitions: int, batch: int) -> int:
    """One appender, ``append_many`` in batches, records spread over the partitions."""
    payloads = _payloads(size)
    with open_log_manager(f"local://{root}", default_codec="bytes") as manager:
        manager.create_if_not_exists(LOG, partitions)
        appender = manager.appender(LOG)
        items = [(i % partitions, payloads[i % POOL]) for i in range(batch)]
        done = 0
        while done < records:
            chunk = items if records - done >= batch else items[: records - done]
            appender.append_many(chunk)
            done += len(chunk)
    return done


def local_read(root: str, records: int, batch: int) -> int:
    """One tailer over every partition, ``read_batch`` until ``records`` are read."""
    with open_log_manager(f"local://{root}", default_codec="bytes") as manager:
        tailer = manager.create_tailer("bench", LOG)
        count = 0
        read_batch = tailer.read_batch
        while count < records:
            got = read_batch(batch, timeout=1.0)
            if not got:
                raise RuntimeError(f"read {count} records of {records}")
            count += len(got)
        tailer.close()
    return count


def sqlite_append(path: str, records: int, size: int, batch: int) -> int:
    """The peer: ``executemany`` of a batch per transaction into an autoincrement table."""
    payloads = _payloads(size)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("CREATE TABLE q (id INTEGER PRIMARY KEY AUTOINCREMENT, data BLOB)")
        rows = [(payloads[i % POOL],) for i in range(batch)]
        done = 0
        while done < records:
            chunk = rows if records - done >= batch else rows[: records - done]
            connection.execute("BEGIN")
            connection.executemany("INSERT INTO q (data) VALUES (?)", chunk)
            connection.execute("COMMIT")
            done += len(chunk)
    finally:
        connection.close()
    return done


def sqlite_read(path: str, batch: int) -> int:
    """The peer: rows read back by ``rowid`` ranges."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        last = count = 0
        while True:
            rows = connection.execute(
                "SELECT id, data FROM q WHERE id > ? ORDER BY id LIMIT ?", (last, batch)
            ).fetchall()
            if not rows:
                return count
            count += len(rows)
            last = rows[-1][0]
    finally:
        connection.close()


def latency_append(root: str, records: int, size: int, rate: float) -> int:
    """Append records stamped with CLOCK_MONOTONIC one by one, at ``rate`` per second."""
    padding = b"x" * (size - STAMP.size)
    with open_log_manager(f"local://{root}", default_codec="bytes") as manager:
        appender = manager.appender(LOG)
        interval = 1.0 / rate
        started = time.monotonic()
        for i in range(records):
            pause = started + i * interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            appender.append(0, STAMP.pack(time.monotonic_ns()) + padding)
    return records


def latency_tail(root: str, records: int, size: int, rate: float) -> dict[str, float]:
    """Tail the records a child appends (see ``latency_append``); p50 and p99 in ms."""
    with open_log_manager(f"local://{root}", default_codec="bytes") as manager:
        manager.create_if_not_exists(LOG, 1)
        tailer = manager.create_tailer("latency", LOG)
        child = subprocess.Popen(
            [sys.executable, __file__, "--worker", "latency-append", root, str(records), str(size), str(rate)]
        )
        delays: list[float] = []
        try:
            while len(delays) < records:
                record = tailer.read(timeout=10.0)
                now = time.monotonic_ns()
                if record is None:
                    raise RuntimeError(f"latency: no record after {len(delays)}")
                (stamp,) = STAMP.unpack_from(record.message)
                delays.append((now - stamp) / 1e6)
        finally:
            if child.wait(60) != 0:
                raise RuntimeError(f"latency appender exited with {child.returncode}")
            tailer.close()
    delays.sort()
    return {"p50": delays[len(delays) // 2], "p99": delays[int(len(delays) * 0.99)]}


def _worker(kind: str, args: list[str]) -> None:
    """Run one measured side; print a JSON line: records/s (or latency) and peak RSS in MB."""
    actions: dict[str, Callable[[], int]] = {
        "raw-append": lambda: raw_append(args[0], int(args[1]), int(args[2]), crc=False),
        "raw-append-crc": lambda: raw_append(args[0], int(args[1]), int(args[2]), crc=True),
        "raw-read": lambda: raw_buffered_read(args[0]),
        "raw-mmap": lambda: raw_mmap_read(args[0], crc=False),
        "raw-mmap-crc": lambda: raw_mmap_read(args[0], crc=True),
        "local-append": lambda: local_append(args[0], int(args[1]), int(args[2]), int(args[3]), int(args[4])),
        "local-read": lambda: local_read(args[0], int(args[1]), int(args[2])),
        "sqlite-append": lambda: sqlite_append(args[0], int(args[1]), int(args[2]), int(args[3])),
        "sqlite-read": lambda: sqlite_read(args[0], int(args[1])),
        "latency-append": lambda: latency_append(args[0], int(args[1]), int(args[2]), float(args[3])),
    }
    result: dict[str, Any]
    if kind == "latency":
        result = latency_tail(args[0], int(args[1]), int(args[2]), float(args[3]))
    else:
        started = time.perf_counter()
        count = actions[kind]()
        result = {"rate": count / (time.perf_counter() - started)}
    result["rss"] = _rss_mb()
    print(json.dumps(result), flush=True)


def _run(kind: str, *args: object) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", kind, *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# --- the run and its table -----------------------------------------------------------------------


def _one_run(options: argparse.Namespace) -> dict[str, dict[str, float]]:
    n, size, batch = options.records, options.size, options.batch
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-log-") as directory:
        plain = os.path.join(directory, "raw.bin")
        with_crc = os.path.join(directory, "raw-crc.bin")
        root = os.path.join(directory, "local")
        results["raw buffered append"] = _run("raw-append", plain, n, size)
        results["raw buffered append+crc32"] = _run("raw-append-crc", with_crc, n, size)
        results["local append_many"] = _run("local-append", root, n, size, options.partitions, batch)
        if not options.no_sqlite:
            results["sqlite3 WAL append (peer)"] = _run(
                "sqlite-append", os.path.join(directory, "q.db"), n, size, batch
            )
        results["raw buffered read"] = _run("raw-read", plain)
        results["raw mmap read"] = _run("raw-mmap", plain)
        results["raw mmap read+crc32"] = _run("raw-mmap-crc", with_crc)
        results["local read_batch"] = _run("local-read", root, n, batch)
        if not options.no_sqlite:
            results["sqlite3 WAL read (peer)"] = _run("sqlite-read", os.path.join(directory, "q.db"), batch)
        results["latency"] = _run(
            "latency", os.path.join(directory, "latency"), options.latency_records, size, options.latency_rate
        )
    return results


def _print_table(options: argparse.Namespace, runs: list[dict[str, dict[str, float]]]) -> None:
    def median(row: str, field: str) -> float:
        return statistics.median(run[row][field] for run in runs)

    refs = {
        "local append_many": ("raw buffered append+crc32", 0.5),
        "sqlite3 WAL append (peer)": ("raw buffered append+crc32", None),
        "local read_batch": ("raw mmap read", 0.5),
        "sqlite3 WAL read (peer)": ("raw mmap read", None),
    }
    print(
        f"{options.records:,} records of {options.size} bytes, {options.partitions} partitions "
        f"(local), batches of {options.batch:,}, median of {len(runs)} runs, each side in its own process\n"
    )
    head = ("path", "records/s", "ours/raw", "target", "met", "peak RSS")
    print("| {:<27} | {:>11} | {:>8} | {:>7} | {:>3} | {:>8} |".format(*head))
    print(f"|{'-' * 29}|{'-' * 12}:|{'-' * 9}:|{'-' * 8}:|{'-' * 4}:|{'-' * 9}:|")
    rss_ok = True
    for row in runs[0]:
        if row == "latency":
            continue
        rate = median(row, "rate")
        rss = median(row, "rss")
        ratio = target = met = ""
        if row in refs:
            ref, wanted = refs[row]
            value = rate / median(ref, "rate")
            ratio = f"{value:.2f}x"
            if wanted is not None:
                target, met = f">={wanted}x", "yes" if value >= wanted else "NO"
        if row.startswith("local"):
            rss_ok = rss_ok and rss < 200
        print(f"| {row:<27} | {rate:>11,.0f} | {ratio:>8} | {target:>7} | {met:>3} | {rss:>5.0f} MB |")
    p50, p99 = median("latency", "p50"), median("latency", "p99")
    print(
        f"| {'cross-process latency p50':<27} | {p50:>8.3f} ms | {'':>8} | {'<1 ms':>7} | "
        f"{'yes' if p50 < 1 else 'NO':>3} | {median('latency', 'rss'):>5.0f} MB |"
    )
    print(f"| {'cross-process latency p99':<27} | {p99:>8.3f} ms | {'':>8} | {'':>7} | {'':>3} | {'':>8} |")
    local_rss = max(median(row, "rss") for row in ("local append_many", "local read_batch"))
    print(
        f"\npeak RSS of the local log sides: {local_rss:.0f} MB (target < 200 MB: "
        f"{'yes' if rss_ok else 'NO'}); latency: {options.latency_records:,} records at "
        f"{options.latency_rate:,.0f}/s, appended in a child process, tailed in another"
    )


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        _worker(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-records", type=int, default=2000)
    parser.add_argument("--latency-rate", type=float, default=1000.0, help="records per second")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite peer")
    options = parser.parse_args()
    if options.size < STAMP.size:
        parser.error(f"--size must be at least {STAMP.size}")
    runs = [_one_run(options) for _ in range(options.repeats)]
    _print_table(options, runs)


if __name__ == "__main__":
    main()
