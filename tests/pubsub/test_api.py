"""What does not depend on the wire: input checks, lifecycle, URLs, the cache on its own."""

from __future__ import annotations

import doctest
from collections.abc import Iterator
from typing import Any

import pytest

import conveyor.pubsub.cache
from conveyor.errors import (
    BackendUnavailableError,
    CodecError,
    ConfigurationError,
    PubSubClosedError,
    PubSubError,
    PubSubInputError,
)
from conveyor.pubsub import ClusterCache, PubSub, open_pubsub
from conveyor.pubsub.envelope import Envelope, decode_envelope, encode_envelope
from conveyor.pubsub.local import LocalPubSub
from conveyor.pubsub.log_pubsub import LogPubSub, group_for_node

from .conftest import Inbox, wait_for


@pytest.fixture
def node(unique: str) -> Iterator[PubSub]:
    with open_pubsub(f"local://{unique}", node_id="n1") as pubsub:
        yield pubsub


@pytest.mark.parametrize(
    ("topic", "data", "named"),
    [
        ("", b"x", "topic must not be empty"),
        (None, b"x", "topic must be a str, got NoneType"),
        ("a\x00b", b"x", "NUL"),
        ("t" * 1025, b"x", "topic too long: 1025 bytes"),
        ("t", "text", "must be bytes, got str"),
        ("t", 42, "must be bytes, got int"),
        ("t", None, "must be bytes, got NoneType"),
    ],
)
def test_bad_publish_input_is_named(node: PubSub, topic: Any, data: Any, named: str) -> None:
    with pytest.raises(PubSubInputError, match=named) as info:
        node.publish(topic, data)
    assert isinstance(info.value, PubSubError)
    assert isinstance(info.value, ValueError)


def test_bad_subscribe_input_is_named(node: PubSub) -> None:
    with pytest.raises(PubSubInputError, match="callback for topic 't' must be callable"):
        node.subscribe("t", "not a function")  # type: ignore[arg-type]
    with pytest.raises(PubSubInputError, match="topic must not be empty"):
        node.subscribe("", Inbox())
    with pytest.raises(PubSubInputError, match="include_own must be a bool"):
        node.subscribe("t", Inbox(), include_own="yes")  # type: ignore[arg-type]
    sub = node.subscribe("t", Inbox())
    with pytest.raises(PubSubInputError, match="takes no callback"):
        node.unsubscribe(sub, Inbox())


@pytest.mark.parametrize(
    ("node_id", "named"),
    [("", "must not be empty"), (7, "must be a str"), ("x" * 201, "too long"), ("a\nb", "control character")],
)
def test_bad_node_ids_are_named(node_id: Any, named: str) -> None:
    with pytest.raises(PubSubInputError, match=named):
        open_pubsub("local://", node_id=node_id)


def test_default_node_ids_are_unique() -> None:
    with open_pubsub("local://") as a, open_pubsub("local://") as b:
        assert a.node_id != b.node_id


def test_closed_provider_refuses_work_and_ends_subscriptions(unique: str) -> None:
    node = open_pubsub(f"local://{unique}", node_id="n1")
    sub = node.subscribe("t", Inbox())
    node.close()
    node.close()  # idempotent
    assert node.closed
    assert not sub.active
    with pytest.raises(PubSubClosedError, match="closed"):
        node.publish("t", b"x")
    with pytest.raises(PubSubClosedError, match="closed"):
        node.subscribe("t", Inbox())


def test_close_from_inside_a_callback_does_not_deadlock(unique: str) -> None:
    a = open_pubsub(f"local://{unique}", node_id="a")
    b = open_pubsub(f"local://{unique}", node_id="b")
    b.subscribe("stop", lambda topic, data: b.close())
    a.publish("stop", b"")
    assert wait_for(lambda: b.closed)
    a.close()


def test_local_buses_are_separate_by_name(unique: str) -> None:
    with (
        open_pubsub(f"local://{unique}-1", node_id="a") as a,
        open_pubsub(f"local://{unique}-2", node_id="b") as b,
        open_pubsub(f"local://{unique}-1", node_id="c") as c,
    ):
        inbox_b, inbox_c = Inbox(), Inbox()
        b.subscribe("t", inbox_b)
        c.subscribe("t", inbox_c)
        a.publish("t", b"x")  # local delivery is handed over before publish returns
        assert wait_for(lambda: inbox_c.has(b"x"))
        assert inbox_b.items == []


