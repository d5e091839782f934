"""``trash`` and ``untrash``: move documents in and out of the trash."""

from __future__ import annotations

from typing import Any

from conveyor.bulk.action import ActionContext, BulkAction, check_params
from conveyor.bulk.command import BulkCommand
from conveyor.errors import BulkValidationError

__all__ = ["TrashAction", "UntrashAction"]


class TrashAction(BulkAction):
    """Put the documents in the trash (param ``value``: False takes them out instead, as Nuxeo's)."""

    name = "trash"

    @classmethod
    def validate(cls, command: BulkCommand) -> None:
        check_params(cls.name, command.params, allowed=("value",))
        if not isinstance(command.params.get("value", True), bool):
            raise BulkValidationError("bulk action 'trash': param 'value' must be a boolean")

    def compute(self, context: ActionContext, ids: list[str], params: dict[str, Any]) -> None:
        repository = context.require_repository()
        if params.get("value", True):
            repository.trash(ids, hints=context.hints)
        else:
            repository.untrash(ids, hints=context.hints)


class UntrashAction(BulkAction):
    """Take the documents out of the trash."""

    name = "untrash"

    @classmethod
    def validate(cls, command: BulkCommand) -> None:
        check_params(cls.name, command.params, allowed=())

    def compute(self, context: ActionContext, ids: list[str], params: dict[str, Any]) -> None:
        context.require_repository().untrash(ids, hints=context.hints)
