"""Committed offsets of consumer groups: one small file per (group, partition), replaced atomically.

``<log dir>/groups/<group id>/P-NN.offset`` holds ``[u64 offset][u32 crc32][u32 0]``. A commit
writes a temporary file, fsyncs it (unless disabled) and renames it over the old one, so a reader,
or a restart after a crash, sees the old value or the new one, never a mix.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib

from conveyor.errors import LogCorruptedError
from conveyor.log.local.diskio import fsync_dir, remove_quietly, storage_error
from conveyor.log.names import Name

__all__ = ["OffsetStore"]

_RECORD = struct.Struct("<QII")
_SUFFIX = ".offset"


class OffsetStore:
    """The committed offsets of every group on one log directory."""

    def __init__(self, log_dir: str, sync: bool, label: str = "") -> None:
        self.directory = os.path.join(log_dir, "groups")
        self.sync = sync
        self.label = label or f"local log {log_dir}"
        self._counter = 0
        self._lock = threading.Lock()

    def _path(self, group: Name, partition: int) -> str:
        return os.path.join(self.directory, group.id, f"P-{partition:02d}{_SUFFIX}")

    def get(self, group: Name, partition: int) -> int | None:
        """The committed offset (next record to read), or None if the group never committed."""
        path = self._path(group, partition)
        try:
            with open(path, "rb") as file:
                data = file.read(_RECORD.size + 1)
        except FileNotFoundError:
            return None
        if len(data) != _RECORD.size:
            raise LogCorruptedError(f"committed offset file {path} has {len(data)} bytes", path, 0)
        offset, crc, _ = _RECORD.unpack(data)
        if zlib.crc32(data[:8]) != crc:
            raise LogCorruptedError(f"committed offset file {path} fails its checksum", path, 0)
        return int(offset)

    def put(self, group: Name, partition: int, offset: int) -> None:
        """Store ``offset`` atomically (and durably unless ``sync`` is off).

        Raises ``StorageFullError`` / ``StorageError`` naming the log, group, partition and file
        when the disk is full or failing; the previous committed offset is then still in place.
        """
        path = self._path(group, partition)
        directory = os.path.dirname(path)
        packed = struct.pack("<Q", offset)
        data = _RECORD.pack(offset, zlib.crc32(packed), 0)
        with self._lock:
            self._counter += 1
            temp = f"{path}.{os.getpid()}.{threading.get_ident()}.{self._counter}.tmp"
        created = False
        try:
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:
                os.makedirs(directory, exist_ok=True)
                created = True
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                if os.write(fd, data) != len(data):
                    raise OSError(28, "No space left on device")
                if self.sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, path)
            if self.sync and created:
                fsync_dir(directory)
                fsync_dir(self.directory)
        except OSError as exc:
            remove_quietly(temp)
            raise storage_error(
                exc,
                f"committing offset {offset} of group {group.urn!r} on {self.label} partition {partition}",
                path,
            ) from exc

    def remove(self, group: Name) -> bool:
        """Delete every committed offset of ``group`` on this log; True when there was one.

        The caller holds the group's partition locks, so no commit runs meanwhile; the lock files
        stay (a tailer may be about to lock them).
        """
        directory = os.path.join(self.directory, group.id)
        try:
            entries = os.listdir(directory)
        except FileNotFoundError:
            return False
        removed = False
        try:
            for entry in entries:
                if entry.endswith(_SUFFIX):
                    os.unlink(os.path.join(directory, entry))
                    removed = True
            if removed and self.sync:
                fsync_dir(directory)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise storage_error(exc, f"deleting group {group.urn!r} of {self.label}", directory) from exc
        return removed

    def groups(self) -> list[Name]:
        """Groups that committed at least once."""
        try:
            entries = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        found = []
        for entry in entries:
            try:
                if any(n.endswith(_SUFFIX) for n in os.listdir(os.path.join(self.directory, entry))):
                    found.append(Name.of_id(entry))
            except (FileNotFoundError, NotADirectoryError, ValueError):
                continue
        return found
