"""Typed, frozen configuration of a node: what ``conveyor.toml`` may hold.

Every table is optional; an empty file (or none) runs embedded: local log, SQLite KV and
repository, in-process pubsub and the stream WorkManager, all under ``node.data_dir``. Unknown
keys are rejected with their name. URLs may use ``{data_dir}``, replaced by the node's data
directory.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "BulkActionSettings",
    "BulkSettings",
    "KvSettings",
    "LogSettings",
    "NodeSettings",
    "PolicySettings",
    "ProcessorSettings",
    "PubSubSettings",
    "QueueSettings",
    "RepositorySettings",
    "Settings",
    "TransientSettings",
    "WebSettings",
    "WorkSettings",
]


class _Frozen(BaseModel):
    # The attribute docstrings become the fields' descriptions (docs/configuration.md is made from them).
    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, use_attribute_docstrings=True
    )


def default_node_id() -> str:
    """``hostname-pid``: unique per process on a machine."""
    return f"{socket.gethostname()}-{os.getpid()}"


class NodeSettings(_Frozen):
    """The ``[node]`` table."""

    id: str = Field(default_factory=default_node_id, min_length=1, max_length=200)
    """This node's name in the cluster (``conveyor nodes``, heartbeats, log lines); one per running node."""
    data_dir: Path = Path("./var/conveyor")
    """Directory of the embedded stores (local log, SQLite files, transient blobs): ``{data_dir}`` in URLs."""
    modules: tuple[str, ...] = ()
    """Python modules imported at start (Works, computations, bulk actions), looked up from the working
    directory first."""
    log_format: Literal["text", "json", "kv"] = "text"
    """Format of the node's log lines on stderr."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Lowest level of the node's log lines."""
    heartbeat_s: float = Field(default=5.0, gt=0)
    """Seconds between two heartbeats in the KV store; a node is listed while its last heartbeat is
    younger than three of them."""
    shutdown_timeout_s: float = Field(default=30.0, ge=0)
    """Seconds a graceful stop (SIGTERM, ``node.stop()``) waits for Works, processors and commits."""


class LogSettings(_Frozen):
    """The ``[log]`` table: where streams live."""

    url: str = "local://{data_dir}/log"
    """Where streams live: ``local://DIR`` (memory-mapped segments), ``kafka://HOST:PORT,...?prefix=...``
    or ``memory://``."""
    codec: str | None = None
    """Codec of records when a stream names none (``avro``, ``json``, ``msgpack``, ...); unset: the log's
    own default."""
    options: dict[str, Any] = Field(default_factory=dict)
    """More options for the log backend (as its URL query would give them)."""


class KvSettings(_Frozen):
    """The ``[kv]`` table: the key-value store (cluster state, bulk status, work markers)."""

    url: str = "sqlite:///{data_dir}/kv.db"
    """``sqlite:///PATH``, ``redis://HOST:PORT/DB?prefix=...``, ``postgresql://...``, ``mysql://...``,
    ``mongodb://HOST/DB`` or ``memory://``."""


class PubSubSettings(_Frozen):
    """The ``[pubsub]`` table."""

    url: str = "local://"
    """``local://`` (one process), ``redis://...?prefix=...``, or a log URL (``kafka://...``)."""


class TransientSettings(_Frozen):
    """The ``[transient]`` table: temporary blobs (bulk results)."""

    blob_dir: str = "{data_dir}/transient"
    """Directory of the blobs (bulk results such as csvExport files); shared by all nodes of a cluster."""
    first_level_ttl_s: float = Field(default=7200.0, gt=0)
    """Seconds an entry in use lives after its last write."""
    second_level_ttl_s: float = Field(default=600.0, gt=0)
    """Seconds a released entry lives."""
    target_max_size_mb: int = Field(default=1024, ge=0)
    """Size above which released entries are evicted (0: no limit)."""
    absolute_max_size_mb: int = Field(default=10240, ge=0)
    """Size no write may take the store past (0: no limit)."""


class RepositorySettings(_Frozen):
    """The ``[repository]`` table: the built-in document repository."""

    url: str = "sqlite:///{data_dir}/repository.db"
    """``sqlite:///PATH``, ``postgresql://USER@HOST:PORT/DB`` or ``mysql://...``; ``?table_prefix=``
    names the table."""


