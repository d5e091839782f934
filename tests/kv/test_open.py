"""Opening stores by URL, bad URLs and unreachable servers, and SQLite shared by processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conveyor.errors import BackendUnavailableError, ConfigurationError
from conveyor.kv import kv_registry, open_kv_store
from conveyor.kv.memory import MemoryKeyValueStore
from conveyor.kv.sql import SQLKeyValueStore


def test_every_builtin_scheme_is_registered() -> None:
    assert {"memory", "sqlite", "postgresql", "mysql", "redis", "mongodb"} <= set(kv_registry.schemes())


def test_memory_stores_of_one_name_share_data_in_the_process(unique: str) -> None:
    a = open_kv_store("memory://", unique)
    b = open_kv_store("memory://", unique)
    other_space = open_kv_store("memory://elsewhere", unique)
    a.put("k", "v")
    assert isinstance(b, MemoryKeyValueStore)
    assert b.get_str("k") == "v"
    assert other_space.get("k") is None


def test_unknown_scheme_names_the_url() -> None:
    with pytest.raises(ConfigurationError, match="unknown kv backend scheme 'nosuch'"):
        open_kv_store("nosuch://x")


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="use memory://"):
        open_kv_store("sqlite://")


def test_sql_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="invalid table name"):
        open_kv_store(f"sqlite:///{tmp_path}/kv.db?table=bad-name")
    with pytest.raises(ConfigurationError, match="unknown SQL key-value store options"):
        open_kv_store(f"sqlite:///{tmp_path}/kv.db", colour="blue")


def test_sqlite_table_and_purge_settings_from_the_url(tmp_path: Path, unique: str) -> None:
    url = f"sqlite:///{tmp_path}/kv.db?table=my_kv&purge_interval=0"
    with open_kv_store(url, unique) as store:
        assert isinstance(store, SQLKeyValueStore)
        store.put("gone", "v", ttl=0.05)
        store.put("kept", "v")
    import sqlite3
    import time

    time.sleep(0.1)
    with open_kv_store(url, unique) as store:
        store.put("trigger", "purge")  # a write purges expired rows (interval 0)
    with sqlite3.connect(tmp_path / "kv.db") as conn:
        rows = {bytes(r[0]).decode() for r in conn.execute("SELECT k FROM my_kv")}
    assert rows == {"kept", "trigger"}


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:s3cret@127.0.0.1:1/test",
        "mysql://root:s3cret@127.0.0.1:1/test",
        "redis://:s3cret@127.0.0.1:1/0",
        "mongodb://u:s3cret@127.0.0.1:1/db?serverSelectionTimeoutMS=300",
    ],
)
def test_unreachable_server_names_the_url_without_its_password(url: str) -> None:
    with pytest.raises(BackendUnavailableError, match=r"127\.0\.0\.1:1") as info:
        open_kv_store(url, "x")
    assert "s3cret" not in str(info.value)
    assert "***" in str(info.value)


def test_mongodb_url_without_database_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="names no database"):
        open_kv_store("mongodb://127.0.0.1:1", "x")


_WORKER = textwrap.dedent(
    """
    import sys
    from conveyor.kv import open_kv_store
    store = open_kv_store(sys.argv[1], sys.argv[2])
    for i in range(int(sys.argv[3])):
        store.add_and_get("counter", 1)
        while True:
            raw = store.get("cas")
            if store.compare_and_set("cas", raw, (0 if raw is None else int(raw)) + 1):
                break
    store.close()
    """
)


def test_several_processes_share_one_sqlite_file_exactly(tmp_path: Path, unique: str) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    processes, rounds = 4, 40
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, url, unique, str(rounds)], stderr=subprocess.PIPE)
        for _ in range(processes)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    with open_kv_store(url, unique) as store:
        assert store.get_int("counter") == processes * rounds
        assert store.get_int("cas") == processes * rounds
