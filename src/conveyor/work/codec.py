"""Works as data: an envelope (type name, id, document) around the Work's public fields.

Encoded with msgspec as ``json`` (default) or ``msgpack``. Decoding checks the bytes, the type
name (it must be registered) and the fields (types validated against the class annotations);
each failure is a :class:`WorkPayloadError` naming what was wrong. Nothing is ever unpickled.

Payloads are bounded, on encode (so ``schedule`` refuses them before anything is stored) and on
decode: at most ``max_depth`` levels of nesting in the Work's fields (the Work itself is level 1;
default :data:`DEFAULT_MAX_DEPTH`) and at most ``max_bytes`` bytes (default
:data:`DEFAULT_MAX_BYTES`). The depth is measured on the bytes before they are decoded, without
recursion, so a hostile payload cannot exhaust the stack.
"""

from __future__ import annotations

import re
import time
from itertools import accumulate
from typing import Any

import msgspec

from conveyor.errors import CodecError, ConfigurationError, UnknownWorkTypeError, WorkError
from conveyor.work.api import Work, work_type

__all__ = [
    "CODECS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "DeadLetter",
    "Envelope",
    "WorkCodec",
    "WorkPayloadError",
    "get_work_codec",
]

CODECS = ("json", "msgpack")
DEFAULT_MAX_DEPTH = 100
"""Default bound on the nesting of a Work's fields (the Work itself is level 1)."""
DEFAULT_MAX_BYTES = 64 << 20
"""Default bound on the size of an encoded Work (64 MiB)."""


class WorkPayloadError(WorkError, CodecError):
    """Bytes from a queue are not a valid Work (garbage, or fields of the wrong type)."""


class Envelope(msgspec.Struct, omit_defaults=True):
    """What a queue holds for one Work."""

    type: str
    id: str
    state: msgspec.Raw
    doc: tuple[str, str, bool] | None = None
    scheduled_at: float = 0.0


class _Peek(msgspec.Struct):
    type: str = "?"
    id: str = "?"


class DeadLetter(msgspec.Struct, omit_defaults=True):
    """A Work that failed for good (or could not be decoded), with the error; kept for re-runs.

    ``traceback``: where the last error was raised (Python's formatted traceback, its last
    ``MAX_TRACEBACK_CHARS`` characters), empty when there is none (letters written before it
    was kept, a Work that could not be decoded, an error given as text).
    """

    queue: str
    id: str
    type: str
    error: str
    data: bytes
    category: str | None = None
    failed_at: float = 0.0
    traceback: str = ""


MAX_TRACEBACK_CHARS = 16_000
"""Bound on the traceback a dead letter keeps (its end: the innermost frames and the error)."""


