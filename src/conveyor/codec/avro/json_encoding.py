"""Avro's JSON encoding of a datum under a schema (what Java's ``JsonEncoder`` writes).

Unions other than null are wrapped as ``{"<branch type name>": value}``; ``bytes`` and ``fixed`` are
strings whose code points are the byte values (ISO-8859-1). Both directions check the datum
against the schema and raise ``ValueError`` naming the field path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from conveyor.codec.avro._varint import INT_MAX, INT_MIN, LONG_MAX, LONG_MIN

__all__ = ["AvroJsonMapper"]

_PRIMITIVE = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


class AvroJsonMapper:
    """Converts datums of one schema to and from their Avro JSON form (plain JSON values)."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = dict(schema)
        self._names: dict[str, dict[str, Any]] = {}
        self._register(self.schema, "")

    def _register(self, node: Any, ns: str) -> None:
        if isinstance(node, list):
            for branch in node:
                self._register(branch, ns)
        elif isinstance(node, dict):
            kind = node.get("type")
            if kind in ("record", "error", "enum", "fixed"):
                name = str(node["name"])
                space = str(node.get("namespace", ns)) if "." not in name else name.rsplit(".", 1)[0]
                full = f"{space}.{name.rsplit('.', 1)[-1]}" if space else name
                node = {**node, "_full": full, "_ns": space}
                self._names[full] = node
                self._names.setdefault(name.rsplit(".", 1)[-1], node)
                for f in node.get("fields", []):
                    self._register(f["type"], space)
            elif kind == "array":
                self._register(node["items"], ns)
            elif kind == "map":
                self._register(node["values"], ns)
            elif isinstance(kind, (dict, list)):
                self._register(kind, ns)

    def _resolve(self, node: Any) -> Any:
        if isinstance(node, str) and node not in _PRIMITIVE:
            found = self._names.get(node)
            if found is None:
                raise ValueError(f"unknown type name {node!r}")
            return found
        if isinstance(node, dict):
            kind = node.get("type")
            if kind in ("record", "error", "enum", "fixed"):
                name = str(node["name"])
                return self._names.get(name) or self._names[name.rsplit(".", 1)[-1]]
            if isinstance(kind, str) and kind in _PRIMITIVE:
                return kind
            if isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind not in ("array", "map")):
                return self._resolve(kind)
        return node

    # --- datum -> JSON ------------------------------------------------------------------------

    def to_json(self, datum: Any) -> Any:
        """The Avro JSON value of ``datum``."""
        return self._to(self.schema, datum, "")

    def _to(self, node: Any, value: Any, path: str) -> Any:
        node = self._resolve(node)
        if isinstance(node, list):
            index = _branch_of(self, node, value, path)
            branch = self._resolve(node[index])
            if branch == "null":
                return None
            return {_type_name(branch): self._to(branch, value, path)}
        if isinstance(node, str):
            return _primitive_to(node, value, path)
        kind = node["type"]
        if kind in ("record", "error"):
            if not isinstance(value, Mapping):
                raise ValueError(f"{path or 'message'}: a record (mapping) was expected")
            return {
                f["name"]: self._to(
                    f["type"], _field_value(value, f, path), f"{path}.{f['name']}".lstrip(".")
                )
                for f in node["fields"]
            }
        if kind == "enum":
            if value not in node["symbols"]:
                raise ValueError(f"{path}: {value!r} is not a symbol of {node['_full']}")
            return value
        if kind == "fixed":
            if not isinstance(value, (bytes, bytearray)) or len(value) != node["size"]:
                raise ValueError(f"{path}: {node['size']} bytes expected")
            return bytes(value).decode("latin-1")
        if kind == "array":
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"{path}: a list was expected")
            return [self._to(node["items"], x, f"{path}[{i}]") for i, x in enumerate(value)]
        if kind == "map":
            if not isinstance(value, Mapping):
                raise ValueError(f"{path}: a mapping was expected")
            return {str(k): self._to(node["values"], x, f"{path}[{k!r}]") for k, x in value.items()}
        raise ValueError(f"{path}: unsupported schema {node!r}")

    # --- JSON -> datum ------------------------------------------------------------------------

    def from_json(self, value: Any) -> Any:
        """The datum whose Avro JSON form is ``value``."""
        return self._from(self.schema, value, "")

    def _from(self, node: Any, value: Any, path: str) -> Any:
        node = self._resolve(node)
        if isinstance(node, list):
            if value is None:
                if "null" not in node:
                    raise ValueError(f"{path}: null is not allowed")
                return None
            if not isinstance(value, dict) or len(value) != 1:
                raise ValueError(f'{path}: a union value must be null or {{"<type>": value}}')
            ((name, inner),) = value.items()
            for branch in node:
                resolved = self._resolve(branch)
                if _type_name(resolved) == name or (
                    isinstance(resolved, dict) and resolved.get("name") == name
                ):
                    return self._from(resolved, inner, path)
            raise ValueError(f"{path}: {name!r} is not a branch of the union")
        if isinstance(node, str):
            return _primitive_from(node, value, path)
        kind = node["type"]
        if kind in ("record", "error"):
            if not isinstance(value, dict):
                raise ValueError(f"{path or 'message'}: a JSON object was expected")
            out = {}
            for f in node["fields"]:
                sub = f"{path}.{f['name']}".lstrip(".")
                if f["name"] in value:
                    out[f["name"]] = self._from(f["type"], value[f["name"]], sub)
                elif "default" in f:
                    out[f["name"]] = f["default"]
                else:
                    raise ValueError(f"{sub}: missing")
            return out
        if kind == "enum":
            if value not in node["symbols"]:
                raise ValueError(f"{path}: {value!r} is not a symbol of {node['_full']}")
            return value
        if kind == "fixed":
            raw = _latin1(value, path)
            if len(raw) != node["size"]:
                raise ValueError(f"{path}: {node['size']} bytes expected")
            return raw
        if kind == "array":
            if not isinstance(value, list):
                raise ValueError(f"{path}: a JSON array was expected")
            return [self._from(node["items"], x, f"{path}[{i}]") for i, x in enumerate(value)]
        if kind == "map":
            if not isinstance(value, dict):
                raise ValueError(f"{path}: a JSON object was expected")
            return {k: self._from(node["values"], x, f"{path}[{k!r}]") for k, x in value.items()}
        raise ValueError(f"{path}: unsupported schema {node!r}")


