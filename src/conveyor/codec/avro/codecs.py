"""Nuxeo's four Avro codecs: ``avro``, ``avroBinary``, ``avroJson`` and ``avroConfluent``.

Every decode failure is a ``CodecError`` naming the codec and the problem; lengths are checked
against the bytes present before anything is read, and input larger than ``max_size`` is refused
before it is parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from conveyor.codec._common import DEFAULT_MAX_SIZE, as_input, as_output, check_max_size, describe, fail
from conveyor.codec._plain import type_name
from conveyor.codec.avro.binding import AvroBinding, RecordBinding, record_from_datum, record_plan
from conveyor.codec.avro.binding import _checked_to_datum as _record_to_datum
from conveyor.codec.avro.json_encoding import AvroJsonMapper
from conveyor.codec.avro.reflect import datum_converters, is_reflectable, schema_of
from conveyor.codec.avro.registry import HttpSchemaRegistry, LocalSchemaRegistry, SchemaRegistry
from conveyor.codec.avro.schema import RECORD_SCHEMA_2023, RECORD_SCHEMAS, Schema, SchemaStore, load_schema
from conveyor.errors import CodecError, ConfigurationError
from conveyor.record import Record

__all__ = [
    "MAGIC",
    "AvroBinaryCodec",
    "AvroConfluentCodec",
    "AvroJsonCodec",
    "AvroMessageCodec",
    "binding_for",
]

MAGIC = b"\xc3\x01"
"""The marker of Avro single-object encoding."""

SchemaLike = Mapping[str, Any] | str | Path


def binding_for(type_: Any, schema: SchemaLike | None = None) -> AvroBinding:
    """How ``type_`` maps to Avro under ``schema`` (derived from ``type_`` when None).

    For ``Record``, ``schema`` may also be a Nuxeo release: ``"2023"`` (default), ``"2021"``, ``"10.10"``.
    """
    if type_ is Record:
        if schema is None:
            resolved: Schema = RECORD_SCHEMA_2023
        elif isinstance(schema, str) and schema in RECORD_SCHEMAS:
            resolved = RECORD_SCHEMAS[schema]
        else:
            resolved = load_schema(schema)
        if record_plan(resolved) is not None:
            return RecordBinding(resolved)
        return AvroBinding(Record, resolved, _record_to_datum, record_from_datum)
    if type_ is dict:
        if schema is None:
            raise ConfigurationError("Avro codecs for dict messages need schema=")
        return AvroBinding(dict, load_schema(schema), _dict_datum, _dict_datum)
    if not is_reflectable(type_):
        raise ConfigurationError(
            f"Avro codecs handle Record, dict (with schema=), dataclasses, msgspec Structs and pydantic "
            f"models; not {type_name(type_)}"
        )
    to_datum, from_datum = datum_converters(type_)
    return AvroBinding(
        type_, load_schema(schema) if schema is not None else schema_of(type_), to_datum, from_datum
    )


def _dict_datum(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, Mapping):
        raise TypeError(f"expects a mapping, got {type(obj).__name__}")
    return dict(obj)


class _AvroCodec:
    """What the four Avro codecs share: the binding, the size limit, error wrapping."""

    _name = ""

    def __init__(
        self, type_: Any, *, schema: SchemaLike | None = None, max_size: int = DEFAULT_MAX_SIZE
    ) -> None:
        self.type = type_
        self.max_size = check_max_size(max_size)
        self.binding = binding_for(type_, schema)

    @property
    def name(self) -> str:
        """The registered name of this codec."""
        return self._name

    @property
    def schema(self) -> Schema:
        """The schema this codec writes (and reads into)."""
        return self.binding.schema

    @property
    def fingerprint(self) -> int:
        """The CRC-64-AVRO fingerprint of :attr:`schema`."""
        return self.binding.fingerprint

    def encode(self, obj: Any) -> bytes:
        """``obj`` in this codec's format; ``CodecError`` when it does not fit the schema."""
        try:
            data = self._encode(obj)
        except CodecError:
            raise
        except (TypeError, ValueError, OverflowError, KeyError, AttributeError, UnicodeError) as exc:
            fail(self._name, f"cannot encode {type(obj).__name__}: {describe(exc)}", exc)
        return as_output(self._name, data, self.max_size)

    def decode(self, data: bytes) -> Any:
        """The object in ``data``; ``CodecError`` on anything but a valid message."""
        data = as_input(self._name, data, self.max_size)
        try:
            return self._decode(data)
        except CodecError:
            raise
        except (ConfigurationError, IndexError, EOFError) as exc:
            if isinstance(exc, ConfigurationError):
                fail(self._name, f"unusable writer schema: {exc}", exc)
            fail(self._name, f"truncated {self._what()} message ({len(data)} bytes): {describe(exc)}", exc)
        except Exception as exc:  # fastavro raises many kinds (KeyError, struct.error, its own...)
            fail(self._name, f"invalid {self._what()} message: {describe(exc)}", exc)

    def _what(self) -> str:
        return self.binding.full_name.rsplit(".", 1)[-1]

    def _encode(self, obj: Any) -> bytes:
        raise NotImplementedError

    def _decode(self, data: bytes) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type_name(self.type)}, schema=0x{self.fingerprint:016X})"


