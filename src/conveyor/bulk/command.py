"""``BulkCommand``: what to run (an action), over what (a query), with which parameters."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from conveyor.errors import BulkDecodeError, BulkValidationError

__all__ = ["DEFAULT_REPOSITORY", "DEFAULT_USERNAME", "BulkCommand"]

DEFAULT_REPOSITORY = "default"
DEFAULT_USERNAME = "system"


@dataclass
class BulkCommand:
    """A bulk command (Nuxeo's ``BulkCommand``): run ``action`` on every id ``query`` selects.

    ``scroller`` names how the query becomes ids (None: the action's default, ``repository`` for
    NXQL). ``bucket_size`` ids travel together in one record and ``batch_size`` ids are given to
    the action at a time; None takes the action's sizes (100 and 25 unless it says otherwise).
    ``query_limit`` caps how many ids are scrolled. ``id`` is set on creation (a UUID) and is the
    command id that :meth:`BulkService.submit` returns.
    """

    action: str
    query: str
    params: dict[str, Any] = field(default_factory=dict)
    scroller: str | None = None
    bucket_size: int | None = None
    batch_size: int | None = None
    username: str = DEFAULT_USERNAME
    repository: str = DEFAULT_REPOSITORY
    query_limit: int | None = None
    sequential: bool | None = None
    """One command of this action at a time, buckets in order (None: the action's setting)."""
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def to_dict(self) -> dict[str, Any]:
        """The command as JSON-able data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BulkCommand:
        """The command stored by :meth:`to_dict`; unknown keys are ignored (newer writers)."""
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        try:
            return cls(**known)
        except TypeError as exc:
            raise BulkValidationError(f"invalid bulk command data: {exc}") from exc

    def encode(self) -> bytes:
        """JSON bytes (what travels on ``bulk/command`` and is kept in the ``bulk`` KV store)."""
        try:
            # allow_nan=False: NaN and Infinity are no JSON; written, they became null in the documents
            data = json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            return data.encode()
        except UnicodeEncodeError as exc:  # a lone surrogate: a str that is no text
            where = "query" if isinstance(self.query, str) and _not_text(self.query) else "params"
            raise BulkValidationError(
                f"bulk command {where} holds a lone surrogate {exc.object[exc.start : exc.end]!r}, "
                "which is not text"
            ) from None
        except (TypeError, ValueError) as exc:
            raise BulkValidationError(f"bulk command params are not JSON-serializable: {exc}") from exc
        except RecursionError:
            raise BulkValidationError(
                "bulk command params are not JSON-serializable: nested too deeply"
            ) from None

    @classmethod
    def decode(cls, data: bytes) -> BulkCommand:
        """The command from :meth:`encode` bytes."""
        try:
            loaded = json.loads(data)
        except ValueError as exc:
            raise BulkDecodeError(f"invalid bulk command bytes: {exc}") from exc
        if not isinstance(loaded, dict):
            raise BulkDecodeError("invalid bulk command bytes: not a JSON object")
        return cls.from_dict(loaded)


def _not_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
