"""Hypothesis: random Records round-trip through every codec; random bytes only ever give CodecError."""

from __future__ import annotations

import io

import fastavro
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.codec import get_codec
from conveyor.codec.avro import MAGIC, RECORD_SCHEMAS, fingerprint
from conveyor.codec.avro.binding import record_to_datum
from conveyor.errors import CodecError
from conveyor.record import Record

NAMES = ["json", "msgpack", "avro", "avroBinary", "avroJson", "avroConfluent"]
CODECS = [get_codec(name) for name in NAMES] + [get_codec(n, Record, schema="2021") for n in NAMES[2:]]

records = st.builds(
    Record,
    key=st.text(max_size=40),
    data=st.binary(max_size=300),
    watermark=st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    flags=st.integers(min_value=0, max_value=255),
    trace_context=st.none() | st.binary(max_size=40),
    appender_thread=st.none() | st.text(max_size=20),
)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(records)
def test_every_codec_round_trips(record: Record) -> None:
    for codec in CODECS:
        assert codec.decode(codec.encode(record)) == record, codec


@SETTINGS
@given(records, st.sampled_from(["2021", "2023"]))
def test_fast_path_agrees_with_fastavro(record: Record, release: str) -> None:
    schema = RECORD_SCHEMAS[release]
    parsed = fastavro.parse_schema(schema, named_schemas={})
    out = io.BytesIO()
    fastavro.schemaless_writer(out, parsed, record_to_datum(record))
    codec = get_codec("avroBinary", Record, schema=release)
    assert codec.encode(record) == out.getvalue()
    # and an older writer read by the 2023 codec through the store
    message = MAGIC + fingerprint(schema).to_bytes(8, "little") + out.getvalue()
    assert get_codec("avro").decode(message) == record


@SETTINGS
@given(st.binary(max_size=200))
def test_garbage_only_raises_codec_error(data: bytes) -> None:
    for codec in CODECS:
        try:
            codec.decode(data)
        except CodecError:
            pass


@SETTINGS
@given(records, st.data())
def test_corrupted_messages_only_raise_codec_error(record: Record, draw: st.DataObject) -> None:
    for codec in CODECS:
        data = bytearray(codec.encode(record))
        if not data:
            continue
        for _ in range(draw.draw(st.integers(1, 4))):
            data[draw.draw(st.integers(0, len(data) - 1))] = draw.draw(st.integers(0, 255))
        prefix = MAGIC if codec.name == "avro" else b""
        for candidate in (bytes(data), prefix + bytes(data[len(prefix) :])):
            try:
                codec.decode(candidate)
            except CodecError:
                pass
