"""Stream and group names, with Nuxeo's two forms: urn ``namespace/name`` and id ``namespace-name``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from conveyor.errors import InvalidNameError

__all__ = ["Name"]

NAMESPACE_GLOBAL = "_GLOBAL_"
_NAMESPACE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*\Z")
_GLOBAL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*\Z")
MAX_NAME_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Name:
    """A validated stream or group name (Nuxeo's ``Name``). Equal when their urns are equal."""

    namespace: str
    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.namespace, str) or not isinstance(self.name, str):
            raise InvalidNameError(f"name parts must be strings: {self.namespace!r}, {self.name!r}")
        if len(self.namespace) + len(self.name) + 1 > MAX_NAME_LENGTH:
            raise InvalidNameError(f"name too long (max {MAX_NAME_LENGTH}): {self.namespace}/{self.name}")
        if self.namespace == NAMESPACE_GLOBAL:
            if not _GLOBAL_NAME_RE.match(self.name):
                raise InvalidNameError(
                    f"invalid name {self.name!r}: a name without namespace must match "
                    "[A-Za-z0-9][A-Za-z0-9_]*"
                )
            return
        if not _NAMESPACE_RE.match(self.namespace):
            raise InvalidNameError(f"invalid namespace {self.namespace!r}: must match [A-Za-z][A-Za-z0-9_]*")
        if not _NAME_RE.match(self.name):
            raise InvalidNameError(f"invalid name {self.name!r}: must match [A-Za-z0-9][A-Za-z0-9_-]*")

    @classmethod
    def of(cls, namespace: str | None, name: str) -> Name:
        """The name ``name`` in ``namespace`` (None or empty: the global namespace)."""
        return cls(namespace or NAMESPACE_GLOBAL, name)

    @classmethod
    def of_urn(cls, urn: str) -> Name:
        """Parse ``namespace/name`` (or a bare global ``name``), splitting at the first ``/``."""
        if not isinstance(urn, str) or not urn:
            raise InvalidNameError(f"invalid stream urn {urn!r}: expected 'namespace/name'")
        namespace, sep, name = urn.partition("/")
        return cls(namespace, name) if sep else cls(NAMESPACE_GLOBAL, urn)

    @classmethod
    def of_id(cls, id_: str) -> Name:
        """Parse ``namespace-name`` (or a bare global ``name``), splitting at the first ``-``."""
        if not isinstance(id_, str) or not id_:
            raise InvalidNameError(f"invalid stream id {id_!r}: expected 'namespace-name'")
        namespace, sep, name = id_.partition("-")
        return cls(namespace, name) if sep else cls(NAMESPACE_GLOBAL, id_)

    @classmethod
    def coerce(cls, value: Name | str) -> Name:
        """``value`` itself, or the urn it spells."""
        if isinstance(value, Name):
            return value
        return cls.of_urn(value)

    @property
    def urn(self) -> str:
        """``namespace/name``, or ``name`` in the global namespace."""
        return self.name if self.namespace == NAMESPACE_GLOBAL else f"{self.namespace}/{self.name}"

    @property
    def id(self) -> str:
        """``namespace-name``, or ``name`` in the global namespace: Kafka topic and directory names."""
        return self.name if self.namespace == NAMESPACE_GLOBAL else f"{self.namespace}-{self.name}"

    def __str__(self) -> str:
        return self.urn

    def __repr__(self) -> str:
        return f"Name({self.urn!r})"
