"""Works as data: an envelope (type name, id, document) around the Work's public fields.

Encoded with msgspec as ``json`` (default) or ``msgpack``. Decoding checks the bytes, the type
name (it must be registered) and the fields (types validated against the class annotations);
each failure is a :class:`WorkPayloadError` naming what was wrong. Nothing is ever unpickled.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from conveyor.errors import CodecError, ConfigurationError, UnknownWorkTypeError, WorkError
from conveyor.work.api import Work, work_type

__all__ = ["CODECS", "DeadLetter", "Envelope", "WorkCodec", "WorkPayloadError", "get_work_codec"]

CODECS = ("json", "msgpack")


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
    """A Work that failed for good (or could not be decoded), with the error; kept for re-runs."""

    queue: str
    id: str
    type: str
    error: str
    data: bytes
    category: str | None = None
    failed_at: float = 0.0


class WorkCodec:
    """Encodes Works to bytes and back, in ``json`` or ``msgpack``."""

    def __init__(self, name: str = "json") -> None:
        if name == "json":
            self._enc: Any = msgspec.json.Encoder()
            self._module: Any = msgspec.json
        elif name == "msgpack":
            self._enc = msgspec.msgpack.Encoder()
            self._module = msgspec.msgpack
        else:
            raise ConfigurationError(f"unknown Work codec {name!r}; known: {', '.join(CODECS)}")
        self.name = name
        self._env_dec = self._module.Decoder(Envelope)
        self._peek_dec = self._module.Decoder(_Peek)
        self._dl_dec = self._module.Decoder(DeadLetter)
        self._decoders: dict[type[Work], Any] = {}

    def encode(self, work: Work) -> bytes:
        """The bytes of ``work``: its type name, id, document and public fields."""
        try:
            state = self._enc.encode(work)
        except (TypeError, msgspec.EncodeError) as exc:
            raise WorkPayloadError(
                f"cannot encode Work {type(work).type_name} {work.id}: {exc} "
                "(fields must be data: str, int, float, bool, lists, dicts, dataclasses...)"
            ) from exc
        doc = work.document
        env = Envelope(
            type=type(work).type_name,
            id=work.id,
            state=msgspec.Raw(state),
            doc=(doc.repository, doc.doc_id, doc.is_tree) if doc is not None else None,
            scheduled_at=time.time(),
        )
        data: bytes = self._enc.encode(env)
        return data

    def decode(self, data: bytes) -> Work:
        """The Work in ``data``; :class:`WorkPayloadError` or :class:`UnknownWorkTypeError` if bad."""
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
            p = self._peek_dec.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
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
        return letter


_codecs: dict[str, WorkCodec] = {}


def get_work_codec(name: str = "json") -> WorkCodec:
    """The (shared) Work codec ``name``."""
    codec = _codecs.get(name)
    if codec is None:
        codec = WorkCodec(name)
        _codecs[name] = codec
    return codec
