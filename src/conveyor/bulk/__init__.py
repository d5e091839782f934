"""The Bulk Action Framework (Nuxeo's Bulk Service): run an action over millions of ids.

::

    service = node.bulk_service                       # or BulkService(log_manager, kv, repository).start()
    command_id = service.submit(BulkCommand("setProperties", "SELECT * FROM File",
                                            params={"dc:source": "import"}))
    service.wait(command_id, timeout=600)
    print(service.status(command_id).processed)

A command's query is scrolled into buckets of ids, each bucket processed in batches by the
action's computation, on any node; statuses are merged in the ``bulk`` KV store. Delivery is
at-least-once: actions must be idempotent (the built-ins are). See ``docs/bulk.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor.bulk.action import (
    ActionContext,
    BulkAction,
    bulk_action,
    get_action,
    register_action,
    registered_actions,
)
from conveyor.bulk.command import BulkCommand
from conveyor.bulk.scroller import GenericScroller, Scroller, bulk_scroller, get_scroller, register_scroller
from conveyor.bulk.service import BulkService, DoneListener
from conveyor.bulk.status import BulkState, BulkStatus

if TYPE_CHECKING:
    from conveyor.runtime.node import Conveyor

__all__ = [
    "ActionContext",
    "BulkAction",
    "BulkCommand",
    "BulkService",
    "BulkState",
    "BulkStatus",
    "DoneListener",
    "GenericScroller",
    "Scroller",
    "bulk_action",
    "bulk_scroller",
    "get_action",
    "get_scroller",
    "open_bulk_service",
    "register_action",
    "register_scroller",
    "registered_actions",
]


def open_bulk_service(node: Conveyor, **options: Any) -> BulkService:
    """The Bulk Service of ``node`` (its logs, ``bulk`` KV store, repository and ``bulk`` transient
    store), started: processing unless ``[bulk] processing = false`` or ``processing=False``.

    ``node.bulk_service`` opens it with ``processing=False`` (a client) and ``node.start()`` makes
    it process when ``[bulk] processing`` is true."""
    cfg = node.settings.bulk
    overrides = {a.name: {k: v for k, v in a.model_dump().items() if k != "name"} for a in cfg.actions}
    options.setdefault("processing", cfg.processing)
    options.setdefault("scroller_concurrency", cfg.scroller_concurrency)
    options.setdefault("status_concurrency", cfg.status_concurrency)
    service = BulkService(
        node.log_manager,
        node.kv_store("bulk"),
        node.repository,
        node.transient_store("bulk"),
        overrides=overrides,
        **options,
    )
    return service.start()
