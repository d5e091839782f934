"""Reading the configuration: ``conveyor.toml`` plus ``CONVEYOR_*`` environment variables.

This is the only module that reads the environment. Environment variables override the file:

==========================  ==========================================
variable                    setting
==========================  ==========================================
``CONVEYOR_CONFIG``         path of the configuration file
``CONVEYOR_NODE_ID``        ``node.id``
``CONVEYOR_DATA_DIR``       ``node.data_dir``
``CONVEYOR_MODULES``        ``node.modules`` (comma-separated)
``CONVEYOR_LOG_FORMAT``     ``node.log_format`` (text, kv or json)
``CONVEYOR_LOG_LEVEL``      ``node.log_level``
``CONVEYOR_LOG_URL``        ``log.url`` (streams)
``CONVEYOR_KV_URL``         ``kv.url``
``CONVEYOR_PUBSUB_URL``     ``pubsub.url``
``CONVEYOR_WORK_URL``       ``work.url``
``CONVEYOR_WORK_PROCESSING`` ``work.processing`` (``*=false,pictures=true``)
``CONVEYOR_REPOSITORY_URL`` ``repository.url``
``CONVEYOR_WEB_HOST``       ``web.host``
``CONVEYOR_WEB_PORT``       ``web.port``
``CONVEYOR_WEB_TOKEN``      ``web.token``
``CONVEYOR_WEB_ALLOWED_HOSTS`` ``web.allowed_hosts`` (comma-separated)
``CONVEYOR_WEB_MAX_BODY_BYTES`` ``web.max_body_bytes``
==========================  ==========================================

Any other ``CONVEYOR_*`` variable is refused by name (``ConfigurationError``, with the variable
meant when there is one: ``CONVEYOR_NODE_LOG_LEVEL`` -> ``CONVEYOR_LOG_LEVEL``) when it looks like
a setting (``CONVEYOR_<TABLE>_...`` for a table of ``conveyor.toml``, or a near miss of a variable
above such as ``CONVEYOR_LOGURL``), and warned about otherwise;
the variables of the test suite and tools (``TOOL_VARIABLES``) are left alone.
"""

from __future__ import annotations

import difflib
import logging
import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from conveyor.errors import ConfigurationError
from conveyor.runtime.settings import Settings

__all__ = ["DEFAULT_CONFIG_PATH", "ENV_VARIABLES", "TOOL_VARIABLES", "config_path", "load_settings"]

logger = logging.getLogger("conveyor.config")

DEFAULT_CONFIG_PATH = Path("conveyor.toml")

ENV_VARIABLES: dict[str, tuple[str, str]] = {
    "CONVEYOR_NODE_ID": ("node", "id"),
    "CONVEYOR_DATA_DIR": ("node", "data_dir"),
    "CONVEYOR_MODULES": ("node", "modules"),
    "CONVEYOR_LOG_FORMAT": ("node", "log_format"),
    "CONVEYOR_LOG_LEVEL": ("node", "log_level"),
    "CONVEYOR_LOG_URL": ("log", "url"),
    "CONVEYOR_KV_URL": ("kv", "url"),
    "CONVEYOR_PUBSUB_URL": ("pubsub", "url"),
    "CONVEYOR_WORK_URL": ("work", "url"),
    "CONVEYOR_WORK_PROCESSING": ("work", "processing"),
    "CONVEYOR_REPOSITORY_URL": ("repository", "url"),
    "CONVEYOR_WEB_HOST": ("web", "host"),
    "CONVEYOR_WEB_PORT": ("web", "port"),
    "CONVEYOR_WEB_TOKEN": ("web", "token"),
    "CONVEYOR_WEB_ALLOWED_HOSTS": ("web", "allowed_hosts"),
    "CONVEYOR_WEB_MAX_BODY_BYTES": ("web", "max_body_bytes"),
}


TOOL_VARIABLES: dict[str, str] = {
    "CONVEYOR_REDIS": "tests: the Redis server to use (URL)",
    "CONVEYOR_POSTGRESQL": "tests: the PostgreSQL server to use (URL)",
    "CONVEYOR_MYSQL": "tests: the MariaDB/MySQL server to use (URL)",
    "CONVEYOR_KAFKA": "tests: the Kafka-protocol broker to use (host:port)",
    "CONVEYOR_MONGODB": "tests: the MongoDB-protocol server to use (URL)",
    "CONVEYOR_REQUIRE_SERVICES": "tests: 1 makes a test fail (not skip) when a server cannot be had",
    "CONVEYOR_UPDATE_SCREENSHOT": "tests: 1 rewrites the dashboard screenshot of the docs",
    "CONVEYOR_FUZZ_EXAMPLES": "tests: inputs per fuzzing test",
    "CONVEYOR_HYPOTHESIS_EXAMPLES": "tests: examples per property test",
}
"""``CONVEYOR_*`` variables of the test suite and tools: not settings, never refused."""


