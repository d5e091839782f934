"""A pub/sub node in its own process, driven by ``test_two_processes.py``.

``python -m tests.pubsub.node_process URL`` opens node ``child``, caches ``doc1`` in a
``ClusterCache``, prints ``READY``, publishes ``hello`` on ``greetings`` (which it also subscribes
to, without ``include_own``), and records ``orders``. On ``control``/``done`` it prints one JSON
line with what it saw and exits.
"""

from __future__ import annotations

import json
import sys
import threading

from conveyor.pubsub import ClusterCache, open_pubsub


def main(url: str) -> int:
    done = threading.Event()
    orders: list[str] = []
    greetings: list[str] = []
    with open_pubsub(url, node_id="child") as node:
        cache: ClusterCache[str] = ClusterCache(node, "docs")
        cache.put("doc1", "v1")
        cache.put("doc2", "v1")
        node.subscribe("orders", lambda topic, data: orders.append(data.decode()))
        node.subscribe("greetings", lambda topic, data: greetings.append(data.decode()))
        node.subscribe("control", lambda topic, data: done.set())
        print("READY", flush=True)
        node.publish("greetings", b"hello")
        finished = done.wait(60)
        report = {
            "finished": finished,
            "orders": orders,
            "greetings": greetings,
            "doc1_cached": "doc1" in cache,
            "doc2_cached": "doc2" in cache,
        }
        print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
