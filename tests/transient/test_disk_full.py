"""The transient store on a full disk: a clear retriable error, no temporary file left, resume."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.errors import StorageFullError
from conveyor.kv import open_kv_store
from conveyor.transient import Blob, TransientStore
from conveyor.transient.blobs import TEMP_PREFIX
from tests.services import fill_disk


@pytest.mark.parametrize("kv_on_the_same_disk", [False, True], ids=["blobs-full", "blobs-and-kv-full"])
def test_transient_store_on_a_full_disk_raises_storage_full_then_resumes(
    small_tmpfs: Callable[[int], Path], tmp_path: Path, kv_on_the_same_disk: bool
) -> None:
    disk = small_tmpfs(2048)
    filler = disk / "filler"
    filler.write_bytes(b"\0" * 512 * 1024)
    blob_dir = disk / "transient"
    kv_path = (disk if kv_on_the_same_disk else tmp_path) / "kv.db"
    kept: dict[str, bytes] = {}
    with open_kv_store(f"sqlite:///{kv_path}", "transient_t") as kv:
        store = TransientStore("t", kv, blob_dir)
        with pytest.raises(StorageFullError) as info:
            for i in range(1000):
                data = os.urandom(60_000)
                store.put_blobs(f"e{i}", [("part.bin", "application/octet-stream", data)])
                kept[f"e{i}"] = data
        refused = f"e{len(kept)}"
        error = info.value
        assert error.retriable and error.path is not None and error.path.startswith(str(disk))
        assert "is full" in str(error) and error.path in str(error)
        if not kv_on_the_same_disk:  # the blob write failed: named with the store, entry and directory
            assert f"transient store 't' (entry {refused!r})" in str(error)
            assert error.path == str(blob_dir)
        assert len(kept) > 3

        def files() -> list[str]:
            return sorted(p.name for p in blob_dir.iterdir())

        # No temporary file, no blob without its entry; the refused entry does not exist.
        assert not [name for name in files() if name.startswith(TEMP_PREFIX)]
        assert len(files()) == len(kept)
        assert store.get_blobs(refused) is None
        # A replace that does not fit keeps the entry's blobs (a stream source this time).
        with pytest.raises(StorageFullError):
            store.put_blobs("e0", [Blob(stream=io.BytesIO(os.urandom(900_000)), filename="big")])
        assert len(files()) == len(kept) and not [n for n in files() if n.startswith(TEMP_PREFIX)]
        for key, data in kept.items():
            blobs = store.get_blobs(key)
            assert blobs is not None and [b.read_bytes() for b in blobs] == [data]

        filler.unlink()  # space is back: puts resume
        store.put_blobs(refused, [b"after"])
        store.put_blobs("e0", [Blob(stream=io.BytesIO(b"replaced"), filename="small")])
        kept |= {refused: b"after", "e0": b"replaced"}
        for key, data in kept.items():
            blobs = store.get_blobs(key)
            assert blobs is not None and [b.read_bytes() for b in blobs] == [data]
        assert store.storage_size() == sum(len(d) for d in kept.values())
        assert len(files()) == len(kept)


def test_transient_store_whose_kv_store_is_full_leaves_no_blob_behind(
    small_tmpfs: Callable[[int], Path], tmp_path: Path
) -> None:
    disk = small_tmpfs(1024)
    blob_dir = tmp_path / "blobs"
    with open_kv_store(f"sqlite:///{disk / 'kv.db'}", "transient_t") as kv:
        store = TransientStore("t", kv, blob_dir)
        store.put_blobs("first", [b"first"])
        filler = fill_disk(disk)
        kept = {"first": b"first"}
        with pytest.raises(StorageFullError) as info:  # the blobs are written, their entry is not
            for i in range(1000):
                data = os.urandom(10_000)
                store.put_blobs(f"e{i}", [data])
                kept[f"e{i}"] = data
        assert info.value.path == str(disk / "kv.db") and "'transient_t'" in str(info.value)
        with pytest.raises(StorageFullError):
            store.put_blobs("first", [b"replaced"])
        # Only the blobs of stored entries are left: none of the refused puts, no temporary file.
        assert len(list(blob_dir.iterdir())) == len(kept)
        for key, data in kept.items():
            blobs = store.get_blobs(key)
            assert blobs is not None and [b.read_bytes() for b in blobs] == [data]

        filler.unlink()
        store.put_blobs("first", [b"replaced"])
        blobs = store.get_blobs("first")
        assert blobs is not None and [b.read_bytes() for b in blobs] == [b"replaced"]
        assert len(list(blob_dir.iterdir())) == len(kept)
