"""The recent past of the dashboard's charts, kept by the server: a background thread samples the
consumer groups' positions and lags and the queues' completed counts every ``interval_s`` seconds
into a ring buffer covering ``window_s`` seconds, so that a page opened now draws the last minutes
at once (``GET /api/v1/history``). Memory is bounded: ``window_s / interval_s`` samples of at most
:data:`MAX_SERIES` consumer groups and queues each. The thread runs while the app does (started and
stopped by its lifespan).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request

from conveyor.web.deps import NodeDep

if TYPE_CHECKING:
    from conveyor.runtime.node import Conveyor

__all__ = ["MAX_SERIES", "SAMPLE_INTERVAL_S", "WINDOW_S", "History", "router"]

logger = logging.getLogger("conveyor.web")
router = APIRouter(prefix="/api/v1", tags=["dashboard"])

SAMPLE_INTERVAL_S = 5.0
"""Seconds between two samples."""
WINDOW_S = 15 * 60.0
"""Seconds of history kept."""
MAX_SERIES = 200
"""Consumer groups (and queues) kept per sample, the largest lags first."""


class History:
    """A ring buffer of samples of ``node`` taken by a background thread (see module doc)."""

    def __init__(self, node: Conveyor, interval_s: float = SAMPLE_INTERVAL_S, window_s: float = WINDOW_S):
        if interval_s <= 0 or window_s < interval_s:
            raise ValueError(f"history: need 0 < interval_s <= window_s, got {interval_s} and {window_s}")
        self.node = node
        self.interval_s = interval_s
        self.window_s = window_s
        self._samples: deque[dict[str, Any]] = deque(maxlen=max(1, round(window_s / interval_s)))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None

    @property
    def capacity(self) -> int:
        """The most samples kept."""
        return self._samples.maxlen or 0

    def sample(self) -> dict[str, Any]:
        """Take one sample now and keep it: ``{"time", "consumers": [{"stream", "consumer", "pos",
        "lag"}], "queues": [{"id", "completed"}]}``."""
        from conveyor.web.streams import consumer_infos
        from conveyor.web.work import queue_infos

        now = time.time()
        consumers = sorted(consumer_infos(self.node, with_latency=False), key=lambda c: -c.lag)
        queues = queue_infos(self.node)
        taken = {
            "time": now,
            "consumers": [
                {"stream": c.stream, "consumer": c.consumer, "pos": c.pos, "lag": c.lag}
                for c in consumers[:MAX_SERIES]
            ],
            "queues": [{"id": q.id, "completed": q.completed} for q in queues[:MAX_SERIES]],
        }
        with self._lock:
            self._samples.append(taken)
        return taken

    def samples(self) -> list[dict[str, Any]]:
        """The samples kept, oldest first."""
        with self._lock:
            return list(self._samples)

    def start(self) -> None:
        """Sample now and every ``interval_s`` seconds in a daemon thread, until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="conveyor-web-history", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sampling (waits up to ``timeout`` seconds for a sample under way)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            try:
                self.sample()
                self._last_error = None
            except Exception as exc:  # a backend down: keep the past, say it once, try again later
                error = f"{type(exc).__name__}: {exc}"
                if error != self._last_error:
                    logger.warning("dashboard history: cannot take a sample: %s", error)
                self._last_error = error
            if self._stop.wait(self.interval_s):
                return


@router.get("/history", summary="The recent past of the dashboard's charts, sampled by the server")
def history(request: Request, node: NodeDep) -> dict[str, Any]:
    """Samples of every consumer group's position and lag and every queue's completed count,
    oldest first, one every ``interval_s`` seconds over the last ``window_s`` seconds."""
    kept: History = request.app.state.history
    return {
        "node_id": node.node_id,
        "interval_s": kept.interval_s,
        "window_s": kept.window_s,
        "samples": kept.samples(),
    }