class QueueSettings(_Frozen):
    """One ``[[work.queues]]`` entry."""

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_]*$")
    """The queue's id (letters, digits, ``_``); its stream is ``work/<id>``."""
    name: str | None = None
    """A display name (default: the id)."""
    max_threads: int = Field(default=4, ge=1, le=256)
    """Works of this queue run at once on one node, at most."""
    categories: tuple[str, ...] = ()
    """Work categories routed to this queue (a Work's ``category``, default its class name)."""
    processing: bool = True
    """Whether nodes run this queue (``[work] processing`` overrides it per node)."""
    capacity: int = Field(default=0, ge=0)
    """Most waiting Works; past it ``schedule()`` raises ``WorkQueueFullError`` (0: no limit)."""
    partitions: int | None = Field(default=None, ge=1, le=1024)
    """Partitions of the queue's stream (default: ``max(4, 2 * max_threads)``): how many nodes and
    threads can share it."""
    max_recoveries: int | None = Field(default=None, ge=0)
    """Times a Work may kill its process (die with the node running it): then the next node
    dead-letters it instead of running it again (0 means the same as 1; default: the
    WorkManager's, 3)."""


class WorkSettings(_Frozen):
    """The ``[work]`` table: WorkManager implementation, queues and per-node processing."""

    url: str = "stream"
    """The WorkManager: ``stream`` (queues are streams on ``[log]``, state in ``[kv]``), ``threads://``
    (in memory) or ``redis://HOST:PORT/DB?prefix=...``."""
    queues: tuple[QueueSettings, ...] = ()
    """The queues, besides ``default`` (4 threads) which always exists."""
    processing: dict[str, bool] = Field(default_factory=dict)
    """Per-node processing switches by queue id; ``"*"`` matches every queue."""

    @field_validator("queues")
    @classmethod
    def _unique_ids(cls, queues: tuple[QueueSettings, ...]) -> tuple[QueueSettings, ...]:
        ids = [q.id for q in queues]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate queue id(s): {', '.join(dupes)}")
        return queues


class PolicySettings(_Frozen):
    """A computation policy (Nuxeo's ``<policy>``)."""

    max_retries: int = Field(default=0, ge=0)
    """Times a failing record is processed again."""
    delay_s: float = Field(default=1.0, ge=0)
    """Seconds before the first retry (doubled at each retry, up to ``max_delay_s``)."""
    max_delay_s: float = Field(default=10.0, ge=0)
    """Longest wait between two retries."""
    continue_on_failure: bool = False
    """Whether a record that exhausted its retries is skipped (true) or stops the computation (false)."""
    skip_first_failures: int = Field(default=0, ge=0)
    """Records that exhausted their retries skipped before the computation stops (as with
    ``continue_on_failure``)."""
    batch_capacity: int = Field(default=1, ge=1)
    """Records processed per batch at most."""
    batch_threshold_s: float = Field(default=1.0, gt=0)
    """Seconds a batch waits to fill up."""
    dlq_stream: str | None = None
    """Stream that receives the records that exhausted their retries (unset: none)."""


class ProcessorSettings(_Frozen):
    """One ``[[stream.processors]]`` entry: a topology factory and its settings."""

    name: str = Field(min_length=1)
    """The processor's name (``conveyor nodes``, the dashboard)."""
    topology: str = Field(pattern=r"^[\w.]+:[\w.]+$")
    """``module:function`` returning a ``Topology``."""
    concurrency: int = Field(default=1, ge=1, le=256)
    """Threads per computation on this node."""
    partitions: int = Field(default=1, ge=1, le=1024)
    """Partitions of the streams it creates."""
    codec: str = "avro"
    """Codec of its records."""
    policy: PolicySettings = PolicySettings()
    """Retries, batching and dead letters of its computations."""
    enabled: bool = True
    """Whether started nodes run it."""


class StreamSettings(_Frozen):
    """The ``[stream]`` table."""

    processors: tuple[ProcessorSettings, ...] = ()
    """Stream processors every started node runs."""


