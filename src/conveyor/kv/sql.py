"""SQL key-value stores through SQLAlchemy 2: SQLite (the embedded default), PostgreSQL, MariaDB.

One table (``conveyor_kv`` unless ``?table=`` says otherwise) holds every store, the store name
being part of the primary key, as Nuxeo's ``SQLKeyValueStore`` namespaces do. Keys are kept as
their UTF-8 bytes so prefix scans are byte ranges that use the primary-key index on every database.
Expiry is an epoch-seconds column: reads filter expired rows out, and expired rows of the store are
deleted at most every ``purge_interval`` seconds (60 by default) by whichever call comes next
(no background thread). Compare-and-set and add-and-get lock the row (``SELECT … FOR UPDATE``;
``BEGIN IMMEDIATE`` on SQLite) and retry on a lost insert race or a deadlock.

SQLite files are opened in WAL mode with a busy timeout, so several processes can share one file.
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
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError

from conveyor.errors import BackendUnavailableError, ConfigurationError, KeyValueError
from conveyor.kv.api import MAX_KEY_BYTES, MAX_NAME_LENGTH, KeyValueStore
from conveyor.registry import redact_url
from conveyor.sql_setup import configure_sqlite, create_table

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


def _is_retriable(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    orig = exc.orig
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
        t = self._t
        # The hot statements, built once (building a statement costs more than running it on SQLite).
        self._select_one = sa.select(t.c.v).where(
            t.c.store == sa.bindparam("store"),
            t.c.k == sa.bindparam("k"),
            sa.or_(t.c.expires.is_(None), t.c.expires > sa.bindparam("now", type_=sa.Double())),
        )

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
    def _tx(self, write: bool) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            if write:
                conn.execution_options(conveyor_write=True)
            with conn.begin():
                yield conn

    def _run(self, write: bool, op: Callable[[Connection, float], T]) -> T:
        """``op(conn, now)`` in a transaction, retried on insert races and deadlocks."""
        if self._closed:
            raise KeyValueError(f"key-value store {self.name!r} on {self._shown!r} is closed")
        for attempt in range(_MAX_ATTEMPTS):
            try:
                if write:
                    self._maybe_purge()
                with self._tx(write) as conn:
                    return op(conn, time.time())
            except DBAPIError as exc:
                if _is_retriable(exc) and attempt < _MAX_ATTEMPTS - 1:
                    time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
                    continue
                raise BackendUnavailableError(
                    f"key-value store {self.name!r} on {self._shown!r} failed: {exc.orig}"
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _maybe_purge(self) -> None:
        now = time.monotonic()
        if now < self._next_purge:
            return
        self._next_purge = now + self._purge_interval
        t = self._t
        with self._tx(True) as conn:
            conn.execute(sa.delete(t).where(t.c.store == self.name, t.c.expires <= time.time()))

    def _where(self, key: str) -> sa.ColumnElement[bool]:
        t = self._t
        return sa.and_(t.c.store == self.name, t.c.k == key.encode("utf-8"))

    def _live(self, now: float) -> sa.ColumnElement[bool]:
        t = self._t
        return sa.or_(t.c.expires.is_(None), t.c.expires > now)

    def _upsert(self, key: str, value: bytes, expires: float | None) -> Any:
        t = self._t
        row = {"store": self.name, "k": key.encode("utf-8"), "v": value, "expires": expires}
        if self._dialect in ("mysql", "mariadb"):
            my = mysql.insert(t).values(row)
            return my.on_duplicate_key_update(v=my.inserted.v, expires=my.inserted.expires)
        ins = (postgresql.insert(t) if self._dialect == "postgresql" else sqlite.insert(t)).values(row)
        return ins.on_conflict_do_update(
            index_elements=[t.c.store, t.c.k], set_={"v": ins.excluded.v, "expires": ins.excluded.expires}
        )

    def _locked_row(self, conn: Connection, key: str, now: float) -> tuple[bool, bytes | None, float | None]:
        """(row exists, live value or None, expiry) with the row locked until commit."""
        t = self._t
        row = conn.execute(sa.select(t.c.v, t.c.expires).where(self._where(key)).with_for_update()).first()
        if row is None:
            return False, None, None
        expires = row.expires
        if expires is not None and expires <= now:
            return True, None, None
        return True, bytes(row.v), expires

    # --- the primitives ------------------------------------------------------------------------

    def _put(self, key: str, value: bytes | None, ttl: float | None) -> None:
        t = self._t

        def op(conn: Connection, now: float) -> None:
            if value is None:
                conn.execute(sa.delete(t).where(self._where(key)))
            else:
                conn.execute(self._upsert(key, value, None if ttl is None else now + ttl))

        self._run(True, op)

    def _get(self, key: str) -> bytes | None:
        def op(conn: Connection, now: float) -> bytes | None:
            params = {"store": self.name, "k": key.encode("utf-8"), "now": now}
            value = conn.execute(self._select_one, params).scalar()
            return None if value is None else bytes(value)

        return self._run(False, op)

    def _get_many(self, keys: list[str]) -> dict[str, bytes]:
        t = self._t

        def op(conn: Connection, now: float) -> dict[str, bytes]:
            found: dict[str, bytes] = {}
            for i in range(0, len(keys), _IN_CHUNK):
                chunk = [k.encode("utf-8") for k in keys[i : i + _IN_CHUNK]]
                rows = conn.execute(
                    sa.select(t.c.k, t.c.v).where(t.c.store == self.name, t.c.k.in_(chunk), self._live(now))
                )
                for k, v in rows:
                    found[bytes(k).decode("utf-8")] = bytes(v)
            return found

        return self._run(False, op)

    def _set_ttl(self, key: str, ttl: float | None) -> bool:
        t = self._t

        def op(conn: Connection, now: float) -> bool:
            expires = None if ttl is None else now + ttl
            query = sa.update(t).where(self._where(key), self._live(now)).values(expires=expires)
            result = conn.execute(query)
            return bool(result.rowcount)

        return self._run(True, op)

    def _compare_and_set(
        self, key: str, expected: bytes | None, value: bytes | None, ttl: float | None
    ) -> bool:
        t = self._t

        def op(conn: Connection, now: float) -> bool:
            exists, current, _ = self._locked_row(conn, key, now)
            if current != expected:
                return False
            expires = None if ttl is None else now + ttl
            if value is None:
                if exists:
                    conn.execute(sa.delete(t).where(self._where(key)))
            elif exists:
                conn.execute(sa.update(t).where(self._where(key)).values(v=value, expires=expires))
            else:  # a concurrent insert makes this fail: _run retries and we compare again
                conn.execute(
                    sa.insert(t).values(store=self.name, k=key.encode("utf-8"), v=value, expires=expires)
                )
            return True

        return self._run(True, op)

    def _add_and_get(self, key: str, delta: int) -> int:
        t = self._t

        def op(conn: Connection, now: float) -> int:
            exists, current, expires = self._locked_row(conn, key, now)
            raw = self._added(current, key, delta)
            if exists:
                conn.execute(sa.update(t).where(self._where(key)).values(v=raw, expires=expires))
            else:
                conn.execute(sa.insert(t).values(store=self.name, k=key.encode("utf-8"), v=raw, expires=None))
            return int(raw)

        return self._run(True, op)

    def _keys(self, prefix: str) -> set[str]:
        t = self._t
        start = prefix.encode("utf-8")
        end = _next_prefix(start)

        def op(conn: Connection, now: float) -> set[str]:
            query = sa.select(t.c.k).where(t.c.store == self.name, self._live(now))
            if start:
                query = query.where(t.c.k >= start)
            if end is not None and start:
                query = query.where(t.c.k < end)
            return {bytes(k).decode("utf-8") for k in conn.execute(query).scalars()}

        return self._run(False, op)
