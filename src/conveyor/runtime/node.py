"""A Conveyor node: the backends, services and processors of one process, wired from settings.

``Conveyor.from_config(path_or_dict)`` builds a node; nothing connects until a service is first
used (or ``start()``), so building a node is cheap and side-effect free. A node is a context
manager: ``with Conveyor.from_config("conveyor.toml") as node: ...`` starts it and stops it.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigurationError
from conveyor.runtime.config import load_settings
from conveyor.runtime.settings import Settings

if TYPE_CHECKING:
    from conveyor.bulk import BulkService
    from conveyor.kv import KeyValueStore
    from conveyor.log import LogManager
    from conveyor.pubsub import PubSub
    from conveyor.repository import Repository
    from conveyor.stream import StreamProcessor
    from conveyor.transient import TransientStore
    from conveyor.work import WorkManager

__all__ = ["Conveyor"]

logger = logging.getLogger("conveyor.node")

NODES_STORE = "cluster"
NODE_KEY_PREFIX = "node:"
BULK_PROCESSOR = "bulk"
"""The name a node running the Bulk Service's computations lists among its ``processors``."""


def _stopped(what: str, stop: Callable[[float], object], deadline: float) -> bool:
    """``stop(seconds left)``'s answer as a bool; False, logged at ERROR with the cause, when it raised."""
    try:
        return bool(stop(max(0.0, deadline - time.monotonic())))
    except Exception as exc:
        logger.error("node stop: %s could not finish: %s", what, exc, exc_info=True)
        return False


