"""One behaviour, every provider: two nodes (two providers with different node ids) on one backend,
run on ``local://``, Redis, a memory log, a local log and Kafka."""

from __future__ import annotations

import logging
import threading

import pytest

from conveyor.pubsub import ClusterCache

from .conftest import WITHOUT_KAFKA, Inbox, OpenNode, wait_for


def test_message_reaches_the_other_node_and_not_the_sender(open_node: OpenNode) -> None:
    a, b = open_node("node-a"), open_node("node-b")
    inbox_a, inbox_b = Inbox(), Inbox()
    a.subscribe("greetings", inbox_a)
    b.subscribe("greetings", inbox_b)

    a.publish("greetings", b"hello from a")
    b.publish("greetings", b"hello from b")

    assert wait_for(lambda: inbox_b.has(b"hello from a") and inbox_a.has(b"hello from b"))
    # Each node got the other's message; its own ones, published before, would have come first.
    assert inbox_a.items == [("greetings", b"hello from b")]
    assert inbox_b.items == [("greetings", b"hello from a")]
    assert a.stats().published == 1
    assert b.stats().delivered == 1


def test_include_own_delivers_the_node_its_own_messages(open_node: OpenNode) -> None:
    a, b = open_node("node-a"), open_node("node-b")
    own, others_only, remote = Inbox(), Inbox(), Inbox()
    a.subscribe("t", own, include_own=True)
    a.subscribe("t", others_only)
    b.subscribe("t", remote)

    a.publish("t", b"mine")
    b.publish("t", b"theirs")

    assert wait_for(lambda: own.has(b"mine") and own.has(b"theirs") and remote.has(b"mine"))
    assert wait_for(lambda: others_only.has(b"theirs"))
    assert not others_only.has(b"mine")
    assert not remote.has(b"theirs")


def test_messages_arrive_in_publish_order_per_topic(open_node: OpenNode) -> None:
    a, b = open_node("node-a"), open_node("node-b")
    inbox = Inbox()
    b.subscribe("ordered", inbox)
    sent = [f"m{i:04d}".encode() for i in range(300)]
    for data in sent:
        a.publish("ordered", data)

    assert wait_for(lambda: len(inbox.items) >= len(sent))
    assert inbox.data() == sent


def test_topics_are_kept_apart(open_node: OpenNode) -> None:
    a, b = open_node("node-a"), open_node("node-b")
    red, blue, both = Inbox(), Inbox(), Inbox()
    b.subscribe("red", red)
    b.subscribe("blue", blue)
    b.subscribe("red", both)
    b.subscribe("blue", both)

    a.publish("red", b"r1")
    a.publish("green", b"nobody listens")
    a.publish("blue", b"b1")
    a.publish("red", b"r2")

    assert wait_for(lambda: len(both.items) == 3)
    assert red.items == [("red", b"r1"), ("red", b"r2")]
    assert blue.items == [("blue", b"b1")]
    assert both.items == [("red", b"r1"), ("blue", b"b1"), ("red", b"r2")]
    assert sorted(b.topics()) == ["blue", "red"]


def test_unsubscribe_stops_delivery(open_node: OpenNode) -> None:
    a, b = open_node("node-a"), open_node("node-b")
    by_subscription, by_callback, by_topic, marker = Inbox(), Inbox(), Inbox(), Inbox()
    subscription = b.subscribe("news", by_subscription)
    b.subscribe("news", by_callback)
    b.subscribe("sport", by_topic)
    b.subscribe("marker", marker)
    a.publish("news", b"before")
    a.publish("sport", b"before")
    assert wait_for(lambda: by_subscription.has(b"before") and by_callback.has(b"before"))
    assert wait_for(lambda: by_topic.has(b"before"))

    assert subscription.unsubscribe() is True
    assert subscription.unsubscribe() is False
    assert not subscription.active
    assert b.unsubscribe("news", by_callback) is True
    assert b.unsubscribe("sport") is True
    assert b.unsubscribe("sport") is False
    a.publish("news", b"after")
    a.publish("sport", b"after")
    a.publish("marker", b"sent last")

    # One sender's messages arrive in order across topics, so the marker comes after the others.
    assert wait_for(lambda: marker.has(b"sent last"))
    assert by_subscription.data() == [b"before"]
    assert by_callback.data() == [b"before"]
    assert by_topic.data() == [b"before"]
    assert b.topics() == ["marker"]


@pytest.mark.parametrize("backend", WITHOUT_KAFKA)
def test_subscription_as_context_manager(open_node: OpenNode) -> None:
    a, b = open_node("node-a"), open_node("node-b")
    inbox, marker = Inbox(), Inbox()
    b.subscribe("marker", marker)
    with b.subscribe("scoped", inbox):
        a.publish("scoped", b"inside")
        assert wait_for(lambda: inbox.has(b"inside"))
    a.publish("scoped", b"outside")
    a.publish("marker", b"done")
    assert wait_for(lambda: marker.has(b"done"))
    assert inbox.data() == [b"inside"]


