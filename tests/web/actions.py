"""Bulk actions the web tests submit."""

from __future__ import annotations

import time
from typing import Any

from conveyor.bulk import ActionContext, bulk_action

DELAY_S = 0.05
"""Per id: a command over 200 documents runs ~10 s unless aborted."""


@bulk_action("webSlow", bucket_size=5, batch_size=1, http_enabled=True, concurrency=1, partitions=1)
def web_slow(context: ActionContext, ids: list[str], params: dict[str, Any]) -> None:
    """Does nothing, slowly."""
    time.sleep(DELAY_S * len(ids))


@bulk_action("webHidden", bucket_size=5, batch_size=5, http_enabled=False, concurrency=1, partitions=1)
def web_hidden(context: ActionContext, ids: list[str], params: dict[str, Any]) -> None:
    """Not enabled over HTTP."""
