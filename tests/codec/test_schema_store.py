"""Schema evolution through the schema store: older writers resolved by fingerprint, stores on disk."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from conveyor.codec import get_codec
from conveyor.codec.avro import SchemaStore, fingerprint, schema_file_name, schema_of
from conveyor.errors import CodecError


@dataclasses.dataclass
class StatusV1:
    id: str
    count: int


@dataclasses.dataclass
class StatusV2:
    id: str
    count: int
    error: str | None = None
    total: int = 7


def _v1_schema() -> dict[str, object]:
    schema = schema_of(StatusV2)
    schema["fields"] = [f for f in schema["fields"] if f["name"] in ("id", "count")]
    return schema


def test_new_reader_resolves_old_writer_through_the_store(tmp_path: Path) -> None:
    v1 = get_codec("avro", StatusV1, schema=_v1_schema(), schema_store=tmp_path)
    message = v1.encode(StatusV1("a", 3))
    # a reader in another process, sharing only the directory
    v2 = get_codec("avro", StatusV2, schema_store=SchemaStore(tmp_path))
    assert v2.decode(message) == StatusV2("a", 3, None, 7)
    assert v2.decode(v2.encode(StatusV2("b", 1, "oops", 2))) == StatusV2("b", 1, "oops", 2)


def test_unknown_fingerprint_until_the_schema_is_stored(tmp_path: Path) -> None:
    message = get_codec("avro", StatusV1, schema=_v1_schema()).encode(StatusV1("a", 3))
    store = SchemaStore(tmp_path / "store", builtin=False)
    reader = get_codec("avro", StatusV2, schema_store=store)
    with pytest.raises(CodecError, match=f"0x{fingerprint(_v1_schema()):016X}"):
        reader.decode(message)
    # another process (or Nuxeo) drops the schema file in the directory: found on the next miss
    (tmp_path / "store" / schema_file_name(_v1_schema())).write_text(json.dumps(_v1_schema()))
    assert reader.decode(message) == StatusV2("a", 3)


def test_store_files_use_nuxeo_names(tmp_path: Path) -> None:
    store = SchemaStore(tmp_path, builtin=False)
    fp = store.add_schema(_v1_schema())
    assert (tmp_path / schema_file_name(_v1_schema())).exists()
    assert schema_file_name(_v1_schema()) == f"StatusV2-0x{fp:08X}.avsc"
    assert fp in SchemaStore(tmp_path, builtin=False)


def test_incompatible_writer_is_a_codec_error() -> None:
    @dataclasses.dataclass
    class Other:
        id: int

    message = get_codec("avro", Other, schema={**schema_of(Other), "name": "StatusV2"}).encode(Other(1))
    store = SchemaStore()
    store.add_schema({**schema_of(Other), "name": "StatusV2"})
    with pytest.raises(CodecError, match="codec 'avro'"):
        get_codec("avro", StatusV2, schema_store=store).decode(message)
