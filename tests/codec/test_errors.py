"""Garbage, truncated and oversized input: a CodecError naming the codec and the problem, fast."""

from __future__ import annotations

import tracemalloc

import pytest

from conveyor.codec import get_codec
from conveyor.codec.avro import MAGIC, RECORD_SCHEMA_2023, fingerprint
from conveyor.errors import CodecError, ConfigurationError
from conveyor.record import Record

NAMES = ["json", "msgpack", "avro", "avroBinary", "avroJson", "avroConfluent"]
GOOD = Record("key", b"value", 1234, 1)


@pytest.mark.parametrize("name", NAMES)
def test_every_truncation_is_a_codec_error(name: str) -> None:
    codec = get_codec(name)
    data = codec.encode(GOOD)
    for cut in range(len(data)):
        with pytest.raises(CodecError, match=f"codec '{name}'"):
            codec.decode(data[:cut])


@pytest.mark.parametrize("name", NAMES)
def test_oversized_input_is_refused_before_parsing(name: str) -> None:
    codec = get_codec(name, Record, max_size=1024)
    with pytest.raises(CodecError, match="larger than max_size=1024"):
        codec.decode(b"\x00" * 1025)
    with pytest.raises(CodecError, match="larger than max_size"):
        codec.encode(Record("k", b"x" * 2000))


@pytest.mark.parametrize("name", NAMES)
def test_non_bytes_input(name: str) -> None:
    with pytest.raises(CodecError, match="bytes expected"):
        get_codec(name).decode("text")  # type: ignore[arg-type]


def test_bad_max_size_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="max_size"):
        get_codec("avro", Record, max_size=0)


def _varint(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@pytest.mark.parametrize("name", ["avro", "avroBinary", "avroConfluent"])
def test_length_claiming_2_gb_fails_fast_without_allocating(name: str) -> None:
    codec = get_codec(name)
    header = codec.encode(GOOD)[: {"avro": 10, "avroBinary": 0, "avroConfluent": 5}[name]]
    body = b"\x00\x02" + _varint(2**31) + b"x" * 12  # appenderThread null, data: 2 GB claimed
    tracemalloc.start()
    try:
        with pytest.raises(CodecError, match="runs past the end"):
            codec.decode(header + body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_avro_message_errors_name_the_problem() -> None:
    codec = get_codec("avro")
    with pytest.raises(CodecError, match="marker"):
        codec.decode(b"\x00\x01" + b"\x00" * 20)
    with pytest.raises(CodecError, match="unknown writer schema fingerprint 0x0102030405060708"):
        codec.decode(MAGIC + (0x0102030405060708).to_bytes(8, "little") + b"\x00")
    header = MAGIC + fingerprint(RECORD_SCHEMA_2023).to_bytes(8, "little")
    with pytest.raises(CodecError, match="bytes left after"):
        codec.decode(codec.encode(GOOD) + b"\x00")
    with pytest.raises(CodecError, match="union branch"):
        codec.decode(header + b"\x08")
    with pytest.raises(CodecError, match="varint longer"):
        codec.decode(header + b"\x00\x00\x00" + b"\xff" * 11)
    with pytest.raises(CodecError, match="not a Java byte"):
        codec.decode(header + b"\x00\x00" + _varint(300) + b"\x00\x00\x00")


def test_confluent_errors_name_the_problem() -> None:
    codec = get_codec("avroConfluent")
    with pytest.raises(CodecError, match="magic byte 0x01"):
        codec.decode(b"\x01\x00\x00\x00\x01\x00")
    with pytest.raises(CodecError, match="truncated header"):
        codec.decode(b"\x00\x00")


@pytest.mark.parametrize("name", NAMES)
def test_unencodable_records(name: str) -> None:
    codec = get_codec(name)
    if name != "json":  # JSON numbers have no size limit
        with pytest.raises(CodecError, match=name):
            codec.encode(Record("k", b"", 1 << 70))
    with pytest.raises(CodecError, match=name):
        codec.encode("not a record")


def test_json_type_errors() -> None:
    with pytest.raises(CodecError, match="codec 'json': invalid Record message"):
        get_codec("json").decode(b'{"key": 3}')
    with pytest.raises(CodecError, match="flags"):
        get_codec("json").decode(b'{"key":"k","flags":999}')
    with pytest.raises(CodecError, match=r"codec 'avroJson'.*data"):
        get_codec("avroJson").decode(
            b'{"watermark":1,"key":"k","data":{"bytes":"\\u0100"},"flagsAsByte":1,'
            b'"traceContext":null,"appenderThread":null}'
        )
