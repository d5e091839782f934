"""Backends chosen by URL scheme: one lazy registry per layer, extensible by entry points.

A registry maps a URL scheme (``local``, ``kafka``, ``redis`` ...) to the dotted path of the class
that implements it. Nothing is imported until a URL with that scheme is opened, so an optional
dependency (confluent-kafka, redis-py, pymongo) is only needed by the users of its backend; when it
is missing the error says which extra to install. Third parties add schemes through the entry-point
group ``conveyor.<layer>`` (``name = scheme``, ``value = "package.module:Class"``).
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlsplit

from conveyor.errors import ConfigurationError, MissingDependencyError

# Which pip extra brings the driver a module needs, by the top-level module that failed to import.
_EXTRA_FOR_MODULE: dict[str, str] = {
    "confluent_kafka": "kafka",
    "redis": "redis",
    "hiredis": "redis",
    "psycopg": "sql",
    "pymysql": "sql",
    "pymongo": "mongo",
    "bson": "mongo",
    "fastapi": "web",
    "uvicorn": "web",
    "jinja2": "web",
    "prometheus_client": "web",
}


def url_scheme(url: str) -> str:
    """The lower-case scheme of ``url`` without a driver suffix (``a+b:`` gives ``a``)."""
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"backend URL must be a non-empty string, got {url!r}")
    if "://" not in url:
        # Bare words are accepted as schemes of their own ("stream", "memory").
        if url.replace("_", "").replace("-", "").isalnum():
            return url.lower()
        raise ConfigurationError(f"invalid backend URL {redact_url(url)!r}: expected scheme://...")
    return urlsplit(url).scheme.lower().split("+", 1)[0]


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe to log and show."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{user}:***@{host}"
    return parts._replace(netloc=netloc).geturl()


class BackendRegistry:
    """Scheme -> implementation class for one layer (``log``, ``kv``, ``pubsub``, ``work`` ...)."""

    def __init__(self, layer: str, builtins: dict[str, str]) -> None:
        self.layer = layer
        self._paths: dict[str, str] = dict(builtins)
        self._loaded: dict[str, type[Any]] = {}
        self._entry_points_read = False
        self._lock = threading.Lock()

    def register(self, scheme: str, target: str | type[Any]) -> None:
        """Add or replace the implementation of ``scheme`` (a class or ``"module:Class"``)."""
        with self._lock:
            scheme = scheme.lower()
            if isinstance(target, str):
                self._paths[scheme] = target
                self._loaded.pop(scheme, None)
            else:
                self._paths[scheme] = f"{target.__module__}:{target.__qualname__}"
                self._loaded[scheme] = target

    def schemes(self) -> list[str]:
        """Every scheme known, built in or from entry points."""
        self._read_entry_points()
        return sorted(self._paths)

    def resolve(self, url: str) -> type[Any]:
        """The class implementing the scheme of ``url``, imported now if needed."""
        scheme = url_scheme(url)
        self._read_entry_points()
        with self._lock:
            cls = self._loaded.get(scheme)
            if cls is not None:
                return cls
            path = self._paths.get(scheme)
        if path is None:
            raise ConfigurationError(
                f"unknown {self.layer} backend scheme {scheme!r} in URL {redact_url(url)!r}; "
                f"known schemes: {', '.join(self.schemes())}"
            )
        cls = _import_class(path, self.layer, scheme)
        with self._lock:
            self._loaded[scheme] = cls
        return cls

    def _read_entry_points(self) -> None:
        if self._entry_points_read:
            return
        with self._lock:
            if self._entry_points_read:
                return
            for ep in entry_points(group=f"conveyor.{self.layer}"):
                self._paths.setdefault(ep.name.lower(), ep.value)
            self._entry_points_read = True


def _import_class(path: str, layer: str, scheme: str) -> type[Any]:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        extra = _EXTRA_FOR_MODULE.get(missing)
        if extra is None:
            raise
        raise MissingDependencyError(
            f"the {layer} backend {scheme!r} needs the Python package {missing!r}: "
            f"pip install 'conveyor[{extra}]'"
        ) from exc
    try:
        cls: type[Any] = getattr(module, attr)
    except AttributeError as exc:
        raise ConfigurationError(f"{layer} backend {scheme!r}: {module_name} has no {attr}") from exc
    return cls
