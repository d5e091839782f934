"""The transient store (Nuxeo's ``KeyValueBlobTransientStore``): temporary parameters and blobs.

An entry is one JSON document in the key-value store, under ``entry:<key>``: its parameters, its
completed flag, the metadata of its blobs and their total size. The document is always rewritten
by compare-and-set, so concurrent writers on several nodes never lose each other's changes. Every
write gives the entry the first-level TTL; :meth:`TransientStore.release` shortens it to the
second-level TTL (or removes the entry at once when the store is above its target size). Blob
contents are files of ``blob_dir`` (shareable between nodes on a shared mount), written to a
temporary name and renamed, so a reader never sees half a file. ``__size__`` counts the bytes of
the blobs of live entries; :meth:`TransientStore.gc` recomputes it, deletes the files no live entry
references, and evicts released entries while the store is above its target size.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from conveyor.errors import ConveyorError, StorageLimitExceededError, TransientStoreInputError
from conveyor.kv.api import MAX_KEY_BYTES, KeyValueStore
from conveyor.transient.blobs import Blob, BlobInput, StagedBlob, stage_blob, storage_error

__all__ = ["GcStats", "TransientStore"]

logger = logging.getLogger("conveyor.transient")

ENTRY_PREFIX = "entry:"
SIZE_KEY = "__size__"
_MB = 1024 * 1024

Entry = dict[str, Any]


@dataclass(frozen=True)
class GcStats:
    """What one :meth:`TransientStore.gc` did."""

    entries: int
    evicted: int
    files_deleted: int
    bytes_deleted: int
    storage_size: int


def _new_entry() -> Entry:
    return {"completed": False, "params": {}, "blobs": [], "size": 0, "released": False, "updated": 0.0}


def _positive(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise TransientStoreInputError(f"{what} must be a positive number, got {value!r}")
    return float(value)


def _limit(value: float | None, what: str) -> int | None:
    """A size limit in bytes, None for "no limit" (None or a value <= 0, as Nuxeo's -1)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TransientStoreInputError(f"{what} must be a number of MB or None, got {value!r}")
    return None if value <= 0 else int(value * _MB)


class TransientStore:
    """A named store of temporary entries, each with parameters, blobs and a completed flag.

    ``first_level_ttl`` and ``second_level_ttl`` are in seconds. ``target_max_size_mb`` is the
    size above which released entries are evicted; ``absolute_max_size_mb`` the size no put may
    take the store past (``StorageLimitExceededError``, nothing written). None or 0 means no limit.
    """

    def __init__(
        self,
        name: str,
        kv_store: KeyValueStore,
        blob_dir: Path | str,
        first_level_ttl: float = 7200.0,
        second_level_ttl: float = 600.0,
        target_max_size_mb: float | None = None,
        absolute_max_size_mb: float | None = None,
        orphan_grace_s: float = 300.0,
    ) -> None:
        self.name = name
        self.kv = kv_store
        self.blob_dir = Path(blob_dir)
        self.first_level_ttl = _positive(first_level_ttl, "first_level_ttl")
        self.second_level_ttl = _positive(second_level_ttl, "second_level_ttl")
        self.target_max_size = _limit(target_max_size_mb, "target_max_size_mb")
        self.absolute_max_size = _limit(absolute_max_size_mb, "absolute_max_size_mb")
        if orphan_grace_s < 0:
            raise TransientStoreInputError(f"orphan_grace_s must be >= 0, got {orphan_grace_s!r}")
        self.orphan_grace_s = orphan_grace_s
        self._staging: set[str] = set()  # temporary files of this object's puts in progress
        self._staging_lock = threading.Lock()
        try:
            self.blob_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # under a file, no permission, a full disk: name the store and path
            raise storage_error(
                exc, f"transient store {name!r}: creating its blob directory", self.blob_dir
            ) from exc

    def __repr__(self) -> str:
        return f"TransientStore(name={self.name!r}, blob_dir={str(self.blob_dir)!r})"

    def close(self) -> None:
        """Nothing to release: the key-value store belongs to whoever passed it."""

    # --- entries -------------------------------------------------------------------------------

    def exists(self, key: str) -> bool:
        """Whether the entry ``key`` exists (and has not expired)."""
        return self._read(key) is not None

    def keys(self) -> set[str]:
        """The keys of every live entry."""
        return {k[len(ENTRY_PREFIX) :] for k in self.kv.keys(ENTRY_PREFIX)}

    def get_size(self, key: str) -> int:
        """Total bytes of the entry's blobs, -1 when the entry does not exist."""
        entry = self._read(key)
        return -1 if entry is None else int(entry["size"])

    def set_completed(self, key: str, completed: bool) -> None:
        """Mark the entry complete (or not), creating it if needed."""
        flag = bool(completed)
        self._update(key, lambda e: e.update(completed=flag))

    def is_completed(self, key: str) -> bool:
        """Whether the entry exists and is marked complete."""
        entry = self._read(key)
        return entry is not None and bool(entry["completed"])

    def put_parameter(self, key: str, name: str, value: Any) -> None:
        """Set one parameter (any JSON-serializable value) of the entry, creating it if needed."""
        self.put_parameters(key, {name: value})

    def put_parameters(self, key: str, parameters: Mapping[str, Any]) -> None:
        """Set several parameters at once (merged with the existing ones)."""
        if not isinstance(parameters, Mapping):
            raise TransientStoreInputError(f"parameters must be a mapping, got {type(parameters).__name__}")
        for pname in parameters:
            if not isinstance(pname, str) or not pname:
                raise TransientStoreInputError(f"parameter names must be non-empty str, got {pname!r}")
        try:
            values = msgspec.json.decode(msgspec.json.encode(dict(parameters)))
        except (TypeError, msgspec.EncodeError) as exc:
            message = f"parameters of entry {key!r} are not JSON-serializable: {exc}"
            raise TransientStoreInputError(message) from exc
        self._update(key, lambda e: e["params"].update(values))

    def get_parameter(self, key: str, name: str) -> Any:
        """The value of one parameter, None when it (or the entry) is absent."""
        entry = self._read(key)
        return None if entry is None else entry["params"].get(name)

    def get_parameters(self, key: str) -> dict[str, Any] | None:
        """Every parameter of the entry, None when the entry does not exist."""
        entry = self._read(key)
        return None if entry is None else dict(entry["params"])

    # --- blobs ---------------------------------------------------------------------------------

    def put_blobs(self, key: str, blobs: Iterable[BlobInput]) -> None:
        """Replace the entry's blobs (creating the entry if needed).

        Contents are streamed to files, never held whole in memory when given as a path or a
        stream. Raises StorageLimitExceededError, having stored nothing, when the store would
        grow past ``absolute_max_size_mb`` even after a GC, and StorageFullError (StorageError for
        other I/O errors) naming the store and the file when the disk is full: no temporary file
        is left and the entry keeps its previous blobs.
        """
        self._check_key(key)
        if isinstance(blobs, bytes | Blob | tuple):
            raise TransientStoreInputError("blobs must be a list of blobs, not a single blob")
        staged: list[StagedBlob] = []
        infos: list[dict[str, Any]] = []
        what = f"transient store {self.name!r} (entry {key!r})"
        try:
            for index, item in enumerate(blobs):
                staged.append(stage_blob(item, index, self.blob_dir, what))
                with self._staging_lock:
                    self._staging.add(staged[-1].temp.name)
            size = sum(s.length for s in staged)
            self._check_room(key, size)
            for s in staged:
                try:
                    infos.append(s.commit(self.blob_dir))
                except OSError as exc:
                    raise storage_error(exc, f"{what}: renaming a blob", self.blob_dir) from exc
        except BaseException:
            for s in staged:
                s.temp.unlink(missing_ok=True)
            self._delete_files(infos)  # renamed already, and no entry will reference them
            raise
        finally:
            with self._staging_lock:
                self._staging.difference_update(s.temp.name for s in staged)
        old_blobs: list[dict[str, Any]] = []
        old_size = 0

        def replace(entry: Entry) -> None:
            nonlocal old_blobs, old_size
            old_blobs, old_size = list(entry["blobs"]), int(entry["size"])
            entry.update(blobs=infos, size=size)

        try:
            self._update(key, replace)
        except BaseException:
            self._delete_files(infos)
            raise
        try:
            self.kv.add_and_get(SIZE_KEY, size - old_size)
        except ConveyorError as exc:  # the entry is written: the put stands, gc() recounts the size
            logger.warning(
                "transient store %r: size counter not updated (gc() recounts it): %s", self.name, exc
            )
        self._delete_files(old_blobs)

    def get_blobs(self, key: str) -> list[Blob] | None:
        """The entry's blobs (files to stream with ``Blob.open``), None when the entry does not exist."""
        entry = self._read(key)
        if entry is None:
            return None
        return [
            Blob(
                filename=info["filename"],
                mimetype=info["mimetype"],
                path=self.blob_dir / info["file"],
                length=info["length"],
                digest=info["digest"],
            )
            for info in entry["blobs"]
        ]

    # --- lifecycle -----------------------------------------------------------------------------

    def release(self, key: str) -> None:
        """The caller is done with the entry: keep it for the second-level TTL only.

        When the store is above its target size the entry is removed at once instead.
        """
        if self._read(key) is None:
            return
        if self.target_max_size is not None and self.storage_size() > self.target_max_size:
            self.remove(key)
            return
        self._update(key, lambda e: e.update(released=True), ttl=self.second_level_ttl, create=False)

    def remove(self, key: str) -> None:
        """Delete the entry and its blobs (nothing happens when it does not exist)."""
        kv_key = self._kv_key(key)
        while True:
            raw = self.kv.get(kv_key)
            if raw is None:
                return
            if self.kv.compare_and_set(kv_key, raw, None):
                break
        entry = self._decode(raw)
        self.kv.add_and_get(SIZE_KEY, -int(entry["size"]))
        self._delete_files(entry["blobs"])

    def storage_size(self) -> int:
        """Bytes of the blobs of the store's entries (as of the last write or GC)."""
        return max(0, self.kv.get_int(SIZE_KEY) or 0)

    def gc(self) -> GcStats:
        """Delete the files of expired entries and orphan files; evict released entries above target.

        Files younger than ``orphan_grace_s`` are kept even when unreferenced: another node may be
        writing them right now.
        """
        entries, damaged = self._entries()
        total = sum(int(e["size"]) for e in entries.values())
        evicted = 0
        if self.target_max_size is not None and total > self.target_max_size:
            released = sorted((e["updated"], k) for k, e in entries.items() if e["released"])
            for _, key in released:
                if total <= self.target_max_size:
                    break
                total -= int(entries.pop(key)["size"])
                self.remove(key)
                evicted += 1
        referenced = {info["file"] for e in entries.values() for info in e["blobs"]}
        cutoff = time.time() - self.orphan_grace_s
        candidates: list[Path] = []
        with self._staging_lock:
            staging = set(self._staging)
        if damaged:  # their blobs are unknown: no file is an orphan for sure, keep them all
            logger.warning(
                "transient store %r: %d entries cannot be decoded (%s): orphan files are kept",
                self.name,
                len(damaged),
                ", ".join(damaged[:5]),
            )
        for path in [] if damaged else self.blob_dir.iterdir():
            if path.name in staging:
                continue
            try:
                if path.name not in referenced and path.is_file() and path.stat().st_mtime <= cutoff:
                    candidates.append(path)
            except FileNotFoundError:
                continue
        if candidates:  # an entry may have been written since we listed them: look once more
            referenced |= {info["file"] for e in self._entries()[0].values() for info in e["blobs"]}
        files_deleted = bytes_deleted = 0
        for path in candidates:
            if path.name in referenced:
                continue
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            files_deleted += 1
            bytes_deleted += size
        self.kv.put(SIZE_KEY, total)
        return GcStats(len(entries), evicted, files_deleted, bytes_deleted, total)

    # --- internals -----------------------------------------------------------------------------

    def _check_key(self, key: str) -> None:
        if not isinstance(key, str) or not key:
            raise TransientStoreInputError(f"entry key must be a non-empty str, got {key!r}")
        if len((ENTRY_PREFIX + key).encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            raise TransientStoreInputError(f"entry key {key[:40]!r}... is too long")

    def _kv_key(self, key: str) -> str:
        self._check_key(key)
        return ENTRY_PREFIX + key

    @staticmethod
    def _decode(raw: bytes) -> Entry:
        entry: Entry = msgspec.json.decode(raw)
        return entry

    def _read(self, key: str) -> Entry | None:
        raw = self.kv.get(self._kv_key(key))
        return None if raw is None else self._decode(raw)

    def _entries(self) -> tuple[dict[str, Entry], list[str]]:
        """Every entry that can be decoded, and the keys of those that cannot."""
        raws = self.kv.get_many(self.kv.keys(ENTRY_PREFIX))
        entries: dict[str, Entry] = {}
        damaged: list[str] = []
        for kv_key, raw in raws.items():
            key = kv_key[len(ENTRY_PREFIX) :]
            try:
                entry = self._decode(raw)
                if not isinstance(entry, dict) or not isinstance(entry.get("size"), int):
                    raise ValueError("not a transient entry")
                if not all(isinstance(i, dict) and isinstance(i.get("file"), str) for i in entry["blobs"]):
                    raise ValueError("not a list of blobs")
                float(entry["updated"])
                bool(entry["released"])
            except (ValueError, TypeError, KeyError, RecursionError, msgspec.DecodeError):
                damaged.append(key)
                continue
            entries[key] = entry
        return entries, damaged

    def _update(
        self, key: str, change: Callable[[Entry], None], ttl: float | None = None, create: bool = True
    ) -> None:
        """Apply ``change`` to the entry by compare-and-set, retrying on a concurrent write."""
        kv_key = self._kv_key(key)
        released = ttl is not None
        while True:
            raw = self.kv.get(kv_key)
            if raw is None and not create:
                return
            entry = _new_entry() if raw is None else self._decode(raw)
            entry["released"] = released
            change(entry)
            entry["updated"] = time.time()
            new = msgspec.json.encode(entry)
            if self.kv.compare_and_set(kv_key, raw, new, ttl=ttl or self.first_level_ttl):
                return

    def _check_room(self, key: str, size: int) -> None:
        if self.absolute_max_size is None:
            return
        current = self.get_size(key)
        needed = self.storage_size() - max(0, current) + size
        if needed > self.absolute_max_size:
            self.gc()
            needed = self.storage_size() - max(0, self.get_size(key)) + size
        if needed > self.absolute_max_size:
            raise StorageLimitExceededError(
                f"transient store {self.name!r} is full: putting {size} bytes on entry {key!r} would take "
                f"it to {needed} bytes, past absolute_max_size_mb ({self.absolute_max_size / _MB:g} MB)"
            )

    def _delete_files(self, infos: Iterable[Mapping[str, Any]]) -> None:
        for info in infos:
            try:
                os.unlink(self.blob_dir / info["file"])
            except FileNotFoundError:
                pass
