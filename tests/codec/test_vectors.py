"""Nuxeo's Record vectors: key "key", data b"value", flags DEFAULT|COMMIT|USER2; re-encoded byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.codec import get_codec
from conveyor.codec.avro import RECORD_SCHEMAS, SchemaStore, fingerprint, schema_file_name
from conveyor.record import Flag, Record

WIRE = Path("/work/shared/reference/nuxeo-wire")
if not WIRE.is_dir():  # pragma: no cover - the vectors ship with the shared reference
    pytest.skip("Nuxeo vectors not found", allow_module_level=True)

FLAGS = Flag.DEFAULT | Flag.COMMIT | Flag.USER2

# (file, codec name, options that re-encode it byte for byte, watermark inside)
VECTORS = [
    ("record-avro-message-1.11.bin", "avro", {}, 219353282518319104),
    ("record-avro-message-1.9.bin", "avro", {"schema": "2021"}, 208438433348190208),
    ("record-avro-binary.bin", "avroBinary", {}, 219353282518319104),
    ("record-avro.json", "avroJson", {"schema": "2021"}, 208438433348190208),
    (
        "record-avro-confluent.bin",
        "avroConfluent",
        {"schema": "2021", "schema_ids": {3: "2021"}},
        208597354584342528,
    ),
]


@pytest.mark.parametrize(("file", "codec", "options", "watermark"), VECTORS, ids=[v[0] for v in VECTORS])
def test_vector_round_trips_byte_for_byte(
    file: str, codec: str, options: dict[str, object], watermark: int
) -> None:
    data = (WIRE / file).read_bytes()
    c = get_codec(codec, Record, **options)
    record = c.decode(data)
    assert record == Record("key", b"value", watermark, int(FLAGS))
    assert record.has_flag(Flag.USER2) and record.flags_as_byte == -125
    assert c.encode(record) == data


@pytest.mark.parametrize(
    "file", ["record-avro-message-1.9.bin", "record-avro-message-1.11.bin", "record-avro.json"]
)
def test_default_codec_reads_both_releases(file: str) -> None:
    codec = "avroJson" if file.endswith(".json") else "avro"
    record = get_codec(codec).decode((WIRE / file).read_bytes())
    assert (record.key, record.data, record.flags) == ("key", b"value", int(FLAGS))


def test_confluent_vector_with_unknown_id_falls_back_to_the_codec_schema() -> None:
    data = (WIRE / "record-avro-confluent.bin").read_bytes()
    assert get_codec("avroConfluent", schema="2021").decode(data).key == "key"


def test_record_schemas_have_nuxeo_fingerprints() -> None:
    assert fingerprint(RECORD_SCHEMAS["2023"]) == 0x5D82F1387F01C58B
    assert fingerprint(RECORD_SCHEMAS["2021"]) == 0x0EE727BE73E8D498
    assert fingerprint(RECORD_SCHEMAS["10.10"]) == 0x77EACC1CE6E293FB


def test_packaged_schemas_match_their_file_names() -> None:
    store = SchemaStore()
    for avsc in WIRE.glob("*-0x*.avsc"):
        fp = int(avsc.stem.split("-0x")[1], 16)
        schema = store.find_by_fingerprint(fp)
        assert schema is not None, avsc.name
        assert schema_file_name(schema) == avsc.name
