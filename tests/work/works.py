"""Work classes used by the WorkManager tests (importable by node subprocesses too)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import defaultdict

from conveyor.work import Work

# In-process recorders, keyed by a token unique to each test.
RUNS: dict[str, list[object]] = defaultdict(list)
_lock = threading.Lock()
_active: dict[str, int] = defaultdict(int)
MAX_ACTIVE: dict[str, int] = defaultdict(int)


def record(token: str, value: object) -> None:
    with _lock:
        RUNS[token].append(value)


def append_line(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


class Note(Work):
    """Records its value (and the thread that ran it)."""

    category = "notes"
    token: str
    value: int = 0

    def work(self) -> None:
        record(self.token, (self.value, threading.current_thread().name))


class Slow(Work):
    """Sleeps, counting how many run at once."""

    category = "slow"
    token: str
    seconds: float = 0.05

    def work(self) -> None:
        with _lock:
            _active[self.token] += 1
            MAX_ACTIVE[self.token] = max(MAX_ACTIVE[self.token], _active[self.token])
        try:
            time.sleep(self.seconds)
        finally:
            with _lock:
                _active[self.token] -= 1
        record(self.token, self.id)


class Flaky(Work):
    """Fails its first ``failures`` attempts (counted per token)."""

    retry_count = 2
    token: str
    failures: int = 100

    def work(self) -> None:
        record(self.token, "attempt")
        if len(RUNS[self.token]) <= self.failures:
            raise RuntimeError(f"flaky failure {len(RUNS[self.token])}")


class Coalesced(Work):
    """Coalescing: only the last scheduled state should run."""

    coalescing = True
    token: str
    value: int = 0

    def work(self) -> None:
        record(self.token, self.value)


class Copies(Work):
    """Not idempotent: every copy scheduled runs."""

    idempotent = False
    token: str

    def work(self) -> None:
        record(self.token, self.id)


class AsyncNote(Work):
    """An ``async def`` Work."""

    token: str

    async def work(self) -> None:
        await asyncio.sleep(0.01)
        record(self.token, "async")


class Steps(Work):
    """Does ``total`` steps of ``step_s`` seconds, logging each to a file; suspends when asked."""

    category = "steps"
    path: str
    total: int = 20
    step_s: float = 0.05
    done: int = 0

    def work(self) -> None:
        while self.done < self.total:
            if self.is_suspending():
                self.suspended()
                return
            time.sleep(self.step_s)
            self.done += 1
            append_line(self.path, f"{self.id} {self.done} {os.getpid()}")
            self.set_progress(self.done, self.total)


class Marked(Work):
    """Sleeps, then appends its id to a file (one line per completed run)."""

    category = "marked"
    path: str
    seconds: float = 1.0

    def work(self) -> None:
        time.sleep(self.seconds)
        append_line(self.path, f"{self.id} {os.getpid()}")


class Crash(Work):
    """Notes its run in a file, then kills its own process with SIGKILL (unless ``die`` is False:
    then it only notes its run): a poison Work, and a normal one to schedule behind it."""

    category = "crash"
    path: str
    die: bool = True

    def work(self) -> None:
        append_line(self.path, f"{self.id} {os.getpid()}")
        if self.die:
            os.kill(os.getpid(), signal.SIGKILL)
