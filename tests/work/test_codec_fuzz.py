"""Fuzzing the Work codecs (issue 14, item 8): whatever the bytes, decoding raises only the
documented errors (``WorkPayloadError``, a ``CodecError``, or ``UnknownWorkTypeError`` for a type
name no class has), never RecursionError or another exception; encoding a Work raises only
``WorkPayloadError``.

10,000 generated inputs per run (4 tests of ``CONVEYOR_FUZZ_EXAMPLES``, 2,500 by default): raw
bytes, and hostile structures (deep nesting, huge ints, NaN, wrong types, lone surrogates,
invalid UTF-8, flipped and cut bytes) built from one drawn seed each, since the engine's cost per
draw is far above the decoding tested.
"""

from __future__ import annotations

import math
import os
import random
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.errors import CodecError, UnknownWorkTypeError
from conveyor.work import Work, WorkPayloadError
from conveyor.work.codec import WorkCodec

CODECS = {name: WorkCodec(name) for name in ("json", "msgpack")}
ALLOWED = (WorkPayloadError, CodecError, UnknownWorkTypeError)
EXAMPLES = int(os.environ.get("CONVEYOR_FUZZ_EXAMPLES", "2500"))


class Fuzzed(Work):
    """A Work with fields of several types, for the decoder to check."""

    token: str = ""
    count: int = 0
    ratio: float = 0.0
    tags: tuple[str, ...] = ()
    payload: Any = None


_CHARS = ["a", "Z", " ", "\\", '"', "\x00", "\x1f", "é", "\u2028", "\U0001f600", "\ud800", "\udfff", "\udc80"]
_FIELDS = ["id", "token", "count", "ratio", "tags", "payload", "other", "type"]
_TYPES = ["Fuzzed", "Note", "NoSuchWork", ""]


class _Digits(int):
    """A JSON number of ``n`` digits (longer than Python converts from text)."""

    def __new__(cls, n: int) -> _Digits:
        digits = super().__new__(cls, 9)
        digits.n = n
        return digits

    n: int


def _text(rnd: random.Random) -> str:
    """Short text, with lone surrogates now and then."""
    return "".join(rnd.choice(_CHARS) for _ in range(rnd.randint(0, 5)))


def _scalar(rnd: random.Random) -> Any:
    kind = rnd.randint(0, 7)
    if kind == 0:
        return None
    if kind == 1:
        return rnd.random() < 0.5
    if kind == 2:
        return rnd.randint(-(2**70), 2**70)  # past 64 bits now and then
    if kind == 3:
        return _Digits(rnd.randint(1, 5000))  # past Python's 4,300 digits in text
    if kind == 4:
        return rnd.choice([0.5, -1e308, math.inf, -math.inf, math.nan, 1e-320])
    return _text(rnd)


def _value(rnd: random.Random, depth: int = 0) -> Any:
    kind = rnd.randint(0, 5) if depth < 3 else 0
    if kind == 4:
        return [_value(rnd, depth + 1) for _ in range(rnd.randint(0, 3))]
    if kind == 5:
        return {_text(rnd): _value(rnd, depth + 1) for _ in range(rnd.randint(0, 3))}
    return _scalar(rnd)


def _json(value: Any) -> bytes:
    """JSON of ``value`` written by hand: huge ints, NaN, lone surrogates (as invalid UTF-8)."""
    if value is None:
        return b"null"
    if value is True or value is False:
        return b"true" if value else b"false"
    if isinstance(value, _Digits):
        return b"9" * value.n
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return repr(value).encode() if math.isfinite(value) else b"NaN"
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return b'"' + escaped.encode("utf-8", "surrogatepass") + b'"'
    if isinstance(value, list):
        return b"[" + b",".join(_json(v) for v in value) + b"]"
    return b"{" + b",".join(_json(str(k)) + b":" + _json(v) for k, v in value.items()) + b"}"


def _msgpack(value: Any) -> bytes:
    try:
        return msgspec.msgpack.encode(value)
    except Exception:  # a huge int, a surrogate: not msgpack-able; a reserved byte instead
        return b"\xc1"


_JSON_NESTS = [(b"[", b"]"), (b'{"a":', b"}"), (b'[{"b":', b"}]")]
_MSGPACK_NESTS = [b"\x91", b"\x81\xa1a", b"\xdc\x00\x01", b"\xdf\x00\x00\x00\x01\xa1a"]


