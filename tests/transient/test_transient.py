"""The transient store on the memory and SQLite key-value stores: entries, blobs, TTLs, limits, GC."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor.errors import StorageLimitExceededError, TransientStoreError, TransientStoreFullError
from conveyor.kv import KeyValueStore, open_kv_store
from conveyor.transient import Blob, TransientStore

MB = 1024 * 1024


@pytest.fixture(params=["memory", "sqlite"])
def kv(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> Iterator[KeyValueStore]:
    """A fresh key-value store for the transient store's metadata."""
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/kv.db"
    with open_kv_store(url, f"transient_{unique}") as store:
        yield store


@pytest.fixture
def make_store(kv: KeyValueStore, tmp_path: Path) -> Callable[..., TransientStore]:
    """Builds a transient store over ``kv`` with blobs under ``tmp_path/blobs``."""

    def make(**options: float | None) -> TransientStore:
        settings: dict[str, float | None] = {"orphan_grace_s": 0.0, **options}
        return TransientStore("test", kv, tmp_path / "blobs", **settings)  # type: ignore[arg-type]

    return make


@pytest.fixture
def store(make_store: Callable[..., TransientStore]) -> TransientStore:
    """A transient store without size limits."""
    return make_store()


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``check`` until true or ``timeout`` seconds pass; its last result."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def files(store: TransientStore) -> list[Path]:
    """The files in the store's blob directory."""
    return sorted(p for p in store.blob_dir.iterdir() if p.is_file())


def test_parameters_and_completion(store: TransientStore) -> None:
    assert not store.exists("k")
    assert store.get_parameters("k") is None
    assert store.get_parameter("k", "p") is None
    assert not store.is_completed("k")
    store.put_parameter("k", "count", 3)
    store.put_parameters("k", {"name": "export.csv", "tags": ["a", "b"], "nested": {"x": 1.5}})
    assert store.exists("k")
    assert store.get_parameter("k", "count") == 3
    assert store.get_parameters("k") == {
        "count": 3,
        "name": "export.csv",
        "tags": ["a", "b"],
        "nested": {"x": 1.5},
    }
    store.set_completed("k", True)
    assert store.is_completed("k")
    store.set_completed("k", False)
    assert not store.is_completed("k")
    assert store.keys() == {"k"}
    assert store.get_size("k") == 0
    assert store.get_size("missing") == -1


def test_blobs_in_every_form_round_trip(store: TransientStore, tmp_path: Path) -> None:
    source = tmp_path / "report.pdf"
    source.write_bytes(b"%PDF" * 1000)
    store.put_blobs(
        "k",
        [
            b"raw bytes",
            ("data.csv", "text/csv", b"a,b\n1,2\n"),
            Blob(data=b"{}", filename="x.json", mimetype="application/json"),
            Blob(path=source, mimetype="application/pdf"),
            Blob(stream=io.BytesIO(b"streamed" * 10), filename="s.bin"),
        ],
    )
    blobs = store.get_blobs("k")
    assert blobs is not None
    assert [b.read_bytes() for b in blobs] == [
        b"raw bytes",
        b"a,b\n1,2\n",
        b"{}",
        b"%PDF" * 1000,
        b"streamed" * 10,
    ]
    assert [b.filename for b in blobs] == [None, "data.csv", "x.json", "report.pdf", "s.bin"]
    assert [b.mimetype for b in blobs] == [None, "text/csv", "application/json", "application/pdf", None]
    assert blobs[3].length == 4000
    with blobs[1].open() as handle:
        assert handle.read(3) == b"a,b"
    assert store.get_size("k") == sum(b.length or 0 for b in blobs)
    assert store.storage_size() == store.get_size("k")
    assert store.get_blobs("missing") is None


def test_put_blobs_replaces_and_remove_deletes_the_files(store: TransientStore) -> None:
    store.put_blobs("k", [b"one", b"two"])
    first = files(store)
    assert len(first) == 2
    store.put_blobs("k", [b"three!"])
    assert len(files(store)) == 1
    assert not set(first) & set(files(store))
    assert store.storage_size() == 6
    store.put_parameter("k", "p", 1)
    store.remove("k")
    assert not store.exists("k")
    assert files(store) == []
    assert store.storage_size() == 0
    store.remove("k")  # removing twice is fine


def test_release_keeps_the_entry_for_the_second_level_ttl(make_store: Callable[..., TransientStore]) -> None:
    store = make_store(first_level_ttl=3600, second_level_ttl=0.5)
    store.put_blobs("k", [b"data"])
    store.put_parameter("other", "p", 1)
    store.release("k")
    assert store.exists("k")
    assert store.get_blobs("k") is not None
    assert wait_for(lambda: not store.exists("k"))
    assert store.exists("other")
    assert len(files(store)) == 1  # the file outlives its entry until a GC
    stats = store.gc()
    assert stats.files_deleted == 1
    assert files(store) == []
    assert store.storage_size() == 0


def test_entries_expire_after_the_first_level_ttl(make_store: Callable[..., TransientStore]) -> None:
    store = make_store(first_level_ttl=0.5, second_level_ttl=0.2)
    store.put_parameter("k", "p", "v")
    assert store.get_parameter("k", "p") == "v"
    assert wait_for(lambda: not store.exists("k"))