def test_a_raising_callback_is_logged_and_delivery_goes_on(
    open_node: OpenNode, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = open_node("node-a"), open_node("node-b")
    good = Inbox()

    def bad(topic: str, data: bytes) -> None:
        raise RuntimeError(f"boom on {data!r}")

    b.subscribe("t", bad)
    b.subscribe("t", good)
    with caplog.at_level(logging.ERROR, logger="conveyor.pubsub"):
        a.publish("t", b"one")
        a.publish("t", b"two")
        assert wait_for(lambda: good.data() == [b"one", b"two"])
    assert b.stats().callback_errors == 2
    assert b.stats().delivered == 2
    failures = [r for r in caplog.records if "failed on topic 't'" in r.getMessage()]
    assert len(failures) == 2
    assert failures[0].exc_info is not None
    assert "boom on b'one'" in str(failures[0].exc_info[1])


@pytest.mark.parametrize("backend", WITHOUT_KAFKA)
def test_large_and_empty_payloads(open_node: OpenNode) -> None:
    a, b = open_node("node-a"), open_node("node-b")
    inbox = Inbox()
    b.subscribe("blob", inbox)
    big = bytes(range(256)) * 2048  # 512 KiB, every byte value
    a.publish("blob", b"")
    a.publish("blob", big)
    a.publish("blob", bytearray(b"from a bytearray"))
    assert wait_for(lambda: len(inbox.items) == 3)
    assert inbox.data() == [b"", big, b"from a bytearray"]


@pytest.mark.parametrize("backend", WITHOUT_KAFKA)
def test_unicode_topics(open_node: OpenNode) -> None:
    a, b = open_node("node-a"), open_node("node-b")
    inbox = Inbox()
    b.subscribe("caché/ïnvalidations ✓", inbox)
    a.publish("caché/ïnvalidations ✓", b"x")
    assert wait_for(lambda: inbox.items == [("caché/ïnvalidations ✓", b"x")])


@pytest.mark.parametrize("backend", WITHOUT_KAFKA)
def test_callbacks_run_on_one_dispatcher_thread_not_the_publisher(open_node: OpenNode) -> None:
    a, b = open_node("node-a"), open_node("node-b")
    threads: list[str] = []
    b.subscribe("t", lambda topic, data: threads.append(threading.current_thread().name))
    b.subscribe("u", lambda topic, data: threads.append(threading.current_thread().name))
    a.publish("t", b"1")
    a.publish("u", b"2")
    assert wait_for(lambda: len(threads) == 2)
    assert len(set(threads)) == 1
    assert threads[0] != threading.current_thread().name
    assert "node-b" in threads[0]


# --- ClusterCache ----------------------------------------------------------------------------


def test_cluster_cache_invalidation_reaches_the_other_node(open_node: OpenNode) -> None:
    a, b = open_node("node-a"), open_node("node-b")
    cache_a: ClusterCache[str] = ClusterCache(a, "docs")
    cache_b: ClusterCache[str] = ClusterCache(b, "docs")
    other_b: ClusterCache[str] = ClusterCache(b, "users")
    for cache in (cache_a, cache_b, other_b):
        cache.put("doc1", "v1")
        cache.put("doc2", "v1")

    cache_a.invalidate("doc1")

    assert cache_a.get("doc1") is None  # at once on the node that invalidates
    assert wait_for(lambda: "doc1" not in cache_b)
    assert cache_b.get("doc2") == "v1"
    assert other_b.get("doc1") == "v1"  # a cache of another name is untouched
    assert cache_b.stats().remote_invalidations == 1
    assert cache_a.stats().remote_invalidations == 0  # its own message did not come back


@pytest.mark.parametrize("backend", WITHOUT_KAFKA)
def test_cluster_cache_invalidate_all_and_update(open_node: OpenNode) -> None:
    a, b = open_node("node-a"), open_node("node-b")
    cache_a: ClusterCache[int] = ClusterCache(a, "counts")
    cache_b: ClusterCache[int] = ClusterCache(b, "counts")
    for i in range(10):
        cache_b.put(f"k{i}", i)

    cache_a.invalidate_all()
    assert wait_for(lambda: len(cache_b) == 0)

    cache_b.put("k1", 1)
    cache_a.update("k1", 100)
    assert cache_a.get("k1") == 100
    assert wait_for(lambda: "k1" not in cache_b)
    assert cache_b.get_or_load("k1", lambda key: 100) == 100
    assert cache_b.get("k1") == 100
