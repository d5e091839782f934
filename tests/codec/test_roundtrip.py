"""Every codec round-trips Records and generic types (dataclass, msgspec Struct, pydantic, dict)."""

from __future__ import annotations

import dataclasses
import enum

import msgspec
import pydantic
import pytest

from conveyor.codec import CODEC_NAMES, get_codec
from conveyor.codec.avro import schema_of
from conveyor.errors import CodecError, ConfigurationError
from conveyor.record import Flag, Record

RECORD_CODECS = [n for n in CODEC_NAMES if n != "bytes"]
AVRO = ["avro", "avroBinary", "avroJson", "avroConfluent"]

RECORDS = [
    Record("key", b"value", 208438433348190208, int(Flag.DEFAULT | Flag.COMMIT | Flag.USER2)),
    Record("", b"", 0, 0),
    Record("k\u00e9y-\U0001f600", bytes(range(256)), -1, 0xFF, b"\x00trace", "thread-1"),
    Record("big", b"x" * 100_000, (1 << 63) - 1, int(Flag.POISON_PILL)),
]


@pytest.mark.parametrize("name", RECORD_CODECS)
@pytest.mark.parametrize("record", RECORDS, ids=range(len(RECORDS)))
def test_record_round_trip(name: str, record: Record) -> None:
    codec = get_codec(name)
    assert codec.name == name
    assert codec.decode(codec.encode(record)) == record


@pytest.mark.parametrize("name", AVRO)
@pytest.mark.parametrize("release", ["10.10", "2021", "2023"])
def test_record_round_trip_per_nuxeo_release(name: str, release: str) -> None:
    record = Record("k", b"v", 42, 3) if release == "10.10" else RECORDS[2]
    codec = get_codec(name, Record, schema=release)
    assert codec.decode(codec.encode(record)) == record


def test_10_10_schema_cannot_carry_trace_context() -> None:
    with pytest.raises(CodecError, match="avroBinary"):
        get_codec("avroBinary", Record, schema="10.10").decode(b"")
    # 10.10 has no traceContext field: it is dropped, as Nuxeo 10.10 would.
    codec = get_codec("avro", Record, schema="10.10")
    assert codec.decode(codec.encode(RECORDS[2])).trace_context is None


def test_codecs_are_cached_and_bytes_is_identity() -> None:
    assert get_codec("avro") is get_codec("avro")
    assert get_codec("bytes").decode(b"abc") == b"abc"
    with pytest.raises(ConfigurationError, match="unknown codec"):
        get_codec("xml")
    with pytest.raises(ConfigurationError, match="unknown option"):
        get_codec("avro", Record, colour="red")


class State(enum.Enum):
    SCHEDULED = "scheduled"
    RUNNING = "running"


@dataclasses.dataclass
class Inner:
    name: str
    size: int = 0


@dataclasses.dataclass
class Command:
    id: str
    action: str
    query_limit: int | None = dataclasses.field(default=None, metadata={"avro_name": "queryLimit"})
    ratio: float = 0.5
    active: bool = False
    blob: bytes = b""
    tags: list[str] = dataclasses.field(default_factory=list)
    params: dict[str, str] = dataclasses.field(default_factory=dict)
    state: State | None = None
    inner: Inner | None = None


class StructCommand(msgspec.Struct):
    id: str
    count: int
    tags: list[str] = []


class PydanticCommand(pydantic.BaseModel):
    id: str
    count: int
    blob: bytes = b""
    note: str | None = None


COMMAND = Command(
    "c1", "setProperties", 100, 0.25, True, b"\x00\xff", ["a", "b"], {"k": "v"}, State.RUNNING, Inner("n", 3)
)


@pytest.mark.parametrize("name", RECORD_CODECS)
def test_dataclass_round_trip(name: str) -> None:
    codec = get_codec(name, Command)
    assert codec.decode(codec.encode(COMMAND)) == COMMAND
    assert codec.decode(codec.encode(Command("c2", "a"))) == Command("c2", "a")
    with pytest.raises(CodecError, match=name):
        codec.encode(Inner("wrong type"))


@pytest.mark.parametrize("name", RECORD_CODECS)
def test_struct_and_pydantic_round_trip(name: str) -> None:
    struct = StructCommand("s", 2, ["x"])
    assert get_codec(name, StructCommand).decode(get_codec(name, StructCommand).encode(struct)) == struct
    model = PydanticCommand(id="p", count=1, blob=b"abc" if name != "json" else b"", note="n")
    codec = get_codec(name, PydanticCommand)
    assert codec.decode(codec.encode(model)) == model


def test_derived_schema_is_reflect_like() -> None:
    schema = schema_of(Command)
    assert schema["name"] == "Command" and schema["type"] == "record"
    fields = {f["name"]: f for f in schema["fields"]}
    assert fields["queryLimit"] == {"name": "queryLimit", "type": ["null", "long"], "default": None}
    assert fields["active"]["type"] == "boolean" and fields["active"]["default"] is False
    assert fields["tags"]["type"] == {"type": "array", "items": "string"}
    assert fields["params"]["type"] == {"type": "map", "values": "string"}
    assert fields["state"]["type"][1]["symbols"] == ["SCHEDULED", "RUNNING"]


@pytest.mark.parametrize("name", ["json", "msgpack"])
def test_dict_round_trip(name: str) -> None:
    codec = get_codec(name, dict)
    assert codec.decode(codec.encode({"a": 1, "b": [1, "x"]})) == {"a": 1, "b": [1, "x"]}


@pytest.mark.parametrize("name", AVRO)
def test_avro_dict_needs_schema(name: str) -> None:
    with pytest.raises(ConfigurationError, match="schema="):
        get_codec(name, dict)
    codec = get_codec(name, dict, schema=schema_of(StructCommand))
    assert codec.decode(codec.encode({"id": "x", "count": 1, "tags": []})) == {
        "id": "x",
        "count": 1,
        "tags": [],
    }


def test_nuxeo_bulk_schema_with_explicit_schema() -> None:
    @dataclasses.dataclass
    class BulkBucket:
        commandId: str  # Nuxeo's field names
        ids: list[str]

    from conveyor.codec.avro import SchemaStore

    store = SchemaStore()
    schema = store.find_by_fingerprint(0xCC59A5FF2725F7AF)
    assert schema is not None
    codec = get_codec("avro", BulkBucket, schema=schema)
    bucket = BulkBucket("cmd", ["1", "2"])
    data = codec.encode(bucket)
    assert data[2:10] == (0xCC59A5FF2725F7AF).to_bytes(8, "little")
    assert codec.decode(data) == bucket


def test_json_record_format_is_documented_one() -> None:
    data = get_codec("json").encode(Record("key", b"value", 1, 1))
    assert data == (
        b'{"key":"key","data":"dmFsdWU=","watermark":1,"flags":1,"trace_context":null,"appender_thread":null}'
    )
