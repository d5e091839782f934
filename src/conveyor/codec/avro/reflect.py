"""Avro schemas derived from Python type hints, as Nuxeo's ``ReflectData`` derives them from classes.

Supported: dataclasses, msgspec Structs and pydantic models whose fields are ``str``, ``int``
(Avro ``long``), ``float`` (``double``), ``bool``, ``bytes``, ``X | None`` (``["null", X]``, default
null), ``list[X]``, ``dict[str, X]``, ``enum.Enum`` (symbols = member names) and nested classes of
the same kinds. The record is named after the class, in the namespace ``__avro_namespace__`` (a
class attribute) or else the module. A dataclass field can take another Avro name with
``field(metadata={"avro_name": "queryLimit"})``; a Struct uses its ``rename``d name.

To match a Nuxeo schema exactly (field order, names, namespace), give the codec ``schema=`` and a
class whose fields carry the same names.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from conveyor.codec._plain import is_pydantic_model
from conveyor.errors import ConfigurationError

__all__ = ["datum_converters", "is_reflectable", "schema_of"]

_MISSING = object()
Convert = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True)
class _Field:
    py_name: str
    avro_name: str
    hint: Any
    default: Any  # _MISSING when none


def is_reflectable(type_: Any) -> bool:
    """True when a schema can be derived from ``type_`` (a dataclass, Struct or pydantic model)."""
    return isinstance(type_, type) and (
        dataclasses.is_dataclass(type_) or issubclass(type_, msgspec.Struct) or is_pydantic_model(type_)
    )


def _fields(type_: Any) -> list[_Field]:
    hints = typing.get_type_hints(type_)
    if dataclasses.is_dataclass(type_):
        out = []
        for f in dataclasses.fields(type_):
            if f.name.startswith("_"):
                continue
            default = f.default if f.default is not dataclasses.MISSING else _MISSING
            out.append(_Field(f.name, str(f.metadata.get("avro_name", f.name)), hints[f.name], default))
        return out
    if issubclass(type_, msgspec.Struct):
        return [
            _Field(
                f.name,
                f.encode_name,
                hints.get(f.name, f.type),
                f.default if f.default is not msgspec.NODEFAULT else _MISSING,
            )
            for f in msgspec.structs.fields(type_)
        ]
    out = []
    for name, info in type_.model_fields.items():
        default = _MISSING if info.is_required() or info.default_factory is not None else info.default
        out.append(_Field(name, name, hints.get(name, info.annotation), default))
    return out


def _optional_inner(hint: Any) -> Any:
    """``X`` for ``X | None``; ``_MISSING`` when ``hint`` is not an optional of one type."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0]
        raise ConfigurationError(f"unions other than X | None are not supported: {hint!r}")
    return _MISSING


def schema_of(type_: Any, *, namespace: str | None = None) -> dict[str, Any]:
    """The Avro record schema of ``type_`` (``ConfigurationError`` for hints Avro cannot express)."""
    if not is_reflectable(type_):
        raise ConfigurationError(
            f"cannot derive an Avro schema from {type_!r}: a dataclass, msgspec Struct or pydantic "
            "model is needed (or pass schema=)"
        )
    defined: set[str] = set()
    return dict(_record_schema(type_, defined, namespace))


def _namespace_of(type_: Any, namespace: str | None) -> str:
    return namespace or getattr(type_, "__avro_namespace__", None) or type_.__module__


def _record_schema(type_: Any, defined: set[str], namespace: str | None) -> Any:
    ns = _namespace_of(type_, namespace)
    full = f"{ns}.{type_.__name__}"
    if full in defined:
        return full
    defined.add(full)
    fields = []
    for f in _fields(type_):
        entry: dict[str, Any] = {
            "name": f.avro_name,
            "type": _type_schema(f.hint, defined, ns, f"{full}.{f.py_name}"),
        }
        if isinstance(entry["type"], list) and entry["type"][0] == "null":
            if f.default is _MISSING or f.default is None:
                entry["default"] = None
        elif f.default is not _MISSING and isinstance(f.default, (bool, int, float, str)):
            entry["default"] = f.default.name if isinstance(f.default, enum.Enum) else f.default
        fields.append(entry)
    return {"type": "record", "name": type_.__name__, "namespace": ns, "fields": fields}


