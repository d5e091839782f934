"""The built-in bulk actions over the document repository (registered on import)."""

from __future__ import annotations

from conveyor.bulk.actions.csvexport import CSVExportAction
from conveyor.bulk.actions.delete import DeleteAction
from conveyor.bulk.actions.setproperties import SetPropertiesAction
from conveyor.bulk.actions.trash import TrashAction, UntrashAction

__all__ = ["CSVExportAction", "DeleteAction", "SetPropertiesAction", "TrashAction", "UntrashAction"]
