"""``setProperties``: set properties (the params) on every document of the query."""

from __future__ import annotations

import re
from typing import Any

from conveyor.bulk.action import ActionContext, BulkAction
from conveyor.bulk.command import BulkCommand
from conveyor.errors import BulkValidationError

__all__ = ["SetPropertiesAction"]

# Nuxeo's options of setProperties, accepted and ignored (no audit, no versions here).
IGNORED_PARAMS = frozenset({"disableAuditLogger", "VersioningOption"})
_PROPERTY_RE = re.compile(r"[A-Za-z][\w.-]*:[\w./-]+\Z")


def properties_of(params: dict[str, Any]) -> dict[str, Any]:
    """The properties to set: the params without Nuxeo's options."""
    return {k: v for k, v in params.items() if k not in IGNORED_PARAMS}


class SetPropertiesAction(BulkAction):
    """Set each param ``prefix:name = value`` on the documents (a None value removes the property)."""

    name = "setProperties"
    http_enabled = True

    @classmethod
    def validate(cls, command: BulkCommand) -> None:
        props = properties_of(command.params)
        if not props:
            raise BulkValidationError("bulk action 'setProperties' needs at least one property in params")
        for key in props:
            if not _PROPERTY_RE.match(key) or key.lower().startswith("ecm:"):
                raise BulkValidationError(
                    f"bulk action 'setProperties': invalid property name {key!r} "
                    "(expected prefix:name, not ecm:)"
                )

    def compute(self, context: ActionContext, ids: list[str], params: dict[str, Any]) -> None:
        context.require_repository().set_properties(ids, properties_of(params), hints=context.hints)
