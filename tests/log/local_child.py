"""A child process for the local log's multi-process tests: ``python local_child.py ROOT MODE ...``.

Modes:
- ``append WRITER COUNT``: append COUNT records ``WRITER:i`` keyed by i, one by one.
- ``flood SIZE``: append SIZE-byte records to partition 0 forever (to be killed).
- ``sequence RUN``: append :func:`sequence_record` ``(RUN, i)`` for i = 0, 1, ... one by one, over
  the partitions of the log in turn, printing ``appended i partition offset`` after each append
  that returned, forever (to be killed).
- ``consume GROUP [THREADS]``: subscribe GROUP (in THREADS threads) to the log, print
  ``offset partition:offset`` for each record read and committed, forever (to be killed); prints
  ``assigned N`` on each assignment.
"""

from __future__ import annotations

import sys
import threading
import time

from conveyor.errors import RebalanceError
from conveyor.log import LogManager, Name, open_log_manager

LOG = Name.of("procs", "log")


_print_lock = threading.Lock()


def say(line: str) -> None:
    """Print one whole line (threads share stdout)."""
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def sequence_record(run: int, seq: int) -> bytes:
    """Record ``seq`` of run ``run``: a header naming both and its size, then a filler byte made
    from ``seq``; every 64th record is 1 MB, so that a kill lands in the middle of a write too."""
    size = (1 << 20) if seq % 64 == 63 else 100 + (seq * 37) % 900
    head = f"{run}:{seq}:{size}:".encode()
    return head + bytes([seq % 251]) * (size - len(head))


def parse_sequence_record(data: bytes) -> tuple[int, int]:
    """(run, seq) of a record made by :func:`sequence_record`; ValueError if it is not one."""
    run, seq, size, _ = data.split(b":", 3)
    if data != sequence_record(int(run), int(seq)) or len(data) != int(size):
        raise ValueError(f"not a sequence record: {data[:40]!r}... ({len(data)} bytes)")
    return int(run), int(seq)


def consume(manager: LogManager, group: str) -> None:
    """Read, commit and print forever (one subscriber)."""
    tailer = manager.subscribe(group, LOG)
    say(f"assigned {len(tailer.assignments())}")
    while True:
        try:
            record = tailer.read(timeout=0.1)
        except RebalanceError:
            say(f"assigned {len(tailer.assignments())}")
            continue
        if record is None:
            continue
        # "processing" is printing: done before the commit, so a kill in between re-delivers
        say(f"offset {record.offset.partition.partition}:{record.offset.offset}")
        tailer.commit(record.offset.partition)
        time.sleep(0.002)


def main(argv: list[str]) -> None:
    root, mode, *rest = argv
    with open_log_manager(f"local://{root}", default_codec="bytes") as manager:
        if mode == "append":
            writer, count = rest[0], int(rest[1])
            appender = manager.appender(LOG)
            for i in range(count):
                appender.append(str(i), f"{writer}:{i}".encode())
            return
        if mode == "flood":
            appender = manager.appender(LOG)
            payload = b"f" * int(rest[0])
            print("flooding", flush=True)
            while True:
                appender.append(0, payload)
        if mode == "sequence":
            run = int(rest[0])
            appender = manager.appender(LOG)
            partitions = appender.size()
            say("appending")
            seq = 0
            while True:
                offset = appender.append(seq % partitions, sequence_record(run, seq))
                say(f"appended {seq} {offset.partition.partition} {offset.offset}")
                seq += 1
        if mode == "consume":
            threads = [
                threading.Thread(target=consume, args=(manager, rest[0]), daemon=True)
                for _ in range(int(rest[1]) if len(rest) > 1 else 1)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
