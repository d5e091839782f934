"""How objects of one Python type become Avro data and back, in the binary encoding.

A binding holds the codec's schema (what it writes, and reads into) and turns objects into
Avro datums (dicts keyed by Avro field names) and back. Bodies are written and read with fastavro;
``RecordBinding`` adds a hand-written path for Nuxeo's Record layouts, several times faster and
checked against fastavro by the tests. Reading a body written with another (older) schema goes
through fastavro's schema resolution.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Mapping
from typing import Any

import fastavro

from conveyor.codec.avro import _varint as v
from conveyor.codec.avro.schema import Schema, fingerprint, full_name, load_schema
from conveyor.errors import ConfigurationError
from conveyor.record import Record

__all__ = ["AvroBinding", "RecordBinding"]

ToDatum = Callable[[Any], dict[str, Any]]
FromDatum = Callable[[dict[str, Any]], Any]


class AvroBinding:
    """Avro binary bodies of one type under one schema, reading older writer schemas too.

    ``read`` and ``write`` raise ``ValueError``/``TypeError``/``IndexError``/``EOFError``... on bad
    data: the codecs turn them into ``CodecError``.
    """

    def __init__(
        self, type_: Any, schema: Mapping[str, Any], to_datum: ToDatum, from_datum: FromDatum
    ) -> None:
        self.type = type_
        self.schema: Schema = load_schema(schema)
        self.fingerprint = fingerprint(self.schema)
        self.full_name = full_name(self.schema)
        self.to_datum = to_datum
        self.from_datum = from_datum
        self.parsed = fastavro.parse_schema(self.schema, named_schemas={})
        _refuse_zero_width_arrays(self.schema, "codec schema")
        self._lock = threading.Lock()
        self._writers: dict[int, Any] = {}  # fingerprint -> parsed writer schema

    def write(self, obj: Any) -> bytes:
        """The binary body of ``obj`` under this binding's schema."""
        out = io.BytesIO()
        fastavro.schemaless_writer(out, self.parsed, self.to_datum(obj))
        return out.getvalue()

    def read(self, data: bytes, writer: Schema | None = None, writer_fp: int | None = None) -> Any:
        """The object in the body ``data`` written with ``writer`` (default: this schema)."""
        if writer is None or writer_fp == self.fingerprint:
            return self.from_datum(self._read_with(data, self.parsed, None))
        return self.from_datum(self._read_with(data, self._parsed_writer(writer, writer_fp), self.parsed))

    def _read_with(self, data: bytes, writer: Any, reader: Any) -> dict[str, Any]:
        buf = io.BytesIO(data)
        datum = fastavro.schemaless_reader(buf, writer, reader)
        if buf.tell() != len(data):
            raise ValueError(f"{len(data) - buf.tell()} bytes left after the message")
        if not isinstance(datum, dict):
            raise TypeError(f"a record was expected, got {type(datum).__name__}")
        return datum

    def _parsed_writer(self, writer: Schema, writer_fp: int | None) -> Any:
        fp = writer_fp if writer_fp is not None else fingerprint(writer)
        with self._lock:
            parsed = self._writers.get(fp)
        if parsed is None:
            _refuse_zero_width_arrays(writer, f"writer schema 0x{fp:016X}")
            parsed = fastavro.parse_schema(writer, named_schemas={})
            with self._lock:
                self._writers[fp] = parsed
        return parsed


