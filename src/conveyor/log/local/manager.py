"""``local:///dir``: logs in memory-mapped segment files on this machine (like Chronicle Queue).

Layout under the root directory::

    <root>/<log id>/log.json              partitions, retention, format version (written once)
    <root>/<log id>/P-00/<segments>.seg   entries of partition 0 (see ``segment.py``)
    <root>/<log id>/P-00/.lock            appenders of every process serialize on it
    <root>/<log id>/groups/<group id>/    committed offsets and reader locks of a group
    <root>/.members/<group id>/           live subscribers of a group (see ``group.py``)

A log is created in a temporary directory renamed into place, so a log is either whole or absent,
even with several processes creating it at once; it is deleted by renaming it away first.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from typing import Any

from conveyor.codec.api import Codec
from conveyor.errors import ConfigurationError, ConsumerGroupActiveError, LogCorruptedError, LogNotFoundError
from conveyor.log.api import LogAppender, LogCapabilities, LogManager, LogTailer, NameLike
from conveyor.log.local.appender import LocalAppender
from conveyor.log.local.check import PartitionCheck, RepairedRange, check_partition, repair_partition
from conveyor.log.local.diskio import fsync_dir, storage_error
from conveyor.log.local.group import live_members
from conveyor.log.local.locks import try_lock_file
from conveyor.log.local.offsets import OffsetStore
from conveyor.log.local.options import LocalLogOptions, Retention, parse_local_url
from conveyor.log.local.partition import EndTracker, partition_dir
from conveyor.log.local.tailer import LocalSubscriber, LocalTailer
from conveyor.log.names import Name
from conveyor.log.types import LogLag, LogPartition, RebalanceListener

__all__ = ["LocalLogManager"]

_META = "log.json"
_FORMAT = 1


class LocalLogManager(LogManager):
    """Logs in segment files under one directory, shared by the processes of one machine."""

    capabilities = LogCapabilities(
        subscribe=True, multi_process=True, offset_for_timestamp=False, delete=True, dense_offsets=True
    )

    def __init__(
        self, options: LocalLogOptions, url: str = "", default_codec: Codec[Any] | str | None = None
    ):
        super().__init__(url or f"local://{options.root}", default_codec or options.codec)
        self.options = options
        self.root = os.path.abspath(options.root)
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(f"cannot create local log directory {self.root!r}: {exc}") from exc
        if not os.access(self.root, os.W_OK):
            raise ConfigurationError(f"local log directory {self.root!r} is not writable")
        self._meta_lock = threading.Lock()
        self._sizes: dict[Name, int] = {}
        self._retentions: dict[Name, Retention] = {}
        self._offsets: dict[Name, OffsetStore] = {}
        self._ends: dict[LogPartition, EndTracker] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> LocalLogManager:
        """Open ``local:///dir?retention=4d&segment_bytes=64m&fsync=never...`` (see ``LocalLogOptions``)."""
        default_codec = options.pop("default_codec", None)
        parsed = parse_local_url(url, options)
        return cls(parsed, url, default_codec)

    # --- paths and metadata --------------------------------------------------------------------

    def log_dir(self, name: Name) -> str:
        """The directory of log ``name``."""
        return os.path.join(self.root, name.id)

    def partition_dir(self, partition: LogPartition) -> str:
        """The directory of one partition."""
        return partition_dir(self.log_dir(partition.name), partition.partition)

    def _read_meta(self, name: Name) -> dict[str, Any] | None:
        path = os.path.join(self.log_dir(name), _META)
        try:
            with open(path, "rb") as file:
                data = json.loads(file.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise LogCorruptedError(
                f"metadata {path} of log {name.urn!r} is unreadable: {exc}", path, 0
            ) from exc
        if not isinstance(data, dict) or not isinstance(data.get("partitions"), int):
            raise LogCorruptedError(f"metadata {path} of log {name.urn!r} has no partition count", path, 0)
        if data.get("format", _FORMAT) > _FORMAT:
            raise ConfigurationError(
                f"log {name.urn!r} was written by a newer format ({data['format']}); "
                f"this version reads {_FORMAT}"
            )
        return data

    def size_if_exists(self, name: Name) -> int | None:
        """Partitions of ``name``, or None when it does not exist (cached: a log never resizes)."""
        size = self._sizes.get(name)
        if size is not None:
            if os.path.isdir(self.log_dir(name)):
                return size
            with self._meta_lock:
                self._forget(name)
            return None
        meta = self._read_meta(name)
        if meta is None:
            return None
        with self._meta_lock:
            self._sizes[name] = int(meta["partitions"])
            self._retentions[name] = Retention.parse(str(meta.get("retention", "")))
        return int(meta["partitions"])

    def retention_of(self, name: Name) -> Retention:
        """The retention the log was created with."""
        if self.size_if_exists(name) is None:
            raise LogNotFoundError(f"log {name.urn!r} does not exist")
        return self._retentions[name]

    def offsets(self, name: Name) -> OffsetStore:
        """The committed offsets of the groups of log ``name``."""
        with self._meta_lock:
            store = self._offsets.get(name)
            if store is None:
                store = self._offsets[name] = OffsetStore(
                    self.log_dir(name), self.options.sync_commits, label=f"local log {name.urn!r}"
                )
            return store

    def _end_tracker(self, partition: LogPartition) -> EndTracker:
        with self._meta_lock:
            tracker = self._ends.get(partition)
            if tracker is None:
                tracker = self._ends[partition] = EndTracker(self.partition_dir(partition))
            return tracker

    def end_offset(self, partition: LogPartition) -> int:
        """The offset the next record appended to ``partition`` will get."""
        tracker = self._end_tracker(partition)
        with self._meta_lock:
            return tracker.end_offset()

    def first_offset(self, partition: LogPartition) -> int:
        """The oldest offset still stored in ``partition`` (retention deletes old segments)."""
        return self._end_tracker(partition).first_offset()

    # --- damage -------------------------------------------------------------------------------

    def check(self, name: NameLike) -> list[PartitionCheck]:
        """Scan every partition of log ``name`` for damage and torn tails (read only; see
        ``conveyor.log.local.check``)."""
        log = Name.coerce(name)
        return [check_partition(i, self.partition_dir(LogPartition(log, i))) for i in range(self._size(log))]

    def repair(self, name: NameLike) -> list[RepairedRange]:
        """Quarantine every damaged range of log ``name``: its offsets become a gap readers go on
        past (the records they held are lost, reported in each range's ``lost``)."""
        log = Name.coerce(name)
        repaired: list[RepairedRange] = []
        for index in range(self._size(log)):
            label = f"local log {log.urn!r} partition {index}"
            repaired += repair_partition(index, self.partition_dir(LogPartition(log, index)), label)
        return repaired

    def _forget(self, name: Name) -> None:
        self._sizes.pop(name, None)
        self._retentions.pop(name, None)
        self._offsets.pop(name, None)
        for partition in [p for p in self._ends if p.name == name]:
            self._ends.pop(partition).close()

    # --- backend primitives --------------------------------------------------------------------

    def _create(self, name: Name, partitions: int) -> bool:
        target = self.log_dir(name)
        if os.path.isdir(target) and self._read_meta(name) is not None:
            return False
        try:
            return self._create_in(name, partitions, target)
        except OSError as exc:
            raise storage_error(exc, f"creating local log {name.urn!r}", target) from exc

    def _create_in(self, name: Name, partitions: int, target: str) -> bool:
        temp = os.path.join(self.root, f".creating-{name.id}-{uuid.uuid4().hex}")
        os.makedirs(temp)
        try:
            for index in range(partitions):
                os.makedirs(partition_dir(temp, index))
            meta = {
                "format": _FORMAT,
                "name": name.urn,
                "partitions": partitions,
                "retention": self.options.retention.text,
                "created": int(time.time() * 1000),
            }
            with open(os.path.join(temp, _META), "w", encoding="utf-8") as file:
                json.dump(meta, file)
                file.flush()
                os.fsync(file.fileno())
            try:
                os.rename(temp, target)
            except OSError:
                # Another process created it first (the target is a non-empty directory).
                if self._read_meta(name) is not None:
                    return False
                raise
        finally:
            if os.path.isdir(temp):
                shutil.rmtree(temp, ignore_errors=True)
        fsync_dir(self.root)
        return True

    def _exists(self, name: Name) -> bool:
        return self.size_if_exists(name) is not None

    def _size(self, name: Name) -> int:
        size = self.size_if_exists(name)
        if size is None:
            raise LogNotFoundError(f"log {name.urn!r} does not exist")
        return size

    def _delete(self, name: Name) -> bool:
        target = self.log_dir(name)
        trash = os.path.join(self.root, f".deleting-{name.id}-{uuid.uuid4().hex}")
        try:
            os.rename(target, trash)
        except FileNotFoundError:
            with self._meta_lock:
                self._forget(name)
            return False
        with self._meta_lock:
            self._forget(name)
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def _list_all(self) -> list[Name]:
        found: list[Name] = []
        for entry in os.listdir(self.root):
            if entry.startswith("."):
                continue
            path = os.path.join(self.root, entry, _META)
            try:
                with open(path, "rb") as file:
                    urn = json.loads(file.read()).get("name")
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(urn, str):
                found.append(Name.of_urn(urn))
        return found

    def _list_consumer_groups(self, name: Name) -> list[Name]:
        return self.offsets(name).groups()

    def _delete_consumer_group(self, group: Name, name: Name) -> bool:
        readers = sorted(m for m, names in live_members(self.root, group).items() if name in names)
        if readers:
            raise ConsumerGroupActiveError(
                f"consumer group {group.urn!r} has {len(readers)} live member(s) subscribed to log "
                f"{name.urn!r}: stop its consumers first"
            )
        group_dir = os.path.join(self.log_dir(name), "groups", group.id)
        held: list[int] = []
        try:
            # Holding every partition lock of the group: no tailer reads or commits meanwhile.
            for index in range(self._size(name)):
                path = os.path.join(group_dir, f"P-{index:02d}.lock")
                fd = try_lock_file(path)
                if fd is not None:
                    held.append(fd)
                elif os.path.exists(path):
                    raise ConsumerGroupActiveError(
                        f"consumer group {group.urn!r} has a tailer reading partition {index} of log "
                        f"{name.urn!r} (in this or another process): stop its consumers first"
                    )
            return self.offsets(name).remove(group)
        finally:
            for fd in held:
                os.close(fd)

    def _lag_per_partition(self, name: Name, group: Name) -> list[LogLag]:
        store = self.offsets(name)
        lags = []
        for index in range(self._size(name)):
            partition = LogPartition(name, index)
            end = self.end_offset(partition)
            committed = store.get(group, index)
            lower = committed if committed is not None else self.first_offset(partition)
            lags.append(LogLag.of(min(lower, end), end))
        return lags

    def _new_appender(self, name: Name, codec: Codec[Any]) -> LogAppender[Any]:
        return LocalAppender(self, name, self._size(name), codec)

    def _new_tailer(self, group: Name, partitions: list[LogPartition], codec: Codec[Any]) -> LogTailer[Any]:
        return LocalTailer(self, group, codec, partitions)

    def _new_subscriber(
        self, group: Name, names: list[Name], listener: RebalanceListener | None, codec: Codec[Any]
    ) -> LogTailer[Any]:
        return LocalSubscriber(self, group, codec, names, listener)

    def _close(self) -> None:
        with self._meta_lock:
            for tracker in self._ends.values():
                tracker.close()
            self._ends.clear()
