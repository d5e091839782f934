"""Kafka URL and property parsing (no broker needed), and the unreachable-broker error."""

from __future__ import annotations

import time

import pytest

from conveyor.errors import BackendUnavailableError, ConfigurationError
from conveyor.log import open_log_manager
from conveyor.log.kafka import parse_kafka_url
from conveyor.log.kafka.config import DEFAULT_PREFIX, redact_kafka_url
from tests.services import free_port


def test_defaults_are_nuxeo_ones() -> None:
    settings = parse_kafka_url("kafka://127.0.0.1:9092", {})
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.prefix == DEFAULT_PREFIX == "nuxeo-"
    assert settings.topic("bulk-command") == "nuxeo-bulk-command"
    assert settings.group_id("bulk-scroller") == "nuxeo-bulk-scroller"
    assert settings.producer["acks"] == "1"
    assert settings.consumer["enable.auto.commit"] is False
    assert settings.consumer["auto.offset.reset"] == "earliest"
    assert settings.default_codec is None  # the manager's default: avro


def test_properties_go_where_they_apply() -> None:
    settings = parse_kafka_url(
        "kafka://h1:9092,h2:9093?prefix=p-&acks=all&fetch.min.bytes=10&client.rack=r1&timeout=5",
        {"consumer": {"session.timeout.ms": 7000}, "producer": {"linger.ms": 1}},
    )
    assert settings.bootstrap_servers == "h1:9092,h2:9093"
    assert settings.prefix == "p-"
    assert settings.timeout == 5.0
    assert settings.producer["acks"] == "all"  # producer property: not given to consumers
    assert "acks" not in settings.consumer
    assert settings.consumer["fetch.min.bytes"] == "10"
    assert "fetch.min.bytes" not in settings.producer
    assert settings.producer["client.rack"] == settings.consumer["client.rack"] == "r1"
    assert settings.consumer["session.timeout.ms"] == 7000
    assert settings.producer["linger.ms"] == 1
    assert settings.producer_config(__import__("logging").getLogger("x"))["message.timeout.ms"] == 5000


def test_options_override_the_query() -> None:
    settings = parse_kafka_url("kafka://h:1?prefix=a-&acks=0", {"prefix": "b-", "acks": "all"})
    assert settings.prefix == "b-"
    assert settings.producer["acks"] == "all"


@pytest.mark.parametrize(
    ("url", "options", "named"),
    [
        ("kafka://h:9092?no.such.property=1", {}, "no.such.property"),
        ("kafka://h:9092", {"consumer": {"fetch.wait.maxx": 1}}, "fetch.wait.maxx"),
        ("kafka://h:9092?acks=sometimes", {}, "acks"),
        ("kafka://h:9092?group.id=x", {}, "group.id"),
        ("kafka://h:9092?timeout=-1", {}, "timeout"),
        ("kafka://h:9092?timeout=soon", {}, "timeout"),
        ("kafka://h:9092?prefix=a/b", {}, "prefix"),
        ("kafka://", {}, "no broker"),
        ("kafka://h:notaport", {}, "h:notaport"),
        ("kafka://h:9092", {"producer": "acks=1"}, "producer"),
    ],
)
def test_bad_settings_are_named(url: str, options: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_kafka_url(url, options)
    message = str(info.value)
    assert named in message or named.replace("acks", "request.required.acks") in message


def test_secrets_never_shown() -> None:
    url = "kafka://user:pw1@h:9092?sasl.password=pw2&sasl.jaas.config=pw3&no.such=1"
    assert "pw" not in redact_kafka_url(url)
    with pytest.raises(ConfigurationError) as info:
        parse_kafka_url(url, {})
    assert "pw" not in str(info.value)


def test_unreachable_broker_fails_in_bounded_time() -> None:
    port = free_port()  # nobody listens there
    url = f"kafka://127.0.0.1:{port}?prefix=x-&sasl.password=hidden&security.protocol=plaintext"
    start = time.monotonic()
    with pytest.raises(BackendUnavailableError) as info:
        open_log_manager(url, timeout=1.5)
    elapsed = time.monotonic() - start
    assert elapsed < 10
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "hidden" not in str(info.value)
