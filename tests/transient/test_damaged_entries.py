"""One transient entry that cannot be decoded never stops the store's GC (issue 14, item 6): the
other entries are counted and evicted as usual, and no file is deleted as an orphan while an entry
whose blobs are unknown may still reference it."""

from __future__ import annotations

from pathlib import Path

from conveyor.kv import open_kv_store
from conveyor.transient import TransientStore


def test_gc_goes_on_past_a_damaged_entry_and_keeps_the_files(tmp_path: Path) -> None:
    kv = open_kv_store(f"sqlite:///{tmp_path}/kv.db", "transient")
    try:
        store = TransientStore("t", kv, tmp_path / "blobs", orphan_grace_s=0.0)
        store.put_blobs("good", [b"good bytes"])
        kv.put("entry:garbled", b"\xff{not json")
        kv.put("entry:odd", b'{"size": "big", "blobs": 3}')
        unknown = tmp_path / "blobs" / "maybe-the-garbled-entry-s-blob"
        unknown.write_bytes(b"x" * 100)

        stats = store.gc()
        assert stats.entries == 1 and stats.storage_size == len(b"good bytes")
        assert stats.files_deleted == 0 and unknown.exists()  # it may belong to a damaged entry
        assert [b.read_bytes() for b in store.get_blobs("good") or []] == [b"good bytes"]

        kv.put("entry:garbled", None)
        kv.put("entry:odd", None)
        stats = store.gc()  # nothing damaged any more: the orphan goes
        assert stats.files_deleted == 1 and not unknown.exists()
        assert [b.read_bytes() for b in store.get_blobs("good") or []] == [b"good bytes"]
    finally:
        kv.close()
