"""Settings of the Kafka log backend: parsed from a ``kafka://`` URL and options, then validated.

``kafka://host:port[,host:port]?prefix=nuxeo-&acks=all&sasl.mechanism=...`` — the query holds
Conveyor's own settings (below) and any librdkafka property, which goes to every client that
understands it (producer, consumer, admin). The ``producer``, ``consumer`` and ``admin`` options
(dicts) set properties of one kind of client only. Options given to ``open_log_manager`` override
the URL query. Unknown properties are rejected with their name: librdkafka itself checks them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from conveyor.errors import ConfigurationError
from conveyor.registry import redact_url

__all__ = [
    "CONSUMER_DEFAULTS",
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT",
    "PRODUCER_DEFAULTS",
    "KafkaSettings",
    "parse_kafka_url",
    "redact_kafka_url",
]

DEFAULT_PREFIX = "nuxeo-"
"""Nuxeo's ``kafka.topicPrefix``: a Conveyor node and a Nuxeo node address the same topics."""

DEFAULT_TIMEOUT = 30.0
"""Seconds an admin call, a metadata request or an append waits for the broker."""

PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "1",  # Nuxeo's kafka.acks
    "linger.ms": 5,  # batches append_many; a synchronous append flushes at once anyway
}
CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": False,  # as Nuxeo: commit is explicit and synchronous
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",  # a new group starts at the beginning
    "enable.partition.eof": False,
    # librdkafka waits fetch.queue.backoff.ms (1000) when its queue is full: 7x slower reads.
    "fetch.queue.backoff.ms": 10,
    # Short enough that a lost member's partitions move within seconds (tansu also completes a
    # first group join only after about half of it); Nuxeo uses 50 s.
    "session.timeout.ms": 10000,
    "heartbeat.interval.ms": 1000,
    "max.poll.interval.ms": 7200000,  # Nuxeo's kafka.max.poll.interval.ms: long computations
}

# Conveyor's own keys in the URL query / options (not librdkafka properties).
_OWN_KEYS = {"prefix", "codec", "default_codec", "timeout", "default.replication.factor"}
_CLIENT_KEYS = {"producer", "consumer", "admin"}
_FORBIDDEN = {"group.id", "enable.auto.commit", "bootstrap.servers"}
_CONFWARN = re.compile(r"Configuration property (\S+) is a (producer|consumer) property")
_SECRET = re.compile(r"password|secret|jaas|key\.pem|token", re.IGNORECASE)
_TOPIC_CHARS = re.compile(r"[A-Za-z0-9._-]*\Z")


@dataclass(frozen=True)
class KafkaSettings:
    """Validated settings of one ``kafka://`` log manager."""

    url: str
    bootstrap_servers: str
    prefix: str = DEFAULT_PREFIX
    timeout: float = DEFAULT_TIMEOUT
    replication_factor: int = -1
    default_codec: Any = None
    producer: dict[str, Any] = field(default_factory=dict)
    consumer: dict[str, Any] = field(default_factory=dict)
    admin: dict[str, Any] = field(default_factory=dict)

    @property
    def redacted_url(self) -> str:
        """The URL, safe to show."""
        return redact_kafka_url(self.url)

    def topic(self, name_id: str) -> str:
        """The Kafka topic of a log id (Nuxeo: prefix + ``Name.id``)."""
        return self.prefix + name_id

    def group_id(self, group_id: str) -> str:
        """The Kafka consumer group of a Conveyor group id (Nuxeo: prefix + ``Name.id``)."""
        return self.prefix + group_id

    def producer_config(self, logger: logging.Logger) -> dict[str, Any]:
        """librdkafka configuration of a producer."""
        ms = int(self.timeout * 1000)
        base = {"message.timeout.ms": ms, "socket.timeout.ms": min(ms, 60000)}
        return {**base, **self.producer, "bootstrap.servers": self.bootstrap_servers, "logger": logger}

    def consumer_config(self, group_id: str, logger: logging.Logger) -> dict[str, Any]:
        """librdkafka configuration of a consumer of the Kafka group ``group_id``."""
        return {
            **self.consumer,
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": group_id,
            "logger": logger,
        }

    def admin_config(self, logger: logging.Logger) -> dict[str, Any]:
        """librdkafka configuration of the admin client."""
        return {**self.admin, "bootstrap.servers": self.bootstrap_servers, "logger": logger}


def redact_kafka_url(url: str) -> str:
    """``url`` without secrets: the userinfo password and query values such as ``sasl.password``."""
    shown = redact_url(url)
    try:
        parts = urlsplit(shown)
    except ValueError:
        return "<unparseable url>"
    if not parts.query:
        return shown
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    safe = [(k, "***" if _SECRET.search(k) else v) for k, v in pairs]
    return parts._replace(query="&".join(f"{k}={v}" for k, v in safe)).geturl()