def test_undecodable_messages_are_counted_and_dropped(node: PubSub, caplog: pytest.LogCaptureFixture) -> None:
    node.subscribe("t", Inbox())
    node._receive_bytes(b"\xc1 not msgpack")
    assert node.stats().undecodable == 1
    assert "undecodable" in caplog.text


def test_envelope_round_trip_and_garbage() -> None:
    env = Envelope("node-1", "topic", b"\x00data")
    assert decode_envelope(encode_envelope(env)) == env
    with pytest.raises(CodecError, match="envelope"):
        decode_envelope(b"\x93\x01\x02\x03")


# --- URLs --------------------------------------------------------------------------------------


def test_urls_choose_the_provider(tmp_path: Any, unique: str) -> None:
    with open_pubsub("local://") as p:
        assert isinstance(p, LocalPubSub)
    with open_pubsub(f"memory://{unique}") as p:
        assert isinstance(p, LogPubSub)
        assert p.log_name.urn == "pubsub/pubsub"
    with open_pubsub(f"log+memory://{unique}", log_name="pubsub/other") as p:
        assert isinstance(p, LogPubSub)
        assert p.log_name.urn == "pubsub/other"


def test_unknown_scheme_and_bad_options_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="unknown pubsub backend scheme 'nope'"):
        open_pubsub("nope://x")
    with pytest.raises(ConfigurationError, match="takes no options"):
        open_pubsub("local://", flavour="x")


@pytest.mark.redis
def test_unreachable_redis_names_the_url() -> None:
    with pytest.raises(BackendUnavailableError, match=r"redis://:\*\*\*@127\.0\.0\.1:1/0"):
        open_pubsub("redis://:secret@127.0.0.1:1/0", socket_connect_timeout=0.5)


def test_group_names_are_valid_and_distinct() -> None:
    assert group_for_node("node-1").urn == "pubsub/pubSub-node-1"
    odd = [group_for_node("host.example.com:1"), group_for_node("host_example_com_1")]
    assert odd[0] != odd[1]
    assert group_for_node("é" * 200).urn.startswith("pubsub/pubSub-")


# --- ClusterCache alone ------------------------------------------------------------------------


def test_cache_bad_input_and_bounds(node: PubSub) -> None:
    with pytest.raises(PubSubInputError, match="without '/'"):
        ClusterCache(node, "a/b")
    with pytest.raises(PubSubInputError, match="max_size"):
        ClusterCache(node, "c", max_size=0)
    with ClusterCache[int](node, "lru", max_size=2) as cache:
        with pytest.raises(PubSubInputError, match="reserved"):
            cache.put("__ALL__", 1)
        with pytest.raises(PubSubInputError, match="non-empty str"):
            cache.get("")
        cache.put("a", 1)
        cache.put("b", 2)
        assert cache.get("a") == 1  # "b" is now the least recently used
        cache.put("c", 3)
        assert "b" not in cache
        assert (cache.get("a"), cache.get("c")) == (1, 3)
        stats = cache.stats()
        assert (stats.hits, stats.misses, stats.size) == (3, 0, 2)
    assert node.topics() == []  # closing the cache unsubscribed it


def test_get_or_load_does_not_cache_a_value_loaded_across_an_invalidation(node: PubSub) -> None:
    cache: ClusterCache[str] = ClusterCache(node, "racy")

    def loader(key: str) -> str:
        cache._on_message("cacheinval", b"racy/" + key.encode())  # another node invalidates meanwhile
        return "stale"

    assert cache.get_or_load("k", loader) == "stale"
    assert "k" not in cache
    assert cache.get_or_load("k", lambda key: "fresh") == "fresh"
    assert cache.get("k") == "fresh"
    cache.close()


def test_cache_docstring_example_runs() -> None:
    failures, tried = doctest.testmod(conveyor.pubsub.cache, optionflags=doctest.ELLIPSIS)
    assert tried > 0
    assert failures == 0