def config_path(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path | None:
    """The file to read: ``path``, else ``$CONVEYOR_CONFIG``, else ``./conveyor.toml`` if it exists."""
    env = os.environ if env is None else env
    if path is not None:
        return Path(path)
    if env.get("CONVEYOR_CONFIG"):
        return Path(env["CONVEYOR_CONFIG"])
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


def load_settings(
    source: str | Path | Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Validated settings from a TOML file path, a dict, or nothing (embedded defaults), plus env overrides.

    Errors name the file, the key and what was expected.
    """
    env = os.environ if env is None else env
    origin = "<settings>"
    if isinstance(source, Mapping):
        data: dict[str, Any] = _deep_copy(source)
    else:
        path = config_path(source, env)
        data = {}
        if path is not None:
            origin = str(path)
            data = _read_toml(path)
    _apply_env(data, env)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc, origin)) from None


MAX_CONFIG_BYTES = 16 * 1024 * 1024
MAX_CONFIG_DEPTH = 32  # tables and arrays inside each other; Conveyor's own settings need 3


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ConfigurationError(f"{path}: cannot read: not a regular file")
            if info.st_size > MAX_CONFIG_BYTES:
                raise ConfigurationError(
                    f"{path}: cannot read: {info.st_size} bytes, more than a configuration file may have "
                    f"({MAX_CONFIG_BYTES})"
                )
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: configuration file not found") from None
    except IsADirectoryError:
        raise ConfigurationError(f"{path}: cannot read: a directory, not a configuration file") from None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigurationError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); save it as UTF-8"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigurationError(
            f"{path}: invalid TOML: tables or arrays nested too deep (at most {MAX_CONFIG_DEPTH} levels)"
        ) from None
    if _depth(data) > MAX_CONFIG_DEPTH:
        raise ConfigurationError(f"{path}: tables or arrays nested deeper than {MAX_CONFIG_DEPTH} levels")
    return data


def _depth(value: Any, limit: int = MAX_CONFIG_DEPTH + 1) -> int:
    """How deep tables and arrays nest in ``value`` (counting stops past ``limit``)."""
    if limit <= 0 or not isinstance(value, (dict, list)):
        return 0
    items = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(item, limit - 1) for item in items), default=0)


def _check_env_names(env: Mapping[str, str]) -> None:
    """Refuse a ``CONVEYOR_*`` variable that looks like a setting but is none; warn about the
    other unknown ones (a variable silently ignored would look like a setting not taking effect)."""
    known = set(ENV_VARIABLES) | set(TOOL_VARIABLES) | {"CONVEYOR_CONFIG"}
    tables = tuple(f"CONVEYOR_{name.upper()}_" for name in Settings.model_fields)
    for variable in sorted(v for v in env if v.startswith("CONVEYOR_") and v not in known):
        hint = _meant(variable)
        # a near miss of a known variable (CONVEYOR_LOGURL) is a typo of a setting, whatever its prefix;
        # the looser match of the hint would also take CONVEYOR_COLOUR for CONVEYOR_CONFIG
        near = difflib.get_close_matches(variable, [*ENV_VARIABLES, "CONVEYOR_CONFIG"], n=1, cutoff=0.9)
        if variable.startswith(tables) or near:
            raise ConfigurationError(
                f"environment variable {variable} is not a Conveyor setting{hint}; the settings read "
                f"from the environment: {', '.join(['CONVEYOR_CONFIG', *ENV_VARIABLES])} "
                "(any other setting goes in conveyor.toml)"
            )
        logger.warning("environment variable %s is not a Conveyor setting: ignored%s", variable, hint)


def _meant(variable: str) -> str:
    """`` (did you mean ...)`` for an unknown variable close to a known one, else ``""``."""
    for known, (section, key) in ENV_VARIABLES.items():
        if variable == f"CONVEYOR_{section}_{key}".upper():
            return f" (did you mean {known}, for {section}.{key}?)"
    close = difflib.get_close_matches(variable, [*ENV_VARIABLES, "CONVEYOR_CONFIG"], n=1, cutoff=0.8)
    return f" (did you mean {close[0]}?)" if close else ""


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> None:
    _check_env_names(env)
    for variable, (section, key) in ENV_VARIABLES.items():
        value = env.get(variable)
        if value is None or value == "":
            continue
        parsed: Any = value
        if key in ("modules", "allowed_hosts"):
            parsed = [m.strip() for m in value.split(",") if m.strip()]
        elif key == "processing":
            parsed = _parse_processing(variable, value)
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigurationError(f"[{section}] must be a table to apply {variable}")
        table[key] = parsed


def _parse_processing(variable: str, value: str) -> dict[str, bool]:
    result: dict[str, bool] = {}
    for item in value.split(","):
        queue, sep, flag = item.partition("=")
        flag = flag.strip().lower()
        if not sep or flag not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigurationError(f"{variable}: expected 'queue=true|false,...', got {item!r}")
        result[queue.strip()] = flag in ("true", "1", "yes")
    return result


def _describe(exc: ValidationError, origin: str) -> str:
    lines = [f"{origin}: invalid configuration ({exc.error_count()} error(s))"]
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"])
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key (typo?)"
        given = error.get("input")
        shown = "" if error["type"] == "missing" or isinstance(given, dict) else f" (got {given!r})"
        lines.append(f"  {location}: {message}{shown}")
    return "\n".join(lines)


def _deep_copy(value: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in value.items()}
