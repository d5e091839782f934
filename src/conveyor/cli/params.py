"""Parsing ``--param key=value`` options shared by the ``work`` and ``bulk`` commands."""

from __future__ import annotations

import json
from typing import Any

from conveyor.cli.common import EXIT_USAGE, fail


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``: values are JSON when they parse, else strings."""
    params: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            fail(f"--param {pair!r}: expected KEY=VALUE", EXIT_USAGE)
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params
