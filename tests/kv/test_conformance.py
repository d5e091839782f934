"""One behaviour, every backend: the key-value store contract run on memory, SQLite, PostgreSQL,
MariaDB, Redis and MongoDB (the last four against real servers, see ``tests/services.py``)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor.errors import ConveyorError, KeyValueError
from conveyor.kv import MAX_KEY_BYTES, KeyValueStore, open_kv_store

BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("mongodb", id="mongodb", marks=pytest.mark.mongodb),
]


@pytest.fixture(params=BACKENDS)
def kv_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of one backend (servers from the session fixtures)."""
    backend: str = request.param
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/kv.db"
    url: str = request.getfixturevalue(f"{backend}_url")
    return url


@pytest.fixture
def open_store(kv_url: str) -> Iterator[Callable[[str], KeyValueStore]]:
    """Opens stores on the backend under test, closed at the end of the test."""
    opened: list[KeyValueStore] = []

    def opener(name: str) -> KeyValueStore:
        store = open_kv_store(kv_url, name)
        opened.append(store)
        return store

    yield opener
    for store in opened:
        store.close()


@pytest.fixture
def kv(open_store: Callable[[str], KeyValueStore], unique: str) -> KeyValueStore:
    """A store with a name unique to this test."""
    return open_store(unique)


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``check`` until true or ``timeout`` seconds pass; its last result."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


# --- types ------------------------------------------------------------------------------------


def test_bytes_str_and_int_values_round_trip(kv: KeyValueStore) -> None:
    kv.put("b", b"\x00\xffraw")
    kv.put("s", "héllo ✓")
    kv.put("i", -42)
    assert kv.get("b") == b"\x00\xffraw"
    assert kv.get_str("s") == "héllo ✓"
    assert kv.get("s") == "héllo ✓".encode()
    assert kv.get_int("i") == -42
    assert kv.get("i") == b"-42"
    assert kv.get_str("i") == "-42"
    assert kv.get("missing") is None
    assert kv.get_str("missing") is None
    assert kv.get_int("missing") is None
    kv.put("empty", b"")
    assert kv.get("empty") == b""


def test_put_replaces_and_none_deletes(kv: KeyValueStore) -> None:
    kv.put("k", "one")
    kv.put("k", "two")
    assert kv.get_str("k") == "two"
    kv.put("k", None)
    assert kv.get("k") is None
    kv.put("never-there", None)
    assert kv.get("never-there") is None


def test_get_many_returns_only_present_keys(kv: KeyValueStore) -> None:
    for i in range(10):
        kv.put(f"m{i}", str(i))
    found = kv.get_many([f"m{i}" for i in range(0, 20, 2)])
    assert found == {f"m{i}": str(i).encode() for i in range(0, 10, 2)}
    assert kv.get_many([]) == {}


def test_get_str_and_get_int_refuse_values_of_another_kind(kv: KeyValueStore) -> None:
    kv.put("bin", b"\xff\xfe")
    kv.put("text", "twelve")
    with pytest.raises(KeyValueError, match=r"'bin'.*not UTF-8"):
        kv.get_str("bin")
    with pytest.raises(KeyValueError, match=r"'text'.*not an integer"):
        kv.get_int("text")


def test_stores_of_different_names_are_separate_namespaces(
    open_store: Callable[[str], KeyValueStore], unique: str
) -> None:
    a, b = open_store(unique + "a"), open_store(unique + "b")
    a.put("k", "in a")
    assert b.get("k") is None
    assert b.keys() == set()
    b.put("k", "in b")
    assert a.get_str("k") == "in a"
    again = open_store(unique + "a")
    assert again.get_str("k") == "in a"


# --- ttl --------------------------------------------------------------------------------------


def test_entries_expire_after_their_ttl(kv: KeyValueStore) -> None:
    kv.put("short", "v", ttl=1)
    kv.put("long", "v", ttl=3600)
    kv.put("forever", "v")
    assert kv.get_str("short") == "v"
    assert wait_for(lambda: kv.get("short") is None)
    assert kv.get_many(["short", "long"]) == {"long": b"v"}
    assert kv.keys() == {"long", "forever"}
    assert not kv.set_ttl("short", 10)