class Conveyor:
    """One node of a Conveyor cluster (or the whole platform, embedded)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.node_id = settings.node.id
        self.started_at = time.time()
        self._lock = threading.RLock()
        self._log_manager: LogManager | None = None
        self._kv_stores: dict[str, KeyValueStore] = {}
        self._transient_stores: dict[str, TransientStore] = {}
        self._pubsub: PubSub | None = None
        self._repository: Repository | None = None
        self._work_manager: WorkManager | None = None
        self._bulk_service: BulkService | None = None
        self._processors: dict[str, StreamProcessor] = {}
        self._heartbeat: threading.Thread | None = None
        self._stopping = threading.Event()
        self._started = False
        self._closed = False

    # --- construction --------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, source: str | Path | Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> Conveyor:
        """A node from a TOML file, a dict, or nothing (embedded defaults); imports ``node.modules``."""
        settings = load_settings(source, env)
        node = cls(settings)
        node.import_modules()
        return node

    def import_modules(self) -> None:
        """Import the user modules named in ``node.modules`` (Works, computations, bulk actions).

        They are looked up from the working directory first (as Celery's ``-A`` does), then on
        ``sys.path``.
        """
        for module in self.settings.node.modules:
            try:
                import_user_module(module)
            except ImportError as exc:
                raise ConfigurationError(f"node.modules: cannot import {module!r}: {exc}") from exc

    def url(self, value: str) -> str:
        """``value`` with ``{data_dir}`` resolved (and the data directory created)."""
        if "{data_dir}" in value:
            data_dir = self.settings.node.data_dir
            try:
                data_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # under a file, no permission: a setting to fix, not a traceback
                raise ConfigurationError(
                    f"node.data_dir: cannot create the data directory {str(data_dir)!r}: "
                    f"{exc.strerror or exc}"
                ) from exc
        return self.settings.resolve(value)

    # --- services ------------------------------------------------------------------------------

    @property
    def log_manager(self) -> LogManager:
        """The node's log manager (streams)."""
        with self._lock:
            if self._log_manager is None:
                from conveyor.log import open_log_manager

                options: dict[str, Any] = dict(self.settings.log.options)
                if self.settings.log.codec:
                    options["default_codec"] = self.settings.log.codec
                self._log_manager = open_log_manager(self.url(self.settings.log.url), **options)
            return self._log_manager

    def kv_store(self, name: str = "default") -> KeyValueStore:
        """The named key-value store (names are namespaces on the configured backend)."""
        with self._lock:
            store = self._kv_stores.get(name)
            if store is None:
                from conveyor.kv import open_kv_store

                store = open_kv_store(self.url(self.settings.kv.url), name)
                self._kv_stores[name] = store
            return store

    @property
    def pubsub(self) -> PubSub:
        """The node's pub/sub provider."""
        with self._lock:
            if self._pubsub is None:
                from conveyor.pubsub import open_pubsub

                self._pubsub = open_pubsub(self.url(self.settings.pubsub.url), node_id=self.node_id)
            return self._pubsub

    def transient_store(self, name: str = "default") -> TransientStore:
        """The named transient store (metadata in the KV store, blobs under ``transient.blob_dir``)."""
        with self._lock:
            store = self._transient_stores.get(name)
            if store is None:
                from conveyor.transient import TransientStore

                cfg = self.settings.transient
                blob_dir = Path(self.url(cfg.blob_dir)) / name
                store = TransientStore(
                    name,
                    self.kv_store(f"transient_{name}"),
                    blob_dir,
                    first_level_ttl=cfg.first_level_ttl_s,
                    second_level_ttl=cfg.second_level_ttl_s,
                    target_max_size_mb=cfg.target_max_size_mb,
                    absolute_max_size_mb=cfg.absolute_max_size_mb,
                )
                self._transient_stores[name] = store
            return store

    @property
    def repository(self) -> Repository:
        """The built-in document repository."""
        with self._lock:
            if self._repository is None:
                from conveyor.repository import open_repository

                self._repository = open_repository(self.url(self.settings.repository.url))
            return self._repository

    @property
    def work_manager(self) -> WorkManager:
        """The WorkManager (queues from ``[work]``); started with the node."""
        with self._lock:
            if self._work_manager is None:
                from conveyor.work import open_work_manager

                self._work_manager = open_work_manager(self)
            return self._work_manager

    @property
    def bulk_service(self) -> BulkService:
        """The Bulk Service over the node's repository: submits, follows and aborts commands; it
        runs them here only once the node is started with ``[bulk] processing = true``."""
        with self._lock:
            if self._bulk_service is None:
                from conveyor.bulk import open_bulk_service

                # A client that only submits or reads never processes: start() decides that.
                self._bulk_service = open_bulk_service(self, processing=False)
            return self._bulk_service

    @property
    def processors(self) -> dict[str, StreamProcessor]:
        """The stream processors started from ``[[stream.processors]]``, by name."""
        return dict(self._processors)

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Conveyor:
        """Start processing: WorkManager queues, the Bulk Service's computations (``[bulk]
        processing``), configured stream processors, heartbeat."""
        with self._lock:
            if self._started:
                return self
            self._started = True
        self.work_manager.start()
        if self.settings.bulk.processing:
            self.bulk_service.start_processing()
        for spec in self.settings.stream.processors:
            if spec.enabled:
                self._start_processor(spec)
        self._advertise()
        self._heartbeat = threading.Thread(
            target=self._heartbeat_loop, name="conveyor-heartbeat", daemon=True
        )
        self._heartbeat.start()
        logger.info("node started")
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """Stop gracefully within ``timeout`` s: Works suspended, processors stopped, offsets committed.

        Returns True when everything stopped in time; False when something did not or could not
        finish (a backend down, the disk full: logged at ERROR with the cause). Never raises:
        every part is stopped and every store closed whatever failed before it.
        """
        timeout = self.settings.node.shutdown_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        clean = True
        self._stopping.set()
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        if self._work_manager is not None:
            clean &= _stopped("the WorkManager", self._work_manager.shutdown, deadline)
        if self._bulk_service is not None:
            clean &= _stopped("the Bulk Service", self._bulk_service.close, deadline)
        for name, processor in list(self._processors.items()):
            ok = _stopped(f"stream processor {name}", processor.stop, deadline)
            if not ok:
                logger.warning("stream processor %s did not stop in time", name)
            clean &= ok
        if self._heartbeat is not None:
            self._heartbeat.join(2)
            self._withdraw()
        for closer in (
            *(s.close for s in self._transient_stores.values() if hasattr(s, "close")),
            *(s.close for s in self._kv_stores.values()),
            *([self._pubsub.close] if self._pubsub is not None else []),
            *([self._repository.close] if self._repository is not None else []),
            *([self._log_manager.close] if self._log_manager is not None else []),
        ):
            try:
                closer()
            except Exception:  # a failing close must not hide the others
                logger.exception("error while closing")
                clean = False
        logger.info("node stopped (%s)", "clean" if clean else "not clean: timeout or errors above")
        return clean

    def close(self) -> None:
        """Same as ``stop()``."""
        self.stop()

    def __enter__(self) -> Conveyor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- processors ----------------------------------------------------------------------------

    def _start_processor(self, spec: Any) -> None:
        from conveyor.stream import ComputationPolicy, StreamProcessor
        from conveyor.stream import Settings as StreamSettings

        module_name, _, attr = spec.topology.partition(":")
        try:
            factory = getattr(import_user_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(f"stream.processors[{spec.name}].topology: {exc}") from exc
        topology = factory() if callable(factory) else factory
        policy = ComputationPolicy(**spec.policy.model_dump())
        stream_settings = StreamSettings(
            concurrency=spec.concurrency, partitions=spec.partitions, codec=spec.codec, policy=policy
        )
        processor = StreamProcessor(self.log_manager, topology, stream_settings, name=spec.name)
        processor.start()
        self._processors[spec.name] = processor

    # --- cluster membership --------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """What this node advertises to the cluster."""
        queues: list[str] = []
        if self._work_manager is not None:
            queues = [
                q for q in self._work_manager.queue_ids() if self._work_manager.is_processing_enabled(q)
            ]
        return {
            "node_id": self.node_id,
            "host": socket.gethostname(),
            "started_at": self.started_at,
            "heartbeat_at": time.time(),
            "queues": queues,
            "processors": sorted(self._processors) + ([BULK_PROCESSOR] if self._processes_bulk() else []),
        }

    def _processes_bulk(self) -> bool:
        service = self._bulk_service
        return service is not None and service.processor is not None

    def _advertise(self) -> None:
        import json

        ttl = max(3 * self.settings.node.heartbeat_s, 1.0)
        self.kv_store(NODES_STORE).put(NODE_KEY_PREFIX + self.node_id, json.dumps(self.describe()), ttl=ttl)

    def _withdraw(self) -> None:
        try:
            self.kv_store(NODES_STORE).put(NODE_KEY_PREFIX + self.node_id, None)
        except Exception:
            logger.exception("cannot withdraw node from the cluster list")

    def _heartbeat_loop(self) -> None:
        while not self._stopping.wait(self.settings.node.heartbeat_s):
            try:
                self._advertise()
            except Exception:
                logger.exception("heartbeat failed")

    def nodes(self) -> list[dict[str, Any]]:
        """The nodes of the cluster that sent a heartbeat recently (one that cannot be decoded is
        ``{"node_id", "damaged": True, "error", "size"}``)."""
        store = self.kv_store(NODES_STORE)
        result = []
        for key in store.keys(NODE_KEY_PREFIX):
            raw = store.get(key)
            if raw:
                result.append(_node_info(key, raw))
        return sorted(result, key=lambda n: n["node_id"])


def import_user_module(name: str) -> Any:
    """Import the user module ``name`` with the working directory on ``sys.path`` (first, as
    ``python -m`` and Celery's ``-A`` have it): the ``conveyor`` script alone would not find a
    ``tasks.py`` beside ``conveyor.toml``."""
    working_directory_on_path()
    return importlib.import_module(name)


def working_directory_on_path() -> str:
    """The working directory, put first on ``sys.path`` unless it is there already: where user
    modules are looked up before ``sys.path`` (see :func:`import_user_module`)."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    return cwd


def _node_info(key: str, raw: bytes | str) -> dict[str, Any]:
    """A node's heartbeat as stored; one that cannot be decoded is ``{"node_id", "damaged": True,
    "error", "size"}`` so that listings show it and go on."""
    import json

    try:
        info = json.loads(raw)
        if not isinstance(info, dict) or not isinstance(info.get("node_id"), str):
            raise ValueError("not a node description")
        for name in ("started_at", "heartbeat_at"):
            if not isinstance(info.get(name, 0.0), (int, float)):
                raise ValueError(f"{name} is not a number")
        for name in ("queues", "processors"):
            value = info.get(name, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{name} is not a list of names")
    except (ValueError, RecursionError) as exc:
        return {
            "node_id": key[len(NODE_KEY_PREFIX) :],
            "damaged": True,
            "error": f"undecodable heartbeat ({len(raw)} bytes at key {key}): {type(exc).__name__}: {exc}",
            "size": len(raw),
        }
    return info