def _deep(rnd: random.Random, codec: str) -> bytes:
    """A value nested 0 to 3,000 levels deep (lists, maps or both), maybe left open."""
    depth = rnd.choice([rnd.randint(0, 120), rnd.randint(0, 3000)])
    core = _scalar(rnd)
    if codec == "json":
        opener, closer = rnd.choice(_JSON_NESTS)
        return opener * depth + _json(core) + closer * rnd.choice([depth, rnd.randint(0, depth)])
    return rnd.choice(_MSGPACK_NESTS) * depth + _msgpack(core)


def _envelope(rnd: random.Random, codec: str) -> bytes:
    """A Work envelope whose parts are hostile: wrong types, deep state, unknown type names."""
    type_name: Any = rnd.choice(_TYPES) if rnd.random() < 0.7 else _value(rnd)
    work_id: Any = _text(rnd) if rnd.random() < 0.7 else _value(rnd)
    state: Any = {rnd.choice(_FIELDS): _value(rnd) for _ in range(rnd.randint(0, 4))}
    if rnd.random() < 0.3:
        state = _value(rnd)
    deep = rnd.random() < 0.4
    if codec == "json":
        head = b'{"type":' + _json(type_name) + b',"id":' + _json(work_id) + b',"state":'
        return head + (_deep(rnd, codec) if deep else _json(state)) + b"}"
    if deep:
        return (
            b"\x83\xa4type"
            + _msgpack(type_name)
            + b"\xa2id"
            + _msgpack(work_id)
            + b"\xa5state"
            + _deep(rnd, codec)
        )
    return _msgpack({"type": type_name, "id": work_id, "state": state})


def _damage(rnd: random.Random, data: bytes) -> bytes:
    """Now and then a flipped byte or a cut."""
    if not data or rnd.random() < 0.8:
        return data
    at = rnd.randrange(len(data))
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :] if rnd.random() < 0.5 else data[:at]


def check_decode(name: str, data: bytes) -> None:
    codec = CODECS[name]
    try:
        work = codec.decode(data)
    except ALLOWED:
        pass
    else:  # it was a Work after all: it encodes back within the limits
        assert isinstance(work, Work)
        codec.encode(work)
    assert isinstance(codec.peek(data), tuple)
    try:
        codec.decode_dead_letter(data)
    except ALLOWED:
        pass


fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
seeds = st.integers(0, 2**32)


@fuzz
@given(st.sampled_from(["json", "msgpack"]), st.binary(max_size=80))
def test_decoding_garbage_bytes_raises_only_documented_errors(name: str, data: bytes) -> None:
    check_decode(name, data)


@fuzz
@given(st.sampled_from(["json", "msgpack"]), seeds)
def test_decoding_deeply_nested_values_raises_only_documented_errors(name: str, seed: int) -> None:
    rnd = random.Random(seed)
    check_decode(name, _damage(rnd, _deep(rnd, name)))


@fuzz
@given(seeds)
def test_decoding_hostile_json_envelopes_raises_only_documented_errors(seed: int) -> None:
    rnd = random.Random(seed)
    check_decode("json", _damage(rnd, _envelope(rnd, "json")))


@fuzz
@given(seeds)
def test_decoding_hostile_msgpack_envelopes_raises_only_documented_errors(seed: int) -> None:
    rnd = random.Random(seed)
    check_decode("msgpack", _damage(rnd, _envelope(rnd, "msgpack")))


@settings(max_examples=500, deadline=None, database=None)
@given(st.sampled_from(["json", "msgpack"]), seeds)
def test_encoding_any_fields_raises_only_work_payload_error(name: str, seed: int) -> None:
    rnd = random.Random(seed)
    payload = _value(rnd)
    for _ in range(rnd.choice([rnd.randint(0, 120), rnd.randint(0, 1500)])):
        payload = [payload]
    token = _text(rnd)
    work = Fuzzed(token=token, payload=payload)
    codec = CODECS[name]
    try:
        data = codec.encode(work)
    except WorkPayloadError:
        return
    again = codec.decode(data)  # what encodes decodes
    assert isinstance(again, Fuzzed) and again.id == work.id and again.token == token
