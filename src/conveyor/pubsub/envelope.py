"""The wire form of a pub/sub message: sender node id, topic and payload, as a msgpack array.

Nuxeo prefixes the payload with ``<nodeId>:``; we carry the same facts in a msgpack array
``[node, topic, data]`` instead, so node ids and topics may hold any character and the payload
stays opaque bytes. New fields may only be appended, with defaults, so older readers keep working.
"""

from __future__ import annotations

import msgspec

from conveyor.errors import CodecError

__all__ = ["Envelope", "decode_envelope", "encode_envelope"]


class Envelope(msgspec.Struct, array_like=True, frozen=True):
    """One message as it travels: who sent it, on which topic, and the payload bytes."""

    node: str
    topic: str
    data: bytes


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Envelope)


def encode_envelope(envelope: Envelope) -> bytes:
    """The msgpack bytes of ``envelope``."""
    return _encoder.encode(envelope)


def decode_envelope(raw: bytes) -> Envelope:
    """The envelope in ``raw``; ``CodecError`` when the bytes are not one."""
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise CodecError(f"pub/sub message is not a msgpack [node, topic, data] envelope: {exc}") from exc