def _refuse_zero_width_arrays(schema: Any, what: str) -> None:
    # An array of items that take no bytes (null, empty record) lets a 5-byte block count make a
    # reader loop billions of times: such schemas are refused instead of guarded per read.
    names: dict[str, Any] = {}

    def zero_width(node: Any, seen: frozenset[str]) -> bool:
        if isinstance(node, str):
            if node == "null":
                return True
            target = names.get(node)
            return target is not None and node not in seen and zero_width(target, seen | {node})
        if isinstance(node, list):
            return len(node) == 1 and zero_width(node[0], seen)
        if isinstance(node, dict):
            kind = node.get("type")
            if "name" in node and kind in ("record", "error", "enum", "fixed"):
                names.setdefault(str(node["name"]), node)
                if node.get("namespace"):
                    names.setdefault(f"{node['namespace']}.{node['name']}", node)
            if kind in ("record", "error"):
                return all(zero_width(f["type"], seen) for f in node.get("fields", []))
            if kind == "fixed":
                return int(node.get("size", 0)) == 0
            if kind == "enum":
                return len(node.get("symbols", [])) <= 1
            if kind in ("array", "map"):
                return False
            return zero_width(kind, seen)
        return False

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for branch in node:
                walk(branch)
        elif isinstance(node, dict):
            kind = node.get("type")
            if kind in ("record", "error"):
                zero_width(node, frozenset())  # registers the name
                for f in node.get("fields", []):
                    walk(f["type"])
            elif kind == "array":
                if zero_width(node["items"], frozenset()):
                    raise ConfigurationError(f"{what}: arrays of items that take no bytes are not supported")
                walk(node["items"])
            elif kind == "map":
                walk(node["values"])
            elif isinstance(kind, (dict, list)):
                walk(kind)

    walk(schema)


# --- Nuxeo's Record -------------------------------------------------------------------------------

_LONG, _INT, _STRING, _BYTES, _OPT_STRING, _OPT_BYTES = range(6)
# Avro field name -> Record attribute
RECORD_ATTRS = {
    "watermark": "watermark",
    "key": "key",
    "data": "data",
    "flagsAsByte": "flags",
    "traceContext": "trace_context",
    "appenderThread": "appender_thread",
}
_REQUIRED = {"watermark", "key", "flagsAsByte"}
Plan = tuple[tuple[str, int], ...]


def record_plan(schema: Schema) -> Plan | None:
    """The fast-path plan (field, kind) of a Record schema, or None when it needs fastavro."""
    plan: list[tuple[str, int]] = []
    for f in schema.get("fields", []):
        name = f.get("name")
        if name not in RECORD_ATTRS:
            return None
        kind = _kind(f.get("type"))
        if kind is None or kind not in _ALLOWED[name]:
            return None
        plan.append((name, kind))
    names = {name for name, _ in plan}
    if not names >= _REQUIRED or len(names) != len(plan):
        return None
    return tuple(plan)


_ALLOWED = {
    "watermark": {_LONG},
    "key": {_STRING},
    "data": {_BYTES, _OPT_BYTES},
    "flagsAsByte": {_INT},
    "traceContext": {_BYTES, _OPT_BYTES},
    "appenderThread": {_STRING, _OPT_STRING},
}


def _kind(node: Any) -> int | None:
    if isinstance(node, dict) and set(node) - {"type", "java-class", "avro.java.string"} == set():
        node = node["type"]
    if isinstance(node, list):
        if len(node) == 2 and node[0] == "null":
            inner = _kind(node[1])
            return {_STRING: _OPT_STRING, _BYTES: _OPT_BYTES}.get(inner) if inner is not None else None
        return None
    return (
        {"long": _LONG, "int": _INT, "string": _STRING, "bytes": _BYTES}.get(node)
        if isinstance(node, str)
        else None
    )


def record_to_datum(record: Record) -> dict[str, Any]:
    """``record`` as an Avro datum of Nuxeo's Record schema."""
    return {
        "watermark": record.watermark,
        "key": record.key,
        "data": record.data,
        "flagsAsByte": record.flags_as_byte,
        "traceContext": record.trace_context,
        "appenderThread": record.appender_thread,
    }


def record_from_datum(datum: dict[str, Any]) -> Record:
    """The Record in an Avro datum of one of Nuxeo's Record schemas."""
    return Record(
        key=datum["key"],
        data=datum.get("data") or b"",
        watermark=datum["watermark"],
        flags=_flags(datum["flagsAsByte"]),
        trace_context=datum.get("traceContext"),
        appender_thread=datum.get("appenderThread"),
    )