def test_set_ttl_sets_and_removes_expiry(kv: KeyValueStore) -> None:
    kv.put("a", "v")
    assert kv.set_ttl("a", 0.5)
    assert wait_for(lambda: kv.get("a") is None)
    kv.put("b", "v", ttl=0.5)
    assert kv.set_ttl("b", None)
    kv.put("c", "v", ttl=0.5)
    assert wait_for(lambda: kv.get("c") is None)
    assert kv.get_str("b") == "v"
    assert not kv.set_ttl("missing", 5)


def test_an_expired_key_is_absent_for_compare_and_set_and_counts_from_zero(kv: KeyValueStore) -> None:
    kv.put("cas", "old", ttl=0.3)
    kv.put("n", 41, ttl=0.3)
    assert wait_for(lambda: kv.get("cas") is None and kv.get("n") is None)
    assert not kv.compare_and_set("cas", "old", "new")
    assert not kv.compare_and_set("cas", "old", None)
    assert kv.compare_and_set("cas", None, "new")
    assert kv.add_and_get("n", 1) == 1


# --- compare-and-set and counters -------------------------------------------------------------


def test_compare_and_set_semantics(kv: KeyValueStore) -> None:
    assert kv.compare_and_set("k", None, None)  # absent, stays absent
    assert kv.compare_and_set("k", None, "v1")  # absent -> v1
    assert not kv.compare_and_set("k", None, "v2")  # present: "only if absent" fails
    assert not kv.compare_and_set("k", "nope", "v2")
    assert kv.get_str("k") == "v1"
    assert kv.compare_and_set("k", "v1", "v1")  # setting the same value is a swap too
    assert kv.compare_and_set("k", "v1", b"v2")  # str and bytes compare by their bytes
    assert kv.compare_and_set("k", b"v2", 7)
    assert kv.compare_and_set("k", "7", "v3", ttl=0.3)
    assert not kv.compare_and_set("k", None, None)
    assert kv.compare_and_set("k", "v3", None)  # delete
    assert kv.get("k") is None
    assert kv.compare_and_set("t", None, "x", ttl=0.3)
    assert wait_for(lambda: kv.get("t") is None)


def test_add_and_get_counts_from_zero_and_keeps_the_ttl(kv: KeyValueStore) -> None:
    assert kv.add_and_get("n", 5) == 5
    assert kv.add_and_get("n", -7) == -2
    assert kv.get_int("n") == -2
    kv.put("m", 10, ttl=0.5)
    assert kv.add_and_get("m", 1) == 11
    assert wait_for(lambda: kv.get("m") is None)


def test_add_and_get_on_a_non_integer_is_a_clear_error(kv: KeyValueStore) -> None:
    kv.put("text", "abc")
    kv.put("float", "1.5")
    for key in ("text", "float"):
        with pytest.raises(KeyValueError, match=f"'{key}'.*not an integer"):
            kv.add_and_get(key, 1)
    assert kv.get_str("text") == "abc"
    assert kv.get_str("float") == "1.5"
    kv.put("big", 2**63 - 1)
    with pytest.raises(KeyValueError, match="64"):
        kv.add_and_get("big", 1)
    assert kv.get_int("big") == 2**63 - 1


def test_concurrent_add_and_get_is_exact(kv: KeyValueStore) -> None:
    threads, rounds = 8, 50
    seen: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = [kv.add_and_get("counter", 1) for _ in range(rounds)]
        with lock:
            seen.extend(mine)

    run_threads(worker, threads)
    assert kv.get_int("counter") == threads * rounds
    assert sorted(seen) == list(range(1, threads * rounds + 1))  # every value handed out once


def test_concurrent_compare_and_set_loops_are_exact(kv: KeyValueStore) -> None:
    threads, rounds = 8, 50

    def worker() -> None:
        for _ in range(rounds):
            while True:
                current = kv.get("counter")
                new = (0 if current is None else int(current)) + 1
                if kv.compare_and_set("counter", current, new):
                    break

    run_threads(worker, threads)
    assert kv.get_int("counter") == threads * rounds


def run_threads(target: Callable[[], None], count: int) -> None:
    """Run ``target`` in ``count`` threads at once; re-raise the first failure."""
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=guarded) for _ in range(count)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    if errors:
        raise errors[0]


# --- keys, sizes, unicode ---------------------------------------------------------------------