def parse_kafka_url(url: str, options: Mapping[str, Any]) -> KafkaSettings:
    """Settings from ``url`` and ``options`` (which override the query); ConfigurationError if bad."""
    shown = redact_kafka_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigurationError(f"invalid Kafka log URL {shown!r}: {exc}") from exc
    if parts.scheme.lower() != "kafka":
        raise ConfigurationError(f"not a kafka:// URL: {shown!r}")
    servers = _bootstrap_servers(parts.netloc, shown)
    query: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
    opts = dict(options)
    per_client: dict[str, dict[str, Any]] = {}
    for kind in _CLIENT_KEYS:
        value = opts.pop(kind, None) or {}
        if not isinstance(value, Mapping):
            raise ConfigurationError(f"option {kind!r} of Kafka log {shown!r} must be a dict of properties")
        per_client[kind] = {str(k): v for k, v in value.items()}
    merged = {**query, **opts}
    prefix = str(merged.pop("prefix", DEFAULT_PREFIX))
    if not _TOPIC_CHARS.match(prefix):
        raise ConfigurationError(f"invalid topic prefix {prefix!r} in {shown!r}: use [A-Za-z0-9._-]")
    codec = merged.pop("default_codec", None) or merged.pop("codec", None)
    merged.pop("codec", None)
    timeout = _positive_float(merged.pop("timeout", DEFAULT_TIMEOUT), "timeout", shown)
    replication = _int(merged.pop("default.replication.factor", -1), "default.replication.factor", shown)
    for kind, props in [("common", merged), *per_client.items()]:
        bad = sorted(_FORBIDDEN & set(props))
        if bad:
            raise ConfigurationError(
                f"property {bad[0]!r} ({kind}) of Kafka log {shown!r} is set by Conveyor"
            )
    producer, consumer, admin = _split_and_validate(merged, per_client, shown)
    return KafkaSettings(
        url=url,
        bootstrap_servers=servers,
        prefix=prefix,
        timeout=timeout,
        replication_factor=replication,
        default_codec=codec,
        producer={**PRODUCER_DEFAULTS, **producer},
        consumer={**CONSUMER_DEFAULTS, **consumer},
        admin=admin,
    )


def _bootstrap_servers(netloc: str, shown: str) -> str:
    hosts = unquote(netloc.rpartition("@")[2])
    if not hosts:
        raise ConfigurationError(f"Kafka log URL {shown!r} names no broker: expected kafka://host:port")
    for host in hosts.split(","):
        name, sep, port = host.rpartition(":")
        if not sep or not name or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(f"invalid broker address {host!r} in {shown!r}: expected host:port")
    return hosts


def _positive_float(value: Any, key: str, shown: str) -> float:
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{key} of Kafka log {shown!r} must be a number, got {value!r}") from None
    if not result > 0:
        raise ConfigurationError(f"{key} of Kafka log {shown!r} must be > 0, got {value!r}")
    return result


def _int(value: Any, key: str, shown: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{key} of Kafka log {shown!r} must be an integer, got {value!r}") from None


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _split_and_validate(
    common: dict[str, Any], per_client: dict[str, dict[str, Any]], shown: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Check every property with librdkafka (offline clients) and keep each where it applies."""
    from confluent_kafka import Consumer, KafkaException, Producer

    handler = _Collect()
    probe = logging.Logger("conveyor.log.kafka.probe")
    probe.addHandler(handler)
    producer = {**common, **per_client["producer"]}
    consumer = {**common, **per_client["consumer"]}
    admin = {**common, **per_client["admin"]}
    for kind, factory, props in (
        ("producer", Producer, producer),
        ("consumer", Consumer, {**consumer, "group.id": "probe"}),
        ("admin", Producer, admin),
    ):
        try:
            client = factory({**props, "logger": probe})
        except KafkaException as exc:
            raise ConfigurationError(f"Kafka log {shown!r}: {kind} settings: {exc.args[0].str()}") from exc
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"Kafka log {shown!r}: {kind} settings: {exc}") from exc
        # Serving the client's queue delivers its configuration warnings to the logger.
        if isinstance(client, Consumer):
            client.close()
        else:
            client.poll(0)
    ignored: dict[str, set[str]] = {"producer": set(), "consumer": set()}
    for message in handler.messages:
        match = _CONFWARN.search(message)
        if match:
            # "X is a consumer property" was seen by a producer: drop X from producer configs.
            ignored["producer" if match.group(2) == "consumer" else "consumer"].add(match.group(1))
    aliases = _canonical_names(common)
    for key in list(common):
        canonical = aliases.get(key, key)
        if key in per_client["producer"] or key in per_client["admin"] or key in per_client["consumer"]:
            continue
        if canonical in ignored["producer"] or key in ignored["producer"]:
            producer.pop(key, None)
            admin.pop(key, None)
        if canonical in ignored["consumer"] or key in ignored["consumer"]:
            consumer.pop(key, None)
    return producer, consumer, admin


def _canonical_names(props: dict[str, Any]) -> dict[str, str]:
    """librdkafka reports aliases by their canonical name (acks -> request.required.acks)."""
    known = {
        "acks": "request.required.acks",
        "linger.ms": "queue.buffering.max.ms",
        "batch.num.messages": "batch.num.messages",
        "delivery.timeout.ms": "message.timeout.ms",
        "retries": "message.send.max.retries",
        "compression.type": "compression.codec",
        "max.in.flight": "max.in.flight.requests.per.connection",
    }
    return {k: known[k] for k in props if k in known}
