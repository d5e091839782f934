"""Avro schemas: parsing, CRC-64-AVRO fingerprints, Nuxeo's Record schemas and the schema store.

A fingerprint is the CRC-64-AVRO of the schema's Parsing Canonical Form, as an unsigned int;
single-object messages carry it little-endian. The store resolves fingerprints to writer schemas
as Nuxeo's ``FileAvroSchemaStore`` does, including its directory of
``<Name>-0x<FINGERPRINT>.avsc`` files, so the two can share schemas.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from conveyor.errors import ConfigurationError

__all__ = [
    "RECORD_SCHEMAS",
    "RECORD_SCHEMA_10_10",
    "RECORD_SCHEMA_2021",
    "RECORD_SCHEMA_2023",
    "Schema",
    "SchemaStore",
    "canonical_form",
    "fingerprint",
    "full_name",
    "load_schema",
    "schema_file_name",
]

Schema = dict[str, Any]
"""An Avro schema as its JSON object (a record schema: the only kind a codec writes)."""

_FILE_NAME = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)-0x(?P<fp>[0-9A-Fa-f]{1,16})\.avsc$")


def load_schema(schema: Mapping[str, Any] | str | Path) -> Schema:
    """A schema from its JSON object, its JSON text or a ``.avsc`` path; checked with fastavro."""
    if isinstance(schema, Path):
        text = schema.read_text(encoding="utf-8")
        loaded: Any = json.loads(text)
    elif isinstance(schema, str):
        try:
            loaded = json.loads(schema)
        except ValueError as exc:
            raise ConfigurationError(f"invalid Avro schema JSON: {exc}") from exc
    else:
        loaded = dict(schema)
    if not isinstance(loaded, dict) or loaded.get("type") not in ("record", "error"):
        raise ConfigurationError(f"an Avro record schema is needed, got {str(loaded)[:80]!r}")
    try:
        fastavro.parse_schema(loaded, _write_hint=False)
    except Exception as exc:  # fastavro raises SchemaParseException, ValueError, KeyError...
        raise ConfigurationError(f"invalid Avro schema {loaded.get('name')!r}: {exc}") from exc
    return loaded


def canonical_form(schema: Mapping[str, Any]) -> str:
    """The Parsing Canonical Form of ``schema`` (what fingerprints are computed on)."""
    form: str = to_parsing_canonical_form(dict(schema))
    return form


def fingerprint(schema: Mapping[str, Any]) -> int:
    """The CRC-64-AVRO fingerprint of ``schema`` as an unsigned 64-bit int (Nuxeo's ``0x...``)."""
    little_endian_hex: str = _fastavro_fingerprint(canonical_form(schema), "CRC-64-AVRO")
    return int.from_bytes(bytes.fromhex(little_endian_hex), "little")


def full_name(schema: Mapping[str, Any]) -> str:
    """``namespace.name`` of a record schema (the Java class name for Nuxeo's schemas)."""
    name = str(schema["name"])
    namespace = schema.get("namespace")
    return f"{namespace}.{name}" if namespace and "." not in name else name


def schema_file_name(schema: Mapping[str, Any]) -> str:
    """Nuxeo's file name for ``schema``: ``<Name>-0x<FINGERPRINT %08X>.avsc``."""
    return f"{str(schema['name']).rsplit('.', 1)[-1]}-0x{fingerprint(schema):08X}.avsc"


def _packaged() -> Iterator[tuple[str, Schema]]:
    folder = resources.files("conveyor.codec").joinpath("schemas")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".avsc"):
            yield entry.name, load_schema(entry.read_text(encoding="utf-8"))


def _packaged_schema(file_name: str) -> Schema:
    text = resources.files("conveyor.codec").joinpath("schemas", file_name).read_text(encoding="utf-8")
    return load_schema(text)


RECORD_SCHEMA_10_10: Schema = _packaged_schema("Record-0x77EACC1CE6E293FB.avsc")
"""Nuxeo 10.10's Record schema (watermark, key, data, flagsAsByte)."""
RECORD_SCHEMA_2021: Schema = _packaged_schema("Record-0xEE727BE73E8D498.avsc")
"""Nuxeo LTS 2021's Record schema (Avro 1.9, declaration order); ``0x0EE727BE73E8D498``."""
RECORD_SCHEMA_2023: Schema = _packaged_schema("Record-0x5D82F1387F01C58B.avsc")
"""Nuxeo LTS 2023's Record schema (Avro 1.11, fields sorted by name); ``0x5D82F1387F01C58B``."""
RECORD_SCHEMAS: dict[str, Schema] = {
    "10.10": RECORD_SCHEMA_10_10,
    "2021": RECORD_SCHEMA_2021,
    "2023": RECORD_SCHEMA_2023,
}
"""Nuxeo's Record schemas by release; ``2023`` (the latest) is what Conveyor writes by default."""


class SchemaStore:
    """Writer schemas by fingerprint: Nuxeo's ``AvroSchemaStore``.

    Starts with the schemas shipped in ``conveyor/codec/schemas`` (Nuxeo's Record of 10.10, 2021
    and 2023, BulkCommand, BulkStatus, BulkBucket, DataBucket) unless ``builtin=False``. With a
    ``directory``, schemas added are also written there as ``<Name>-0x<FP>.avsc`` and a missing
    fingerprint makes the store re-read the directory (another process, or Nuxeo, may have added it).
    Thread-safe.
    """

    def __init__(self, directory: str | Path | None = None, *, builtin: bool = True) -> None:
        self.directory = Path(directory) if directory is not None else None
        self._lock = threading.Lock()
        self._schemas: dict[int, Schema] = {}
        if builtin:
            for _, schema in _packaged():
                self._schemas[fingerprint(schema)] = schema
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._load_directory()

    def add_schema(self, schema: Mapping[str, Any] | str | Path) -> int:
        """Register ``schema`` (persisted when the store has a directory); its fingerprint."""
        loaded = load_schema(schema)
        fp = fingerprint(loaded)
        with self._lock:
            known = fp in self._schemas
            self._schemas[fp] = loaded
        if self.directory is not None and not known:
            path = self.directory / schema_file_name(loaded)
            if not path.exists():
                tmp = path.with_suffix(".avsc.tmp")
                tmp.write_text(json.dumps(loaded, indent=2), encoding="utf-8")
                tmp.replace(path)
        return fp

    def find_by_fingerprint(self, fp: int) -> Schema | None:
        """The schema whose fingerprint is ``fp``, or None when neither memory nor directory has it."""
        with self._lock:
            schema = self._schemas.get(fp)
        if schema is None and self.directory is not None:
            self._load_directory()
            with self._lock:
                schema = self._schemas.get(fp)
        return schema

    def fingerprints(self) -> list[int]:
        """The fingerprints of every schema known now."""
        with self._lock:
            return sorted(self._schemas)

    def __contains__(self, fp: object) -> bool:
        return isinstance(fp, int) and self.find_by_fingerprint(fp) is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._schemas)

    def _load_directory(self) -> None:
        assert self.directory is not None
        found: dict[int, Schema] = {}
        for path in sorted(self.directory.glob("*.avsc")):
            if not _FILE_NAME.match(path.name):
                continue
            try:
                schema = load_schema(path)
            except (OSError, ValueError, ConfigurationError):
                continue  # a half-written or foreign file must not break reading the others
            found[fingerprint(schema)] = schema
        with self._lock:
            for fp, schema in found.items():
                self._schemas.setdefault(fp, schema)

    def __repr__(self) -> str:
        directory = str(self.directory) if self.directory else None
        return f"SchemaStore(directory={directory!r}, schemas={len(self)})"