def test_keys_by_prefix_over_many_keys(kv: KeyValueStore) -> None:
    for i in range(1000):
        kv.put(f"{'odd' if i % 2 else 'even'}:{i:04d}", i)
    kv.put("od", "not odd:")
    evens = kv.keys("even:")
    assert len(evens) == 500
    assert evens == {f"even:{i:04d}" for i in range(0, 1000, 2)}
    assert len(kv.keys("odd:")) == 500
    assert len(kv.keys()) == 1001
    assert kv.keys("odd:000") == {f"odd:{i:04d}" for i in range(1, 10, 2)}
    assert kv.keys("zzz") == set()
    assert kv.keys("ODD:") == set()  # prefixes are case-sensitive


def test_keys_treats_pattern_characters_literally(kv: KeyValueStore) -> None:
    for key in ("a*b", "a%b", "a_b", "a?b", "a[b]", "a.b", "axb"):
        kv.put(key, "v")
    assert kv.keys("a*") == {"a*b"}
    assert kv.keys("a%") == {"a%b"}
    assert kv.keys("a_") == {"a_b"}
    assert kv.keys("a?") == {"a?b"}
    assert kv.keys("a[") == {"a[b]"}
    assert kv.keys("a.") == {"a.b"}


def test_large_values(kv: KeyValueStore) -> None:
    big = bytes(range(256)) * (5 * 1024 * 1024 // 256)
    kv.put("big", big)
    assert kv.get("big") == big
    assert kv.compare_and_set("big", big, b"small")
    assert kv.get("big") == b"small"


def test_unicode_keys(kv: KeyValueStore) -> None:
    keys = ["clé", "ключ", "键", "🔑/emoji", "a\u0301", "\u00e1"]  # the last two differ in bytes
    for i, key in enumerate(keys):
        kv.put(key, i)
    for i, key in enumerate(keys):
        assert kv.get_int(key) == i
    assert kv.keys() == set(keys)
    assert kv.keys("🔑") == {"🔑/emoji"}
    assert kv.get_many(keys) == {k: str(i).encode() for i, k in enumerate(keys)}
    longest = "é" * (MAX_KEY_BYTES // 2)
    kv.put(longest, "fits")
    assert kv.get_str(longest) == "fits"


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda kv: kv.put("k", 1.5), "must be bytes, str, int or None, got float"),
        (lambda kv: kv.put("k", ["x"]), "got list"),
        (lambda kv: kv.put("k", True), "got bool"),
        (lambda kv: kv.put("k", 2**64), "64 bits"),
        (lambda kv: kv.put("x" * (MAX_KEY_BYTES + 1), "v"), "key too long: 1025 bytes"),
        (lambda kv: kv.put("é" * 513, "v"), "key too long: 1026 bytes"),
        (lambda kv: kv.put("", "v"), "key must not be empty"),
        (lambda kv: kv.put(b"k", "v"), "key must be a str, got bytes"),
        (lambda kv: kv.put("a\x00b", "v"), "NUL"),
        (lambda kv: kv.put("k", "v", ttl=-1), "ttl for key 'k' must be a positive number"),
        (lambda kv: kv.put("k", "v", ttl=0), "must be a positive number"),
        (lambda kv: kv.put("k", "v", ttl="10"), "must be a number of seconds"),
        (lambda kv: kv.set_ttl("k", -5), "must be a positive number"),
        (lambda kv: kv.compare_and_set("k", "v0", 3.0), "got float"),
        (lambda kv: kv.compare_and_set("k", "v0", "v", ttl=-1), "positive"),
        (lambda kv: kv.add_and_get("k", 1.0), "delta for key 'k' must be an int"),
        (lambda kv: kv.get("x" * 2000), "key too long"),
        (lambda kv: kv.keys(5), "prefix must be a str"),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(
    kv: KeyValueStore, call: Callable[[KeyValueStore], object], message: str
) -> None:
    kv.put("k", "v0", ttl=3600)
    with pytest.raises(KeyValueError, match=message) as info:
        call(kv)
    assert isinstance(info.value, ValueError | TypeError)
    assert kv.get_str("k") == "v0"
    assert kv.keys() == {"k"}


def test_a_bad_store_name_is_refused(kv_url: str) -> None:
    with pytest.raises(ConveyorError, match="invalid key-value store name"):
        open_kv_store(kv_url, "no spaces/allowed")


def test_context_manager_closes(kv_url: str) -> None:
    name = "t" + uuid.uuid4().hex[:10]
    with open_kv_store(kv_url, name) as store:
        store.put("k", "v")
    with open_kv_store(kv_url, name) as store:
        assert store.get_str("k") == "v"