class AvroMessageCodec(_AvroCodec):
    """``avro``: single-object encoding (``C3 01``, 8-byte LE fingerprint, binary body).

    Messages written with another schema are read through ``schema_store`` (by default the
    schemas shipped with Conveyor, Nuxeo's Record of 10.10, 2021 and 2023 among them) and resolved
    to this codec's schema, as Nuxeo's ``AvroMessageCodec`` does.
    """

    _name = "avro"

    def __init__(
        self,
        type_: Any,
        *,
        schema: SchemaLike | None = None,
        schema_store: SchemaStore | str | Path | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        super().__init__(type_, schema=schema, max_size=max_size)
        if schema_store is None or isinstance(schema_store, (str, Path)):
            schema_store = SchemaStore(schema_store)
        self.schema_store = schema_store
        self.schema_store.add_schema(self.binding.schema)
        self._header = MAGIC + self.binding.fingerprint.to_bytes(8, "little")

    def _encode(self, obj: Any) -> bytes:
        return self._header + self.binding.write(obj)

    def _decode(self, data: bytes) -> Any:
        if len(data) < 10:
            fail(self._name, f"truncated header: {len(data)} bytes, single-object messages have at least 10")
        if data[:2] != MAGIC:
            fail(self._name, f"not a single-object message: marker {data[:2].hex()} instead of c301")
        if data[2:10] == self._header[2:]:
            return self.binding.read(data[10:])
        fp = int.from_bytes(data[2:10], "little")
        writer = self.schema_store.find_by_fingerprint(fp)
        if writer is None:
            fail(self._name, f"unknown writer schema fingerprint 0x{fp:016X} (not in the schema store)")
        return self.binding.read(data[10:], writer, fp)


class AvroBinaryCodec(_AvroCodec):
    """``avroBinary``: the raw binary body; writer and reader must use the same schema."""

    _name = "avroBinary"

    def _encode(self, obj: Any) -> bytes:
        return self.binding.write(obj)

    def _decode(self, data: bytes) -> Any:
        return self.binding.read(data)


class AvroJsonCodec(_AvroCodec):
    """``avroJson``: Avro's JSON encoding, compact UTF-8 (debugging, and Nuxeo's tools)."""

    _name = "avroJson"

    def __init__(
        self, type_: Any, *, schema: SchemaLike | None = None, max_size: int = DEFAULT_MAX_SIZE
    ) -> None:
        super().__init__(type_, schema=schema, max_size=max_size)
        self._mapper = AvroJsonMapper(self.binding.schema)
        self._json_encode = msgspec.json.Encoder().encode
        self._json_decode = msgspec.json.Decoder().decode

    def _encode(self, obj: Any) -> bytes:
        return self._json_encode(self._mapper.to_json(self.binding.to_datum(obj)))

    def _decode(self, data: bytes) -> Any:
        return self.binding.from_datum(self._mapper.from_json(self._json_decode(data)))


class AvroConfluentCodec(_AvroCodec):
    """``avroConfluent``: ``00``, 4-byte big-endian schema id, binary body.

    With ``registry_url`` (comma-separated URLs) ids come from a Confluent Schema Registry, the
    schema registered under ``subject`` (default: the schema's full name, Nuxeo's Java class name).
    Without, from a local id map ``schema_ids`` (see ``conveyor.codec.avro.registry``). A message
    whose id the registry does not know is read with this codec's schema, as Nuxeo does.
    """

    _name = "avroConfluent"

    def __init__(
        self,
        type_: Any,
        *,
        schema: SchemaLike | None = None,
        registry_url: str | list[str] | None = None,
        schema_ids: Mapping[int, SchemaLike] | None = None,
        registry: SchemaRegistry | None = None,
        subject: str | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        super().__init__(type_, schema=schema, max_size=max_size)
        if registry is None:
            if registry_url:
                if schema_ids:
                    raise ConfigurationError("give avroConfluent either registry_url or schema_ids, not both")
                registry = HttpSchemaRegistry(registry_url)
            else:
                ids = {
                    i: RECORD_SCHEMAS[s]
                    if type_ is Record and isinstance(s, str) and s in RECORD_SCHEMAS
                    else s
                    for i, s in (schema_ids or {}).items()
                }
                registry = LocalSchemaRegistry(ids)
        self.registry = registry
        self.subject = subject or self.binding.full_name
        self._header: bytes | None = None

    @property
    def schema_id(self) -> int:
        """The id this codec writes (registering its schema on first use)."""
        return int.from_bytes(self._writer_header()[1:], "big")

    def _writer_header(self) -> bytes:
        if self._header is None:
            schema_id = self.registry.id_of(self.subject, self.binding.schema)
            self._header = b"\x00" + schema_id.to_bytes(4, "big")
        return self._header

    def _encode(self, obj: Any) -> bytes:
        return self._writer_header() + self.binding.write(obj)

    def _decode(self, data: bytes) -> Any:
        if len(data) < 5:
            fail(self._name, f"truncated header: {len(data)} bytes, Confluent messages have at least 5")
        if data[0] != 0:
            fail(self._name, f"not a Confluent message: magic byte {data[0]:#04x} instead of 0x00")
        if self._header is not None and data[:5] == self._header:
            return self.binding.read(data[5:])
        writer = self.registry.schema_of(int.from_bytes(data[1:5], "big"))
        return self.binding.read(data[5:], writer)
