"""Actions used by the bulk tests (importable by the subprocess workers too)."""

from __future__ import annotations

import os
import time
from typing import Any

from conveyor.bulk import ActionContext, BulkAction, bulk_action, bulk_scroller
from conveyor.errors import BulkValidationError


def _check_delay(params: dict[str, Any]) -> None:
    if not isinstance(params.get("delay", 0), (int, float)):
        raise BulkValidationError("param 'delay' must be a number of seconds")


@bulk_action("testSlowTag", bucket_size=20, batch_size=5, validate=_check_delay)
def slow_tag(context: ActionContext, ids: list[str], params: dict[str, Any]) -> None:
    """Tag the documents, slowly."""
    time.sleep(float(params.get("delay", 0.01)))
    context.require_repository().set_properties(
        ids, {"test:tag": params.get("tag", "slow"), "test:pid": os.getpid()}
    )


@bulk_action("testExclusive", bucket_size=10, batch_size=10, exclusive=True)
def exclusive_tag(context: ActionContext, ids: list[str], params: dict[str, Any]) -> None:
    """Tag the documents, slowly, one command at a time."""
    time.sleep(float(params.get("delay", 0.05)))
    context.require_repository().set_properties(ids, {"test:exclusive": True})


class FailOdd(BulkAction):
    """Tags even documents, raises on odd ones (by demo:index)."""

    name = "testFailOdd"
    bucket_size = 50
    batch_size = 10

    def compute(self, context: ActionContext, ids: list[str], params: dict[str, Any]) -> None:
        repo = context.require_repository()
        docs = repo.get_many(ids)
        odd = [d.id for d in docs if d.properties["demo:index"] % 2]
        if odd:
            raise ValueError(f"odd document {odd[0]}")
        repo.set_properties(ids, {"test:even": True})


COLLECTED: list[str] = []


@bulk_action("testCollect", bucket_size=7, batch_size=3, default_scroller="testNumbers")
def collect(context: ActionContext, ids: list[str], params: dict[str, Any]) -> None:
    """Items that are not documents: remember them."""
    COLLECTED.extend(ids)


@bulk_scroller("testNumbers")
def numbers(query: str, params: dict[str, Any]) -> list[str]:
    """``query`` is a count: the items are "n0", "n1", ..."""
    return [f"n{i}" for i in range(int(query))]
