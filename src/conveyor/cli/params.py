"""Parsing ``--param key=value`` options shared by the ``work`` and ``bulk`` commands."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

import msgspec

from conveyor.cli.common import EXIT_USAGE, fail


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``: values are JSON when they parse, else strings."""
    return {key: _json_or_text(raw) for key, raw in _split(pairs).items()}


def _split(pairs: list[str] | None) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            fail(f"--param {pair!r}: expected KEY=VALUE", EXIT_USAGE)
        params[key] = raw
    return params


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def work_params(cls: type[Any], pairs: list[str] | None) -> dict[str, Any]:
    """The ``--param`` values for the fields of the Work class ``cls``, each checked against its
    field's type: a value is taken as JSON when that fits the type, else as the text given.

    Exits with code 2 naming the field and its type when a value fits neither, or naming the
    fields when one is unknown.
    """
    raw_params = _split(pairs)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # annotations that cannot be resolved here: the class itself will judge
        return {key: _json_or_text(raw) for key, raw in raw_params.items()}
    params: dict[str, Any] = {}
    for key, raw in raw_params.items():
        if key not in fields:
            known = ", ".join(f"{name} ({_type_name(hints.get(name, Any))})" for name in fields)
            fail(
                f"cannot build {cls.type_name}: unknown field {key!r} (--param); its fields: {known}",
                EXIT_USAGE,
            )
        tp = hints.get(key, Any)
        for value in (_json_or_text(raw), raw):
            try:
                params[key] = msgspec.convert(value, tp)
                break
            except msgspec.ValidationError:
                continue
            except TypeError:  # a type msgspec does not know: the class itself will judge
                params[key] = _json_or_text(raw)
                break
        else:
            fail(
                f"--param {key}={raw!r}: field {key!r} of {cls.type_name} is {_type_name(tp)}; "
                f"{raw!r} is not one",
                EXIT_USAGE,
            )
    return params
