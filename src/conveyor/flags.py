"""Yes/no settings written as text (URL query values, environment variables)."""

from __future__ import annotations

from typing import Any

from conveyor.errors import ConfigurationError

__all__ = ["parse_flag"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def parse_flag(name: str, value: Any) -> bool:
    """``value`` as a bool: a bool as is, else 1/true/yes/on or 0/false/no/off (any case);
    anything else is a :class:`ConfigurationError` naming ``name``."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be true or false, got {value!r}")
