"""SQL key-value stores through SQLAlchemy 2: SQLite (the embedded default), PostgreSQL, MariaDB.

One table (``conveyor_kv`` unless ``?table=`` says otherwise) holds every store, the store name
being part of the primary key, as Nuxeo's ``SQLKeyValueStore`` namespaces do. Keys are kept as
their UTF-8 bytes so prefix scans are byte ranges that use the primary-key index on every database.
Expiry is an epoch-seconds column: reads filter expired rows out, and expired rows of the store are
deleted at most every ``purge_interval`` seconds (60 by default) by whichever call comes next
(no background thread). ``put``, delete, ``set_ttl`` and most compare-and-sets are one statement
each (an upsert, or an ``UPDATE``/``DELETE``/``INSERT … ON CONFLICT`` conditioned on the current
value, whose row count says whether it swapped), atomic on its own. Add-and-get, and the
compare-and-sets one statement cannot decide, lock the row (``SELECT … FOR UPDATE``; ``BEGIN
IMMEDIATE`` on SQLite) and retry on a lost insert race or a deadlock.

The statements are built once per table and dialect (``conveyor.kv.sql_statements``) and the hot
ones run on the pooled driver connection (``conveyor.kv.sql_driver``). SQLite files are opened in
WAL mode with a busy timeout, so several processes can share one file.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError

from conveyor.errors import BackendUnavailableError, ConfigurationError, KeyValueError
from conveyor.kv.api import MAX_KEY_BYTES, MAX_NAME_LENGTH, KeyValueStore
from conveyor.kv.sql_driver import DriverCursor, DriverRunner
from conveyor.kv.sql_statements import Compiled, Statements, compile_for, select_many
from conveyor.registry import redact_url
from conveyor.sql_setup import configure_sqlite, create_table, sqlite_storage_error

__all__ = ["SQLKeyValueStore"]

T = TypeVar("T")

DEFAULT_TABLE = "conveyor_kv"
DEFAULT_PURGE_INTERVAL = 60.0
_MAX_ATTEMPTS = 100
_IN_CHUNK = 500
_TABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg", "mysql": "mysql+pymysql",
            "mariadb": "mariadb+pymysql", "sqlite": "sqlite+pysqlite"}  # fmt: skip
# Errors worth retrying: MySQL deadlock / lock wait timeout, PostgreSQL serialization / deadlock.
_MYSQL_RETRY_CODES = {1213, 1205}
_PG_RETRY_STATES = {"40001", "40P01"}


def _table(metadata: sa.MetaData, name: str) -> sa.Table:
    key_type = sa.LargeBinary(MAX_KEY_BYTES).with_variant(mysql.VARBINARY(MAX_KEY_BYTES), "mysql", "mariadb")
    value_type = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
    return sa.Table(
        name,
        metadata,
        sa.Column("store", sa.String(MAX_NAME_LENGTH), primary_key=True),
        sa.Column("k", key_type, primary_key=True),
        sa.Column("v", value_type, nullable=False),
        sa.Column("expires", sa.Double(), nullable=True, index=True),
    )


class _SharedEngine:
    """One engine (and pool) per database URL and table, shared by the stores of this process."""

    def __init__(self, engine: Engine, table: sa.Table) -> None:
        self.engine = engine
        self.table = table
        self.statements = Statements.build(table, engine.dialect.name)
        self.sql = {
            name: compile_for(statement, engine.dialect)
            for name, statement in vars(self.statements).items()
            if statement is not None
        }
        self.select_many: dict[int, Compiled] = {}
        self.runner = DriverRunner(engine)
        self.users = 0


_ENGINES: dict[tuple[str, str], _SharedEngine] = {}
_ENGINES_LOCK = threading.Lock()


def _sqlalchemy_url(url: str) -> tuple[URL, dict[str, Any]]:
    """The SQLAlchemy URL with our driver chosen, and our own settings taken out of its query."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"invalid SQL URL {redact_url(url)!r}: {exc}") from exc
    backend, _, driver = parsed.drivername.partition("+")
    if not driver:
        parsed = parsed.set(drivername=_DRIVERS.get(backend, backend))
    query = dict(parsed.query)
    ours: dict[str, Any] = {k: query.pop(k) for k in ("table", "purge_interval") if k in query}
    if parsed.get_backend_name() in ("mysql", "mariadb"):
        query.setdefault("charset", "utf8mb4")
    return parsed.set(query=query), ours