def _flags(value: int) -> int:
    if not -128 <= value <= 127:
        raise ValueError(f"flagsAsByte {value} is not a Java byte")
    return value & 0xFF


class RecordBinding(AvroBinding):
    """Nuxeo's Record under one of its schemas, with a hand-written path for the known layouts."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        super().__init__(Record, schema, _checked_to_datum, record_from_datum)
        plan = record_plan(self.schema)
        if plan is None:
            raise ConfigurationError(f"schema {self.full_name!r} is not a Nuxeo Record schema")
        self.plan = plan
        self._plans: dict[int, Plan | None] = {self.fingerprint: plan}

    def write(self, obj: Any) -> bytes:
        """The binary body of the Record ``obj``."""
        if not isinstance(obj, Record):
            raise TypeError(f"expects a Record, got {type(obj).__name__}")
        out = bytearray()
        for name, kind in self.plan:
            if name == "watermark":
                v.write_long(obj.watermark, out)
            elif name == "key":
                v.write_bytes(obj.key.encode("utf-8"), out)
            elif name == "flagsAsByte":
                v.write_long(obj.flags_as_byte, out)
            elif name == "data":
                if kind == _OPT_BYTES:
                    out.append(2)
                v.write_bytes(obj.data, out)
            else:
                value: Any = obj.trace_context if name == "traceContext" else obj.appender_thread
                if kind in (_BYTES, _STRING):
                    if value is None:
                        raise ValueError(f"{name} is None but the schema's {name} is not nullable")
                elif value is None:
                    out.append(0)
                    continue
                else:
                    out.append(2)
                v.write_bytes(value.encode("utf-8") if isinstance(value, str) else bytes(value), out)
        return bytes(out)

    def read(self, data: bytes, writer: Schema | None = None, writer_fp: int | None = None) -> Any:
        """The Record in the body ``data`` written with ``writer`` (default: this schema)."""
        if writer is None:
            plan: Plan | None = self.plan
        else:
            fp = writer_fp if writer_fp is not None else fingerprint(writer)
            with self._lock:
                if fp not in self._plans:
                    self._plans[fp] = record_plan(writer)
                plan = self._plans[fp]
            if plan is None:  # a Record schema we do not know: let fastavro resolve it
                return super().read(data, writer, fp)
        assert plan is not None
        return _read_plan(plan, data)


def _checked_to_datum(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, Record):
        raise TypeError(f"expects a Record, got {type(obj).__name__}")
    return record_to_datum(obj)


def _read_plan(plan: Plan, data: bytes) -> Record:
    values: dict[str, Any] = {"data": b"", "traceContext": None, "appenderThread": None}
    pos = 0
    for name, kind in plan:
        if kind == _LONG:
            values[name], pos = v.read_long(data, pos)
        elif kind == _INT:
            values[name], pos = v.read_int(data, pos)
        elif kind == _STRING:
            values[name], pos = v.read_string(data, pos)
        elif kind == _BYTES:
            values[name], pos = v.read_bytes(data, pos)
        else:
            branch = data[pos]
            pos += 1
            if branch == 0:
                values[name] = None
            elif branch == 2:
                reader = v.read_string if kind == _OPT_STRING else v.read_bytes
                values[name], pos = reader(data, pos)
            else:
                raise ValueError(f"union branch {v.read_long(data, pos - 1)[0]} of {name} is not 0 or 1")
    if pos != len(data):
        raise ValueError(f"{len(data) - pos} bytes left after the message")
    return Record(
        key=values["key"],
        data=values["data"] or b"",
        watermark=values["watermark"],
        flags=_flags(values["flagsAsByte"]),
        trace_context=values["traceContext"],
        appender_thread=values["appenderThread"],
    )