class BulkActionSettings(_Frozen):
    """Overrides for one bulk action (``[[bulk.actions]]``)."""

    name: str = Field(min_length=1)
    """The action's name (``setProperties``, ``csvExport``, or one of ``[node] modules``)."""
    bucket_size: int | None = Field(default=None, ge=1)
    """Ids per bucket (unset: the action's, 100 for the built-ins)."""
    batch_size: int | None = Field(default=None, ge=1)
    """Ids per batch inside a bucket (unset: the action's, 25 for the built-ins)."""
    concurrency: int | None = Field(default=None, ge=1)
    """Threads running the action per node (unset: the action's, 2)."""
    http_enabled: bool | None = None
    """Whether the REST API may submit it (unset: the action's)."""
    enabled: bool = True
    """Whether commands of this action may be submitted."""


class BulkSettings(_Frozen):
    """The ``[bulk]`` table."""

    actions: tuple[BulkActionSettings, ...] = ()
    """Per-action overrides."""
    scroller_concurrency: int = Field(default=1, ge=1)
    """Threads of the scroller computation per node."""
    status_concurrency: int = Field(default=1, ge=1)
    """Threads of the status computation per node."""
    processing: bool = True
    """Whether a started node (``conveyor node``, ``conveyor web``, ``node.start()``) runs the
    bulk computations; a node that is not started never does."""
    wait_grace_s: float = Field(default=5.0, gt=0)
    """How long ``bulk submit --wait`` and ``bulk wait`` wait for a SCHEDULED command to be taken
    when no node of the cluster runs the bulk computations, before giving up (exit 4)."""


class WebSettings(_Frozen):
    """The ``[web]`` table: the management API and dashboard."""

    host: str = "127.0.0.1"
    """Address the server binds; anything but loopback needs a ``token``."""
    port: int = Field(default=8080, ge=0, le=65535)
    """Port of the API and dashboard."""
    token: str | None = None
    """API token (at least 16 characters), sent as ``Authorization: Bearer <token>``."""
    allowed_hosts: tuple[str, ...] = ()
    """Host names (or IP addresses) clients may use to reach the server, besides the loopback ones
    (``localhost``, ``127.0.0.1``, ``::1``) which are always allowed; ``*.example.com`` allows the
    subdomains of ``example.com``, ``*`` allows any. Requests with another ``Host`` header get 400
    (protection against DNS rebinding). Empty (the default) on a non-loopback ``host``: any Host is
    accepted, the required token being the protection."""
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    """Largest request body accepted, in bytes (default 1 MiB); a larger one gets 413 before it is
    read."""

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_host_pattern(h) for h in hosts)


_HOST_NAME = re.compile(r"^(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")


def _host_pattern(value: str) -> str:
    """``value`` as a lower-case host name, ``*.name`` pattern, ``*`` or IP address (without brackets)."""
    host = value.strip().lower().rstrip(".")
    if host == "*":
        return host
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    if not _HOST_NAME.match(host):
        raise ValueError(
            f"invalid allowed host {value!r}: use a host name (no scheme, port or path), "
            "'*.example.com', '*' or an IP address"
        )
    return host


class Settings(_Frozen):
    """The whole configuration of a node."""

    node: NodeSettings = NodeSettings()
    log: LogSettings = LogSettings()
    kv: KvSettings = KvSettings()
    pubsub: PubSubSettings = PubSubSettings()
    transient: TransientSettings = TransientSettings()
    repository: RepositorySettings = RepositorySettings()
    work: WorkSettings = WorkSettings()
    stream: StreamSettings = StreamSettings()
    bulk: BulkSettings = BulkSettings()
    web: WebSettings = WebSettings()

    def resolve(self, value: str) -> str:
        """``value`` with ``{data_dir}`` replaced by the node's data directory."""
        return value.replace("{data_dir}", str(self.node.data_dir.resolve()))

    def redacted(self) -> dict[str, Any]:
        """The settings as plain data with passwords in URLs and the web token masked."""
        from conveyor.registry import redact_url

        data = self.model_dump(mode="json")
        for section in ("log", "kv", "pubsub", "repository", "work"):
            data[section]["url"] = redact_url(self.resolve(data[section]["url"]))
        data["transient"]["blob_dir"] = self.resolve(data["transient"]["blob_dir"])
        if data["web"].get("token"):
            data["web"]["token"] = "***"
        return data