class WorkCodec:
    """Encodes Works to bytes and back, in ``json`` or ``msgpack``, within ``max_depth`` levels of
    nesting and ``max_bytes`` bytes (see module doc)."""

    def __init__(
        self, name: str = "json", max_depth: int = DEFAULT_MAX_DEPTH, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        if name == "json":
            self._enc: Any = msgspec.json.Encoder()
            self._module: Any = msgspec.json
        elif name == "msgpack":
            self._enc = msgspec.msgpack.Encoder()
            self._module = msgspec.msgpack
        else:
            raise ConfigurationError(f"unknown Work codec {name!r}; known: {', '.join(CODECS)}")
        if type(max_depth) is not int or max_depth < 1 or type(max_bytes) is not int or max_bytes < 1:
            raise ConfigurationError(
                f"Work codec: max_depth and max_bytes must be ints >= 1, got {max_depth!r}, {max_bytes!r}"
            )
        self.name = name
        self.max_depth = max_depth
        self.max_bytes = max_bytes
        self._depth = _json_depth if name == "json" else _msgpack_depth
        self._env_dec = self._module.Decoder(Envelope)
        self._peek_dec = self._module.Decoder(_Peek)
        self._dl_dec = self._module.Decoder(DeadLetter)
        self._decoders: dict[type[Work], Any] = {}

    def encode(self, work: Work) -> bytes:
        """The bytes of ``work``: its type name, id, document and public fields.

        :class:`WorkPayloadError` when its fields are not data, nest deeper than ``max_depth`` or
        encode to more than ``max_bytes``.
        """
        what = f"Work {type(work).type_name} {work.id}"
        try:
            state = self._enc.encode(work)
        except RecursionError as exc:
            raise WorkPayloadError(
                f"cannot encode {what}: nested deeper than {self.max_depth} levels (max_depth)"
            ) from exc
        except Exception as exc:  # TypeError, EncodeError, OverflowError (huge int), surrogates...
            raise WorkPayloadError(
                f"cannot encode {what}: {type(exc).__name__}: {exc} "
                "(fields must be data: str, int, float, bool, lists, dicts, dataclasses...)"
            ) from exc
        self._check(state, f"cannot encode {what}", 0)
        doc = work.document
        env = Envelope(
            type=type(work).type_name,
            id=work.id,
            state=msgspec.Raw(state),
            doc=(doc.repository, doc.doc_id, doc.is_tree) if doc is not None else None,
            scheduled_at=time.time(),
        )
        try:
            data: bytes = self._enc.encode(env)
        except Exception as exc:  # an id or document that is not encodable text
            raise WorkPayloadError(f"cannot encode {what}: {type(exc).__name__}: {exc}") from exc
        if len(data) > self.max_bytes:
            raise WorkPayloadError(
                f"cannot encode {what}: {len(data)} bytes, more than max_bytes={self.max_bytes}"
            )
        return data

    def _check(self, data: bytes, what: str, envelope: int) -> None:
        """Raise :class:`WorkPayloadError` if ``data`` (a whole Work when ``envelope`` is 1, its
        fields alone when 0) is too big or nests too deep."""
        if len(data) > self.max_bytes:
            raise WorkPayloadError(f"{what}: {len(data)} bytes, more than max_bytes={self.max_bytes}")
        depth = self._depth(data, self.max_depth + envelope)
        if depth is not None:
            raise WorkPayloadError(
                f"{what}: nested deeper than {self.max_depth} levels (max_depth; found at least "
                f"{depth - envelope})"
            )

    def decode(self, data: bytes) -> Work:
        """The Work in ``data``; :class:`WorkPayloadError` or :class:`UnknownWorkTypeError` if bad.

        Nothing else comes out, whatever the bytes.
        """
        try:
            return self._decode(data)
        except WorkError:
            raise
        except RecursionError as exc:  # not expected after the depth check; never let it out
            raise WorkPayloadError(f"not a Work ({self.name}): nested too deeply: {exc}") from exc
        except Exception as exc:  # a user __post_init__, a huge int... anything the bytes caused
            type_name, work_id = self.peek(data)
            raise WorkPayloadError(
                f"cannot rebuild Work type {type_name!r} (Work {work_id}): {type(exc).__name__}: {exc}"
            ) from exc

    def _decode(self, data: bytes) -> Work:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise WorkPayloadError(f"not a Work ({self.name}): {type(data).__name__}, not bytes")
        self._check(data, f"not a Work ({self.name})", 1)
        try:
            env = self._env_dec.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise WorkPayloadError(f"not a Work ({self.name}): {exc}") from exc
        cls = work_type(env.type)
        if cls is None:
            raise UnknownWorkTypeError(
                f"unknown Work type {env.type!r} (Work {env.id}): no such class registered in this process; "
                "import the module that defines it (node.modules)"
            )
        decoder = self._decoders.get(cls)
        if decoder is None:
            decoder = self._module.Decoder(cls)
            self._decoders[cls] = decoder
        try:
            work: Work = decoder.decode(env.state)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise WorkPayloadError(f"bad fields for Work type {env.type!r} (Work {env.id}): {exc}") from exc
        except TypeError as exc:  # a user __post_init__ rejecting the values
            raise WorkPayloadError(f"cannot rebuild Work type {env.type!r} (Work {env.id}): {exc}") from exc
        if work.id != env.id:
            work.id = env.id
        if env.doc is not None:
            work.set_document(*env.doc)
        return work

    def peek(self, data: bytes) -> tuple[str, str]:
        """``(type name, id)`` of encoded Work bytes, or ``("?", "?")`` if unreadable."""
        try:
            if len(data) > self.max_bytes or self._depth(data, self.max_depth + 1) is not None:
                return ("?", "?")
            p = self._peek_dec.decode(data)
        except Exception:  # whatever the bytes: they are only peeked at
            return ("?", "?")
        return (p.type, p.id)

    def encode_dead_letter(self, letter: DeadLetter) -> bytes:
        """Bytes of a dead letter."""
        data: bytes = self._enc.encode(letter)
        return data

    def decode_dead_letter(self, data: bytes) -> DeadLetter:
        """A dead letter from its bytes."""
        try:
            letter: DeadLetter = self._dl_dec.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise WorkPayloadError(f"not a dead letter ({self.name}): {exc}") from exc
        except Exception as exc:  # RecursionError on hostile nesting in unknown fields, ...
            raise WorkPayloadError(f"not a dead letter ({self.name}): {type(exc).__name__}: {exc}") from exc
        return letter


_codecs: dict[tuple[str, int, int], WorkCodec] = {}


def get_work_codec(
    name: str = "json", max_depth: int = DEFAULT_MAX_DEPTH, max_bytes: int = DEFAULT_MAX_BYTES
) -> WorkCodec:
    """The (shared) Work codec ``name`` with these limits."""
    key = (name, max_depth, max_bytes)
    codec = _codecs.get(key)
    if codec is None:
        codec = WorkCodec(name, max_depth, max_bytes)
        _codecs[key] = codec
    return codec


# --- nesting depth, measured on the bytes without recursion --------------------------------------

# A JSON string, escapes included; one left open runs to the end (so a match never fails where it
# starts, and the scan stays linear whatever the bytes).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\(?:.|\Z)[^"\\]*)*(?:"|\Z)', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEP = [0] * 256
for _b in b"[{":
    _BRACKET_STEP[_b] = 1
for _b in b"]}":
    _BRACKET_STEP[_b] = -1


def _json_depth(data: bytes, limit: int) -> int | None:
    """The nesting depth of JSON ``data`` when it is more than ``limit``, else None."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return None
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKET)
    if len(brackets) <= limit:
        return None
    depth = max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)))
    return depth if depth > limit else None


# Bytes that may start a msgpack array or map (fixmap, fixarray, array16/32, map16/32).
_NOT_CONTAINER = bytes(b for b in range(256) if not (0x80 <= b <= 0x9F or 0xDC <= b <= 0xDF))
# Size of what follows a msgpack type byte 0xc4..0xdb: (fixed bytes, length bytes).
_MSGPACK_SKIP: dict[int, tuple[int, int]] = {
    0xC4: (0, 1), 0xC5: (0, 2), 0xC6: (0, 4),  # bin
    0xC7: (1, 1), 0xC8: (1, 2), 0xC9: (1, 4),  # ext (type byte + data)
    0xCA: (4, 0), 0xCB: (8, 0),  # float
    0xCC: (1, 0), 0xCD: (2, 0), 0xCE: (4, 0), 0xCF: (8, 0),  # uint
    0xD0: (1, 0), 0xD1: (2, 0), 0xD2: (4, 0), 0xD3: (8, 0),  # int
    0xD4: (2, 0), 0xD5: (3, 0), 0xD6: (5, 0), 0xD7: (9, 0), 0xD8: (17, 0),  # fixext
    0xD9: (0, 1), 0xDA: (0, 2), 0xDB: (0, 4),  # str
}  # fmt: skip


def _msgpack_depth(data: bytes, limit: int) -> int | None:
    """The nesting depth of msgpack ``data`` when it is more than ``limit``, else None (also when
    the bytes are not msgpack: decoding them then says what is wrong)."""
    if len(data.translate(None, _NOT_CONTAINER)) <= limit:
        return None
    end = len(data)
    pos = 0
    pending = [1]  # items still to read: the top value, then per open array or map
    while pending:
        if pending[-1] == 0:
            pending.pop()
            continue
        pending[-1] -= 1
        if pos >= end:
            return None
        b = data[pos]
        pos += 1
        if b <= 0x7F or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):  # fixint, nil, bool
            continue
        if b <= 0x8F:
            count = 2 * (b & 0x0F)
        elif b <= 0x9F:
            count = b & 0x0F
        elif b <= 0xBF:
            pos += b & 0x1F
            continue
        elif b >= 0xDC:
            width = 2 if b in (0xDC, 0xDE) else 4
            count = int.from_bytes(data[pos : pos + width], "big") * (2 if b >= 0xDE else 1)
            pos += width
        else:
            skip = _MSGPACK_SKIP.get(b)
            if skip is None:  # 0xc1: never used
                return None
            fixed, width = skip
            length = int.from_bytes(data[pos : pos + width], "big") if width else 0
            pos += width + fixed + length
            continue
        if len(pending) > limit:
            return len(pending)
        pending.append(count)
    return None
