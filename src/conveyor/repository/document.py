"""The :class:`Document`: one row of the repository, as a frozen value."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Document:
    """A document: identity, place in the tree, type, properties and trash state.

    ``properties`` maps Nuxeo-style property names (``dc:title``, ``demo:index``) to JSON values.
    ``parent_id`` is None for documents directly under the root ``/``. Times are UTC-aware.
    """

    id: str
    type: str
    name: str
    path: str
    properties: dict[str, Any] = field(default_factory=dict)
    is_trashed: bool = False
    parent_id: str | None = None
    created: datetime | None = None
    modified: datetime | None = None

    @property
    def title(self) -> str | None:
        """``dc:title`` when it is a string, else None."""
        value = self.properties.get("dc:title")
        return value if isinstance(value, str) else None