def _create_engine(db_url: URL, shown: str) -> Engine:
    backend = db_url.get_backend_name()
    kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        database = db_url.database or ""
        if database in ("", ":memory:") or database.startswith("file::memory:"):
            raise ConfigurationError(
                f"in-memory SQLite cannot back a shared key-value store ({shown!r}); use memory://"
            )
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
        kwargs["connect_args"] = {"connect_timeout": 10}
        if backend in ("mysql", "mariadb"):
            kwargs["isolation_level"] = "READ COMMITTED"
    try:
        engine = sa.create_engine(db_url, **kwargs)
    except NoSuchModuleError as exc:
        raise ConfigurationError(f"unsupported SQL database in {shown!r}: {exc}") from exc
    if backend == "sqlite":
        configure_sqlite(engine)
    return engine


def _is_retriable(orig: BaseException | None, integrity: bool) -> bool:
    """Whether the driver error ``orig`` (``integrity``: a constraint violation) is worth a retry."""
    if integrity:
        return True
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _MYSQL_RETRY_CODES:
        return True
    if getattr(orig, "sqlstate", None) in _PG_RETRY_STATES:
        return True
    return "database is locked" in str(orig)


def _next_prefix(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with ``prefix`` (None: none)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


class SQLKeyValueStore(KeyValueStore):
    """A named key-value store in a SQL table (SQLite, PostgreSQL or MariaDB/MySQL)."""

    def __init__(
        self,
        name: str,
        shared: _SharedEngine,
        shared_key: tuple[str, str],
        shown_url: str,
        purge_interval: float = DEFAULT_PURGE_INTERVAL,
    ) -> None:
        super().__init__(name)
        self._shared = shared
        self._shared_key = shared_key
        self._engine = shared.engine
        self._t = shared.table
        self._dialect = self._engine.dialect.name
        self._shown = shown_url
        self._purge_interval = purge_interval
        self._next_purge = time.monotonic() + random.uniform(0, purge_interval)
        self._closed = False
        self._sql = shared.sql
        self._runner = shared.runner

    @classmethod
    def from_url(cls, url: str, name: str = "default", **options: Any) -> SQLKeyValueStore:
        """Open the store ``name`` in the database of ``url`` (``?table=``, ``?purge_interval=``)."""
        shown = redact_url(url)
        db_url, settings = _sqlalchemy_url(url)
        settings.update(options)
        unknown = set(settings) - {"table", "purge_interval"}
        if unknown:
            raise ConfigurationError(f"unknown SQL key-value store options {sorted(unknown)} for {shown!r}")
        table_name = str(settings.get("table", DEFAULT_TABLE))
        if not _TABLE_RE.fullmatch(table_name):
            raise ConfigurationError(f"invalid table name {table_name!r} for key-value store {shown!r}")
        try:
            purge = float(settings.get("purge_interval", DEFAULT_PURGE_INTERVAL))
        except ValueError as exc:
            raise ConfigurationError(f"purge_interval must be a number of seconds in {shown!r}") from exc
        key = (db_url.render_as_string(hide_password=False), table_name)
        with _ENGINES_LOCK:
            shared = _ENGINES.get(key)
            if shared is None:
                engine = _create_engine(db_url, shown)
                try:
                    table = _table(sa.MetaData(), table_name)
                    create_table(engine, table, shown, "key-value")
                except BaseException:
                    engine.dispose()
                    raise
                shared = _ENGINES[key] = _SharedEngine(engine, table)
            shared.users += 1
        return cls(name, shared, key, shown, purge)

    def close(self) -> None:
        """Give back this store's share of the engine (disposed when no store uses it)."""
        if self._closed:
            return
        self._closed = True
        with _ENGINES_LOCK:
            self._shared.users -= 1
            if self._shared.users <= 0:
                _ENGINES.pop(self._shared_key, None)
                self._engine.dispose()

    # --- plumbing ------------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self._engine.connect() as conn, conn.begin():
            yield conn

    def _check_open(self) -> None:
        if self._closed:
            raise KeyValueError(f"key-value store {self.name!r} on {self._shown!r} is closed")

    def _retry_pause(self, attempt: int) -> None:
        time.sleep(random.uniform(0, 0.002 * (attempt + 1)))

    def _failed(self, orig: BaseException | None) -> BackendUnavailableError:
        what = f"key-value store {self.name!r} on {self._shown!r}"
        if self._dialect == "sqlite":  # disk full or I/O error: StorageError naming the file
            storage = sqlite_storage_error(orig, what, self._engine.url.database)
            if storage is not None:
                return storage
        return BackendUnavailableError(f"{what} failed: {orig}")

    def _run(self, op: Callable[[Connection, float], T]) -> T:
        """The read ``op(conn, now)`` through SQLAlchemy, retried on lock timeouts."""
        self._check_open()
        for attempt in range(_MAX_ATTEMPTS):
            try:
                with self._tx() as conn:
                    return op(conn, time.time())
            except DBAPIError as exc:
                if _is_retriable(exc.orig, isinstance(exc, IntegrityError)) and attempt < _MAX_ATTEMPTS - 1:
                    self._retry_pause(attempt)
                    continue
                raise self._failed(exc.orig) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _run_driver(self, write: bool, op: Callable[[DriverCursor, float], T], single: bool = False) -> T:
        """``op(cursor, now)`` in a transaction on the driver, retried on insert races and deadlocks.

        ``single``: ``op`` is one write statement, atomic on its own; on SQLite it then runs in
        autocommit mode (no ``BEGIN IMMEDIATE`` … ``COMMIT`` around it).
        """
        self._check_open()
        if write:
            self._maybe_purge()
        locked = write and not single
        runner = self._runner
        for attempt in range(_MAX_ATTEMPTS):
            try:
                return runner.attempt(locked, lambda cursor: op(cursor, time.time()))
            except (runner.error, DBAPIError) as exc:  # DBAPIError: SQLAlchemy's, from the pool
                orig = exc.orig if isinstance(exc, DBAPIError) else exc
                integrity = isinstance(exc, IntegrityError | runner.integrity_error)
                if _is_retriable(orig, integrity) and attempt < _MAX_ATTEMPTS - 1:
                    self._retry_pause(attempt)
                    continue
                raise self._failed(orig) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _maybe_purge(self) -> None:
        now = time.monotonic()
        if now < self._next_purge:
            return
        self._next_purge = now + self._purge_interval
        params = {"p_store": self.name, "p_now": time.time()}
        try:
            self._runner.attempt(False, lambda cursor: cursor.rowcount(self._sql["purge"], params))
        except (self._runner.error, DBAPIError):
            pass  # purging is housekeeping: the next one will do; reads skip expired rows anyway

    def _locked_row(
        self, cursor: DriverCursor, params: dict[str, Any], now: float
    ) -> tuple[bool, bytes | None, float | None]:
        """(row exists, live value or None, expiry) with the row locked until commit."""
        row = cursor.first(self._sql["select_locked"], params)
        if row is None:
            return False, None, None
        value, expires = row
        if expires is not None and expires <= now:
            return True, None, None
        return True, bytes(value), expires

    # --- the primitives ------------------------------------------------------------------------

    def _put(self, key: str, value: bytes | None, ttl: float | None) -> None:
        sql = self._sql
        params: dict[str, Any] = {"p_store": self.name, "p_k": key.encode("utf-8"), "p_v": value}

        def op(cursor: DriverCursor, now: float) -> None:
            if value is None:
                cursor.rowcount(sql["delete"], params)
            else:
                params["p_exp"] = None if ttl is None else now + ttl
                cursor.rowcount(sql["upsert"], params)

        self._run_driver(True, op, single=True)

    def _get(self, key: str) -> bytes | None:
        params: dict[str, Any] = {"p_store": self.name, "p_k": key.encode("utf-8")}
        select_one = self._sql["select_one"]

        def op(cursor: DriverCursor, now: float) -> bytes | None:
            params["p_now"] = now
            row = cursor.first(select_one, params)
            return None if row is None else bytes(row[0])

        return self._run_driver(False, op)

    def _get_many(self, keys: list[str]) -> dict[str, bytes]:
        chunks = [
            [k.encode("utf-8") for k in keys[i : i + _IN_CHUNK]] for i in range(0, len(keys), _IN_CHUNK)
        ]

        def op(cursor: DriverCursor, now: float) -> dict[str, bytes]:
            found: dict[str, bytes] = {}
            for chunk in chunks:
                params: dict[str, Any] = {f"p_k{i}": k for i, k in enumerate(chunk)}
                params["p_store"] = self.name
                params["p_now"] = now
                for k, v in cursor.rows(self._select_many(len(chunk)), params):
                    found[bytes(k).decode("utf-8")] = bytes(v)
            return found

        return self._run_driver(False, op)

    def _select_many(self, n: int) -> Compiled:
        """The compiled query of ``n`` keys, built on first use (at most ``_IN_CHUNK`` of them)."""
        cache = self._shared.select_many
        compiled = cache.get(n)
        if compiled is None:
            compiled = cache[n] = compile_for(select_many(self._t, n), self._engine.dialect)
        return compiled

    def _set_ttl(self, key: str, ttl: float | None) -> bool:
        params: dict[str, Any] = {"p_store": self.name, "p_k": key.encode("utf-8")}
        set_ttl = self._sql["set_ttl"]

        def op(cursor: DriverCursor, now: float) -> bool:
            params["p_now"] = now
            params["p_exp"] = None if ttl is None else now + ttl
            return bool(cursor.rowcount(set_ttl, params))

        return self._run_driver(True, op, single=True)

    def _compare_and_set(
        self, key: str, expected: bytes | None, value: bytes | None, ttl: float | None
    ) -> bool:
        sql = self._sql
        k = key.encode("utf-8")
        params: dict[str, Any] = {"p_store": self.name, "p_k": k, "p_old": expected, "p_v": value}
        # One conditional statement where it can decide alone (atomic by itself, no row lock held
        # across round trips); the locked read-then-write otherwise.
        if expected is not None:
            statement: Compiled | None = sql["update_if" if value is not None else "delete_if"]
        elif value is not None:
            statement = sql.get("insert_if_absent")
        else:
            statement = None
        if statement is not None:
            single = statement

            def conditional(cursor: DriverCursor, now: float) -> bool:
                params["p_now"] = now
                params["p_exp"] = None if ttl is None else now + ttl
                return bool(cursor.rowcount(single, params))

            return self._run_driver(True, conditional, single=True)

        def op(cursor: DriverCursor, now: float) -> bool:
            exists, current, _ = self._locked_row(cursor, params, now)
            if current != expected:
                return False
            params["p_exp"] = None if ttl is None else now + ttl
            if value is None:
                if exists:
                    cursor.rowcount(sql["delete"], params)
            elif exists:
                cursor.rowcount(sql["update"], params)
            else:  # a concurrent insert makes this fail: _run_driver retries and we compare again
                cursor.rowcount(sql["insert"], params)
            return True

        return self._run_driver(True, op)

    def _add_and_get(self, key: str, delta: int) -> int:
        sql = self._sql
        params: dict[str, Any] = {"p_store": self.name, "p_k": key.encode("utf-8")}

        def op(cursor: DriverCursor, now: float) -> int:
            exists, current, expires = self._locked_row(cursor, params, now)
            params["p_v"] = raw = self._added(current, key, delta)
            params["p_exp"] = expires
            cursor.rowcount(sql["update" if exists else "insert"], params)
            return int(raw)

        return self._run_driver(True, op)

    def _keys(self, prefix: str) -> set[str]:
        t = self._t
        start = prefix.encode("utf-8")
        end = _next_prefix(start)

        def op(conn: Connection, now: float) -> set[str]:
            live = sa.or_(t.c.expires.is_(None), t.c.expires > now)
            query = sa.select(t.c.k).where(t.c.store == self.name, live)
            if start:
                query = query.where(t.c.k >= start)
            if end is not None and start:
                query = query.where(t.c.k < end)
            return {bytes(k).decode("utf-8") for k in conn.execute(query).scalars()}

        return self._run(op)
