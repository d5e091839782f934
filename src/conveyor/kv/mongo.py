"""``mongodb://host/db``: key-value stores in MongoDB (Nuxeo's ``MongoDBKeyValueStore``).

One collection per store, ``kv.<name>`` (``?collection=`` changes the ``kv`` part), of documents
``{_id: key, v: Binary, ttl: Date}``. A TTL index on ``ttl`` lets the server delete expired
documents, but its monitor runs only now and then, so every read also filters them out.
Compare-and-set is a filtered update, a filtered delete or an insert that the ``_id`` index keeps
unique; ``add_and_get`` is a compare-and-set loop (values are bytes, as everywhere).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pymongo
from bson.binary import Binary
from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError

from conveyor.errors import BackendUnavailableError, ConfigurationError, KeyValueError
from conveyor.kv.api import KeyValueStore
from conveyor.registry import redact_url

__all__ = ["MongoKeyValueStore"]

DEFAULT_COLLECTION = "kv"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _live(now: dt.datetime) -> dict[str, Any]:
    return {"$or": [{"ttl": None}, {"ttl": {"$gt": now}}]}


class MongoKeyValueStore(KeyValueStore):
    """A named key-value store in a MongoDB collection."""

    def __init__(self, name: str, client: Any, database: str, collection: str, shown_url: str) -> None:
        super().__init__(name)
        self._client = client
        self._shown = shown_url
        self._coll = client[database][f"{collection}.{self.name}"]
        self._guard("create index", lambda: self._coll.create_index("ttl", expireAfterSeconds=0))

    @classmethod
    def from_url(cls, url: str, name: str = "default", **options: Any) -> MongoKeyValueStore:
        """Open the store ``name`` in the database of ``url`` (``?collection=`` sets the prefix)."""
        shown = redact_url(url)
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        collection = str(options.pop("collection", query.pop("collection", DEFAULT_COLLECTION)))
        database = parts.path.strip("/")
        if not database:
            raise ConfigurationError(f"MongoDB URL {shown!r} names no database: use mongodb://host/db")
        clean = parts._replace(query=urlencode(query)).geturl()
        if "serverselectiontimeoutms" not in {k.lower() for k in query}:
            options.setdefault("serverSelectionTimeoutMS", 10000)
        options.setdefault("tz_aware", True)
        try:
            client: Any = pymongo.MongoClient(clean, **options)
        except pymongo.errors.ConfigurationError as exc:
            raise ConfigurationError(f"invalid MongoDB URL {shown!r}: {exc}") from exc
        try:
            client.admin.command("ping")
            return cls(name, client, database, collection, shown)
        except BaseException as exc:
            client.close()
            if isinstance(exc, PyMongoError):
                raise BackendUnavailableError(f"cannot reach MongoDB at {shown!r}: {exc}") from exc
            raise

    def close(self) -> None:
        """Close this store's client."""
        self._client.close()

    def _guard(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except ConnectionFailure as exc:
            message = f"MongoDB at {self._shown!r} unreachable during {what}: {exc}"
            raise BackendUnavailableError(message) from exc
        except DuplicateKeyError:
            raise
        except PyMongoError as exc:
            raise KeyValueError(f"MongoDB {what} failed on store {self.name!r}: {exc}") from exc

    @staticmethod
    def _doc_value(doc: dict[str, Any] | None) -> bytes | None:
        return None if doc is None else bytes(doc["v"])

    def _put(self, key: str, value: bytes | None, ttl: float | None) -> None:
        if value is None:
            self._guard("delete", lambda: self._coll.delete_one({"_id": key}))
            return
        doc: dict[str, Any] = {"_id": key, "v": Binary(value)}
        if ttl is not None:
            doc["ttl"] = _now() + dt.timedelta(seconds=ttl)
        self._guard("put", lambda: self._coll.replace_one({"_id": key}, doc, upsert=True))

    def _get(self, key: str) -> bytes | None:
        doc = self._guard("get", lambda: self._coll.find_one({"_id": key, **_live(_now())}, {"v": 1}))
        return self._doc_value(doc)

    def _get_many(self, keys: list[str]) -> dict[str, bytes]:
        query = {"_id": {"$in": keys}, **_live(_now())}
        docs = self._guard("get_many", lambda: list(self._coll.find(query, {"v": 1})))
        return {d["_id"]: bytes(d["v"]) for d in docs}

    def _set_ttl(self, key: str, ttl: float | None) -> bool:
        now = _now()
        change: dict[str, Any] = (
            {"$unset": {"ttl": ""}} if ttl is None else {"$set": {"ttl": now + dt.timedelta(seconds=ttl)}}
        )
        result = self._guard("set_ttl", lambda: self._coll.update_one({"_id": key, **_live(now)}, change))
        return bool(result.matched_count)

    def _compare_and_set(
        self, key: str, expected: bytes | None, value: bytes | None, ttl: float | None
    ) -> bool:
        now = _now()
        doc: dict[str, Any] = {"_id": key, "v": Binary(b"" if value is None else value)}
        if ttl is not None:
            doc["ttl"] = now + dt.timedelta(seconds=ttl)
        if expected is not None:
            match = {"_id": key, "v": Binary(expected), **_live(now)}
            if value is None:
                deleted = self._guard("compare_and_set", lambda: self._coll.delete_one(match))
                return bool(deleted.deleted_count)
            replaced = self._guard("compare_and_set", lambda: self._coll.replace_one(match, doc))
            return bool(replaced.matched_count)
        # expected absent: an expired document counts as absent and may be replaced
        dead = {"_id": key, "ttl": {"$lte": now}}
        if value is None:
            return self._get(key) is None
        while True:
            try:
                self._guard("compare_and_set", lambda: self._coll.insert_one(doc))
                return True
            except DuplicateKeyError:
                replaced = self._guard("compare_and_set", lambda: self._coll.replace_one(dead, doc))
                if replaced.matched_count:
                    return True
                if self._get(key) is not None:
                    return False
                # it vanished between our two calls: try the insert again

    def _add_and_get(self, key: str, delta: int) -> int:
        while True:
            current = self._get(key)
            raw = self._added(current, key, delta)
            if current is None:
                if self._compare_and_set(key, None, raw, None):
                    return int(raw)
                continue
            change: dict[str, Any] = {"$set": {"v": Binary(raw)}}  # keeps the ttl
            match = {"_id": key, "v": Binary(current), **_live(_now())}
            result = self._guard("add_and_get", lambda m=match, c=change: self._coll.update_one(m, c))
            if result.matched_count:
                return int(raw)

    def _keys(self, prefix: str) -> set[str]:
        query: dict[str, Any] = _live(_now())
        if prefix:
            query = {"_id": {"$regex": "^" + re.escape(prefix)}, **query}
        docs = self._guard("keys", lambda: list(self._coll.find(query, {"_id": 1})))
        return {d["_id"] for d in docs}
