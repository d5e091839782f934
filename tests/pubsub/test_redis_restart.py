"""A Redis restart under two subscribed nodes: publishing fails clearly while it is down, the
listener says so in the log, and delivery resumes by itself once Redis is back."""

from __future__ import annotations

import logging
import shutil

import pytest

from conveyor.errors import BackendUnavailableError
from conveyor.pubsub import open_pubsub
from tests.services import free_port, started

from .conftest import Inbox, wait_for


@pytest.mark.slow
@pytest.mark.redis
def test_delivery_resumes_after_a_redis_restart(caplog: pytest.LogCaptureFixture) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server binary to run a private Redis")
    port = free_port()
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    url = f"redis://127.0.0.1:{port}/0"
    caplog.set_level(logging.WARNING, logger="conveyor.pubsub")
    with started(cmd, port, "redis"):
        a = open_pubsub(url, node_id="a")
        b = open_pubsub(url, node_id="b")
    try:
        inbox = Inbox()
        b.subscribe("t", inbox)
        # The server is gone now: publishing says so, naming the server.
        with pytest.raises(BackendUnavailableError, match=f"127.0.0.1:{port}"):
            a.publish("t", b"while down")
        assert wait_for(lambda: "lost its Redis subscription" in caplog.text)

        with started(cmd, port, "redis"):

            def delivered() -> bool:
                try:
                    a.publish("t", b"after restart")
                except BackendUnavailableError:
                    return False
                return wait_for(lambda: inbox.has(b"after restart"), timeout=0.5)

            assert wait_for(delivered, timeout=30)
            assert "subscribed to Redis again" in caplog.text
            assert not inbox.has(b"while down")
            a.close()
            b.close()
    finally:
        a.close()
        b.close()
