"""``delete``: delete documents (and their descendants) for good."""

from __future__ import annotations

from typing import Any

from conveyor.bulk.action import ActionContext, BulkAction, check_params
from conveyor.bulk.command import BulkCommand
from conveyor.errors import BulkValidationError

__all__ = ["DeleteAction"]


class DeleteAction(BulkAction):
    """Delete the documents; param ``children`` (default True) deletes their descendants too."""

    name = "delete"

    @classmethod
    def validate(cls, command: BulkCommand) -> None:
        check_params(cls.name, command.params, allowed=("children",))
        if not isinstance(command.params.get("children", True), bool):
            raise BulkValidationError("bulk action 'delete': param 'children' must be a boolean")

    def compute(self, context: ActionContext, ids: list[str], params: dict[str, Any]) -> None:
        context.require_repository().delete(ids, children=params.get("children", True), hints=context.hints)
