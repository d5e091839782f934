"""Schema ids for the Confluent wire format: a Schema Registry over HTTP, or a local id map.

Without a registry URL, ids come from a ``LocalSchemaRegistry``: a fixed map given by the
application (``schema_ids={3: schema}``), to which the codec's own schema is added under the next
free id (1 when the map is empty). Every process given the same map agrees on ids; nothing is
shared otherwise, so use a real registry when producers and consumers do not share configuration.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from conveyor.codec.avro.schema import Schema, fingerprint, load_schema
from conveyor.errors import BackendUnavailableError, ConfigurationError

__all__ = ["HttpSchemaRegistry", "LocalSchemaRegistry", "SchemaRegistry"]


class SchemaRegistry(Protocol):
    """Where ``avroConfluent`` gets schema ids (to write) and schemas by id (to read)."""

    def id_of(self, subject: str, schema: Schema) -> int:
        """The id of ``schema`` under ``subject``, registering it if needed."""
        ...

    def schema_of(self, schema_id: int) -> Schema | None:
        """The schema registered as ``schema_id``, or None when the registry does not know it."""
        ...


class LocalSchemaRegistry:
    """An in-process id map: ids given at creation, new schemas under the next free id."""

    def __init__(self, ids: Mapping[int, Mapping[str, Any] | str | Path] | None = None) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[int, Schema] = {}
        self._by_fp: dict[int, int] = {}
        for schema_id, schema in (ids or {}).items():
            if isinstance(schema_id, bool) or not isinstance(schema_id, int) or not 0 <= schema_id < 2**31:
                raise ConfigurationError(f"schema id must be an int in 0..2^31-1, got {schema_id!r}")
            loaded = load_schema(schema)
            self._by_id[schema_id] = loaded
            self._by_fp.setdefault(fingerprint(loaded), schema_id)

    def id_of(self, subject: str, schema: Schema) -> int:
        """The id of ``schema`` in the map (added under the next free id when absent)."""
        fp = fingerprint(schema)
        with self._lock:
            known = self._by_fp.get(fp)
            if known is not None:
                return known
            new_id = max(self._by_id, default=0) + 1
            self._by_id[new_id] = schema
            self._by_fp[fp] = new_id
            return new_id

    def schema_of(self, schema_id: int) -> Schema | None:
        """The schema mapped to ``schema_id``."""
        with self._lock:
            return self._by_id.get(schema_id)

    def __repr__(self) -> str:
        return f"LocalSchemaRegistry(ids={sorted(self._by_id)})"


class HttpSchemaRegistry:
    """A Confluent Schema Registry (first of ``urls`` that answers); answers cached per process."""

    def __init__(self, urls: str | list[str], *, timeout: float = 10.0) -> None:
        self.urls = [u.strip().rstrip("/") for u in (urls.split(",") if isinstance(urls, str) else urls)]
        self.urls = [u for u in self.urls if u]
        if not self.urls:
            raise ConfigurationError("registry_url is empty")
        for url in self.urls:
            if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                raise ConfigurationError(f"schema registry URL must be http(s)://..., got {url!r}")
        self.timeout = timeout
        self._lock = threading.Lock()
        self._ids: dict[tuple[str, int], int] = {}
        self._schemas: dict[int, Schema] = {}

    def id_of(self, subject: str, schema: Schema) -> int:
        """Registers ``schema`` under ``subject`` (idempotent on the registry side); its id."""
        key = (subject, fingerprint(schema))
        with self._lock:
            if key in self._ids:
                return self._ids[key]
        body = json.dumps({"schema": json.dumps(schema, separators=(",", ":"))}).encode()
        answer = self._call("POST", f"/subjects/{urllib.parse.quote(subject, safe='')}/versions", body)
        if not isinstance(answer, dict) or not isinstance(answer.get("id"), int):
            raise BackendUnavailableError(
                f"schema registry {self.urls[0]} answered without an id: {answer!r}"
            )
        with self._lock:
            self._ids[key] = answer["id"]
            self._schemas[answer["id"]] = schema
        return int(answer["id"])

    def schema_of(self, schema_id: int) -> Schema | None:
        """The schema with id ``schema_id`` (None on 404)."""
        with self._lock:
            if schema_id in self._schemas:
                return self._schemas[schema_id]
        answer = self._call("GET", f"/schemas/ids/{schema_id}", None)
        if answer is None:
            return None
        schema = load_schema(str(answer["schema"]))
        with self._lock:
            self._schemas[schema_id] = schema
        return schema

    def _call(self, method: str, path: str, body: bytes | None) -> Any:
        last: Exception | None = None
        for url in self.urls:
            request = urllib.request.Request(
                url + path,
                data=body,
                method=method,
                headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                exc.close()
                if exc.code == 404 and method == "GET":
                    return None
                last = exc
            except (OSError, ValueError) as exc:
                last = exc
        raise BackendUnavailableError(
            f"schema registry {', '.join(self.urls)}: {method} {path} failed: {last}"
        ) from last

    def __repr__(self) -> str:
        return f"HttpSchemaRegistry({self.urls!r})"