def test_absolute_limit_refuses_a_put_and_stores_nothing(make_store: Callable[..., TransientStore]) -> None:
    store = make_store(absolute_max_size_mb=1)
    store.put_blobs("a", [b"x" * (MB // 2)])
    store.put_parameter("b", "p", 1)
    full = r"'test' is full.*'b'.*absolute_max_size_mb \(1 MB\)"
    with pytest.raises(StorageLimitExceededError, match=full):
        store.put_blobs("b", [b"y" * (MB // 4), b"z" * (MB // 2)])
    assert TransientStoreFullError is StorageLimitExceededError
    assert store.get_blobs("b") == []
    assert store.get_parameter("b", "p") == 1
    assert len(files(store)) == 1  # no half-written or temporary file left
    assert store.storage_size() == MB // 2
    store.put_blobs("a", [b"x" * (MB - 10)])  # replacing a's blobs frees their room first
    assert store.storage_size() == MB - 10


def test_absolute_limit_counts_again_after_a_gc(make_store: Callable[..., TransientStore]) -> None:
    store = make_store(absolute_max_size_mb=1, first_level_ttl=3600, second_level_ttl=0.2)
    store.put_blobs("a", [b"x" * (MB - 100)])
    store.release("a")
    assert wait_for(lambda: not store.exists("a"))
    store.put_blobs("b", [b"y" * (MB // 2)])  # the put runs a GC, which forgets the expired entry
    assert store.storage_size() == MB // 2
    assert len(files(store)) == 1


def test_release_above_target_removes_at_once(make_store: Callable[..., TransientStore]) -> None:
    store = make_store(target_max_size_mb=1)
    store.put_blobs("a", [b"x" * MB, b"x"])
    store.put_blobs("b", [b"y" * 10])
    store.release("a")
    assert not store.exists("a")
    assert store.storage_size() == 10
    store.release("b")  # now under target: kept for the second-level TTL
    assert store.exists("b")


def test_gc_evicts_released_entries_above_target_oldest_first(
    make_store: Callable[..., TransientStore],
) -> None:
    store = make_store(target_max_size_mb=1)
    for key in ("r1", "r2"):
        store.put_blobs(key, [key.encode() * (MB // 4)])  # 0.5 MB each
        store.release(key)  # the store is at or under target: the entry is kept, released
    assert store.exists("r1")
    assert store.exists("r2")
    store.put_blobs("busy", [b"b" * (MB // 2)])  # 1.5 MB in all, above target
    stats = store.gc()
    assert stats.evicted == 1
    assert not store.exists("r1")  # the oldest released entry goes first
    assert store.exists("r2")
    assert store.exists("busy")  # entries in use are never evicted
    assert stats.storage_size == MB
    assert store.storage_size() == MB
    assert len(files(store)) == 2


def test_gc_deletes_orphan_files_but_spares_young_ones(
    make_store: Callable[..., TransientStore], store: TransientStore
) -> None:
    store.put_blobs("k", [b"kept"])
    orphan = store.blob_dir / "0123456789abcdef"
    orphan.write_bytes(b"orphan")
    stats = store.gc()
    assert stats.files_deleted == 1
    assert stats.bytes_deleted == 6
    assert not orphan.exists()
    patient = make_store(orphan_grace_s=3600)
    orphan.write_bytes(b"young")
    assert patient.gc().files_deleted == 0
    assert orphan.exists()
    assert store.get_blobs("k") is not None


def test_concurrent_parameter_writers_lose_nothing(store: TransientStore) -> None:
    def writer(n: int) -> None:
        for i in range(20):
            store.put_parameter("k", f"w{n}-{i}", i)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    params = store.get_parameters("k")
    assert params is not None
    assert len(params) == 80


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.put_blobs("k", [1.5]), "blob 0 must be bytes"),
        (lambda s: s.put_blobs("k", b"not a list"), "must be a list of blobs"),
        (lambda s: s.put_blobs("k", [b"ok", Blob()]), "blob 1 must have exactly one of data, path or stream"),
        (lambda s: s.put_parameter("k", "p", object()), "not JSON-serializable"),
        (lambda s: s.put_parameters("k", {1: "x"}), "parameter names must be non-empty str"),
        (lambda s: s.put_parameter("", "p", 1), "entry key must be a non-empty str"),
        (lambda s: s.put_parameter("x" * 2000, "p", 1), "too long"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    store: TransientStore, call: Callable[[TransientStore], object], message: str
) -> None:
    store.put_blobs("k", [b"before"])
    store.put_parameter("k", "p", "v")
    with pytest.raises(TransientStoreError, match=message):
        call(store)
    blobs = store.get_blobs("k")
    assert blobs is not None
    assert [b.read_bytes() for b in blobs] == [b"before"]
    assert store.get_parameters("k") == {"p": "v"}
    assert len(files(store)) == 1


def test_bad_settings_are_refused(kv: KeyValueStore, tmp_path: Path) -> None:
    with pytest.raises(TransientStoreError, match="first_level_ttl must be a positive number"):
        TransientStore("x", kv, tmp_path, first_level_ttl=0)
    with pytest.raises(TransientStoreError, match="absolute_max_size_mb must be a number"):
        TransientStore("x", kv, tmp_path, absolute_max_size_mb="big")  # type: ignore[arg-type]


def test_two_stores_on_one_kv_and_directory_see_the_same_entries(
    make_store: Callable[..., TransientStore],
) -> None:
    node1, node2 = make_store(), make_store()
    node1.put_blobs("k", [("a.txt", "text/plain", b"shared")])
    node1.set_completed("k", True)
    blobs = node2.get_blobs("k")
    assert blobs is not None
    assert blobs[0].read_bytes() == b"shared"
    assert node2.is_completed("k")
    node2.remove("k")
    assert not node1.exists("k")