def _field_value(value: Mapping[str, Any], field: Mapping[str, Any], path: str) -> Any:
    if field["name"] in value:
        return value[field["name"]]
    if "default" in field:
        return field["default"]
    raise ValueError(f"{path}.{field['name']}: missing".lstrip("."))


def _type_name(node: Any) -> str:
    if isinstance(node, str):
        return node
    if node.get("type") in ("record", "error", "enum", "fixed"):
        return str(node.get("_full", node["name"]))
    return str(node["type"])


def _branch_of(mapper: AvroJsonMapper, union: list[Any], value: Any, path: str) -> int:
    for i, branch in enumerate(union):
        node = mapper._resolve(branch)
        if _matches(node, value):
            return i
    raise ValueError(f"{path}: {type(value).__name__} matches no branch of the union")


def _matches(node: Any, value: Any) -> bool:
    if isinstance(node, str):
        return {
            "null": value is None,
            "boolean": isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool) and INT_MIN <= value <= INT_MAX,
            "long": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "double": isinstance(value, (int, float)) and not isinstance(value, bool),
            "bytes": isinstance(value, (bytes, bytearray)),
            "string": isinstance(value, str),
        }[node]
    kind = node["type"]
    if kind in ("record", "error", "map"):
        return isinstance(value, Mapping)
    if kind == "array":
        return isinstance(value, (list, tuple))
    if kind == "enum":
        return isinstance(value, str) and value in node["symbols"]
    return kind == "fixed" and isinstance(value, (bytes, bytearray)) and len(value) == node["size"]


def _primitive_to(kind: str, value: Any, path: str) -> Any:
    if not _matches(kind, value):
        raise ValueError(f"{path}: {type(value).__name__} is not an Avro {kind}")
    if kind == "long" and not LONG_MIN <= value <= LONG_MAX:
        raise ValueError(f"{path}: {value} does not fit an Avro long")
    if kind == "bytes":
        return bytes(value).decode("latin-1")
    if kind in ("float", "double"):
        return float(value)
    return value


def _primitive_from(kind: str, value: Any, path: str) -> Any:
    if kind == "bytes":
        return _latin1(value, path)
    if kind in ("float", "double") and isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
        return math.nan if value == "NaN" else math.copysign(math.inf, -1.0 if value[0] == "-" else 1.0)
    if not _matches(kind, value):
        raise ValueError(f"{path}: {type(value).__name__} is not an Avro {kind}")
    if kind == "long" and not LONG_MIN <= value <= LONG_MAX:
        raise ValueError(f"{path}: {value} does not fit an Avro long")
    return float(value) if kind in ("float", "double") else value


def _latin1(value: Any, path: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{path}: a string of byte values was expected")
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{path}: character above U+00FF in a bytes value") from exc
