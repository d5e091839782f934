"""Codecs: bytes <-> objects, in Nuxeo's wire formats.

``get_codec(name, type_=Record)`` returns a :class:`Codec` for one of ``json``, ``msgpack``,
``avro`` (Nuxeo's single-object encoding), ``avroBinary``, ``avroJson``, ``avroConfluent`` and
``bytes`` (identity, for ``type_=bytes``). Codecs are cached per (name, type).
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from conveyor.codec.api import BytesCodec, Codec
from conveyor.errors import CodecError, ConfigurationError
from conveyor.record import Record

__all__ = ["CODEC_NAMES", "BytesCodec", "Codec", "CodecError", "get_codec"]

# name -> "module:factory"; a factory takes the message type and returns a Codec.
_FACTORIES: dict[str, str] = {
    "json": "conveyor.codec.json_codec:json_codec",
    "msgpack": "conveyor.codec.msgpack_codec:msgpack_codec",
    "avro": "conveyor.codec.avro:avro_message_codec",
    "avroBinary": "conveyor.codec.avro:avro_binary_codec",
    "avroJson": "conveyor.codec.avro:avro_json_codec",
    "avroConfluent": "conveyor.codec.avro:avro_confluent_codec",
}
CODEC_NAMES: tuple[str, ...] = ("bytes", *_FACTORIES)

_cache: dict[tuple[str, Any], Codec[Any]] = {}
_cache_lock = threading.Lock()


def get_codec(name: str, type_: type[Any] = Record, **options: Any) -> Codec[Any]:
    """The codec ``name`` for messages of ``type_`` (``Record`` by default).

    ``options`` go to the codec factory (e.g. ``schema_store=`` for ``avro``,
    ``registry_url=`` for ``avroConfluent``); codecs built with options are not cached.
    """
    if name in ("bytes", "none", "raw"):
        return BytesCodec()
    path = _FACTORIES.get(name)
    if path is None:
        raise ConfigurationError(f"unknown codec {name!r}; known codecs: {', '.join(CODEC_NAMES)}")
    if not options:
        with _cache_lock:
            cached = _cache.get((name, type_))
        if cached is not None:
            return cached
    module_name, _, attr = path.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    codec: Codec[Any] = factory(type_, **options)
    if not options:
        with _cache_lock:
            _cache[(name, type_)] = codec
    return codec