_PRIMITIVES: dict[Any, str] = {bool: "boolean", int: "long", float: "double", str: "string", bytes: "bytes"}


def _type_schema(hint: Any, defined: set[str], ns: str, where: str) -> Any:
    inner = _optional_inner(hint)
    if inner is not _MISSING:
        return ["null", _type_schema(inner, defined, ns, where)]
    if hint in _PRIMITIVES:
        return _PRIMITIVES[hint]
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (list, Sequence, tuple) and origin is not tuple and len(args) == 1:
        return {"type": "array", "items": _type_schema(args[0], defined, ns, where)}
    if origin in (dict, Mapping) and len(args) == 2:
        if args[0] is not str:
            raise ConfigurationError(f"{where}: Avro maps need str keys, got {hint!r}")
        return {"type": "map", "values": _type_schema(args[1], defined, ns, where)}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        full = f"{_namespace_of(hint, None)}.{hint.__name__}"
        if full in defined:
            return full
        defined.add(full)
        return {
            "type": "enum",
            "name": hint.__name__,
            "namespace": _namespace_of(hint, None),
            "symbols": [m.name for m in hint],
        }
    if is_reflectable(hint):
        return _record_schema(hint, defined, None)
    raise ConfigurationError(f"{where}: no Avro type for {hint!r}")


def datum_converters(type_: Any) -> tuple[Callable[[Any], dict[str, Any]], Callable[[dict[str, Any]], Any]]:
    """Functions turning a ``type_`` object into an Avro datum (a dict) and back."""
    to_datum, from_datum = _converters(type_)

    def checked_to_datum(obj: Any) -> dict[str, Any]:
        if not isinstance(obj, type_):
            raise TypeError(f"expects a {type_.__qualname__}, got {type(obj).__name__}")
        result: dict[str, Any] = to_datum(obj)
        return result

    return checked_to_datum, from_datum


def _converters(hint: Any) -> tuple[Convert, Convert]:
    inner = _optional_inner(hint)
    if inner is not _MISSING:
        to_inner, from_inner = _converters(inner)
        return (
            lambda value: None if value is None else to_inner(value),
            lambda value: None if value is None else from_inner(value),
        )
    if hint in _PRIMITIVES:
        return _identity, _identity
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (list, Sequence) and len(args) == 1:
        to_item, from_item = _converters(args[0])
        return (lambda value: [to_item(x) for x in value], lambda value: [from_item(x) for x in value])
    if origin in (dict, Mapping) and len(args) == 2:
        to_value, from_value = _converters(args[1])
        return (
            lambda value: {k: to_value(x) for k, x in value.items()},
            lambda value: {k: from_value(x) for k, x in value.items()},
        )
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        members = hint
        return (lambda value: members(value).name, lambda value: members[value])
    if is_reflectable(hint):
        return _record_converters(hint)
    raise ConfigurationError(f"no Avro type for {hint!r}")


def _identity(value: Any) -> Any:
    return value


def _record_converters(type_: Any) -> tuple[Convert, Convert]:
    fields = _fields(type_)
    plan: list[tuple[str, str, Convert, Convert]] = []
    lazy: dict[str, tuple[Convert, Convert]] = {}

    def converters(hint: Any) -> tuple[Convert, Convert]:
        # Nested references to type_ itself (recursive types) are resolved on first use.
        if hint is type_ or _optional_inner(hint) is type_:

            def to_self(value: Any) -> Any:
                return None if value is None else lazy["self"][0](value)

            def from_self(value: Any) -> Any:
                return None if value is None else lazy["self"][1](value)

            return to_self, from_self
        return _converters(hint)

    for f in fields:
        to_f, from_f = converters(f.hint)
        plan.append((f.py_name, f.avro_name, to_f, from_f))

    def to_datum(obj: Any) -> dict[str, Any]:
        return {avro: to_f(getattr(obj, py)) for py, avro, to_f, _ in plan}

    def from_datum(datum: Any) -> Any:
        if not isinstance(datum, dict):
            raise TypeError(f"a record was expected for {type_.__qualname__}, got {type(datum).__name__}")
        return type_(**{py: from_f(datum[avro]) for py, avro, _, from_f in plan if avro in datum})

    lazy["self"] = (to_datum, from_datum)
    return to_datum, from_datum
