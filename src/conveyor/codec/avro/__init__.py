"""Nuxeo's Avro encodings of Records and of any dataclass-like type, with fastavro.

``avro_message_codec`` (``avro``), ``avro_binary_codec`` (``avroBinary``), ``avro_json_codec``
(``avroJson``) and ``avro_confluent_codec`` (``avroConfluent``) are the factories behind
``conveyor.codec.get_codec``; each takes the message type and the codec's options.
"""

from __future__ import annotations

from typing import Any

from conveyor.codec.avro.codecs import (
    MAGIC,
    AvroBinaryCodec,
    AvroConfluentCodec,
    AvroJsonCodec,
    AvroMessageCodec,
    binding_for,
)
from conveyor.codec.avro.reflect import schema_of
from conveyor.codec.avro.registry import HttpSchemaRegistry, LocalSchemaRegistry, SchemaRegistry
from conveyor.codec.avro.schema import (
    RECORD_SCHEMA_10_10,
    RECORD_SCHEMA_2021,
    RECORD_SCHEMA_2023,
    RECORD_SCHEMAS,
    SchemaStore,
    canonical_form,
    fingerprint,
    load_schema,
    schema_file_name,
)
from conveyor.errors import ConfigurationError

__all__ = [
    "MAGIC",
    "RECORD_SCHEMAS",
    "RECORD_SCHEMA_10_10",
    "RECORD_SCHEMA_2021",
    "RECORD_SCHEMA_2023",
    "AvroBinaryCodec",
    "AvroConfluentCodec",
    "AvroJsonCodec",
    "AvroMessageCodec",
    "HttpSchemaRegistry",
    "LocalSchemaRegistry",
    "SchemaRegistry",
    "SchemaStore",
    "avro_binary_codec",
    "avro_confluent_codec",
    "avro_json_codec",
    "avro_message_codec",
    "binding_for",
    "canonical_form",
    "fingerprint",
    "load_schema",
    "schema_file_name",
    "schema_of",
]


def _build(cls: type[Any], type_: Any, options: dict[str, Any], allowed: set[str]) -> Any:
    unknown = set(options) - allowed
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {', '.join(sorted(unknown))} for codec {cls._name!r}; "
            f"known: {', '.join(sorted(allowed))}"
        )
    return cls(type_, **options)


def avro_message_codec(type_: Any, **options: Any) -> AvroMessageCodec:
    """``avro`` for ``type_``; options ``schema``, ``schema_store`` (a store or a directory), ``max_size``."""
    codec: AvroMessageCodec = _build(AvroMessageCodec, type_, options, {"schema", "schema_store", "max_size"})
    return codec


def avro_binary_codec(type_: Any, **options: Any) -> AvroBinaryCodec:
    """``avroBinary`` for ``type_``; options ``schema``, ``max_size``."""
    codec: AvroBinaryCodec = _build(AvroBinaryCodec, type_, options, {"schema", "max_size"})
    return codec


def avro_json_codec(type_: Any, **options: Any) -> AvroJsonCodec:
    """``avroJson`` for ``type_``; options ``schema``, ``max_size``."""
    codec: AvroJsonCodec = _build(AvroJsonCodec, type_, options, {"schema", "max_size"})
    return codec


def avro_confluent_codec(type_: Any, **options: Any) -> AvroConfluentCodec:
    """``avroConfluent`` for ``type_``; options ``schema``, ``registry_url``, ``schema_ids``,
    ``registry``, ``subject``, ``max_size``."""
    codec: AvroConfluentCodec = _build(
        AvroConfluentCodec,
        type_,
        options,
        {"schema", "registry_url", "schema_ids", "registry", "subject", "max_size"},
    )
    return codec
