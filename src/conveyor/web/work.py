"""WorkManager management: queues with their counts, processing on/off on this node, dead letters."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel

from conveyor.web.deps import NodeDep, not_found

if TYPE_CHECKING:
    from conveyor.runtime.node import Conveyor

__all__ = ["DeadLetterInfo", "QueueInfo", "dead_letter_count", "dead_letter_infos", "queue_infos", "router"]

router = APIRouter(prefix="/api/v1/work", tags=["work"])


class QueueInfo(BaseModel):
    """A work queue: configuration, counts, and whether this node processes it."""

    id: str
    name: str
    categories: list[str]
    max_threads: int
    capacity: int
    processing: bool
    scheduled: int
    running: int
    completed: int
    """Works that ended, whatever their outcome (as in Nuxeo): ``failed`` and ``dead_lettered`` included."""
    canceled: int
    worker_restarts: int = 0
    """Worker threads of the queue that an unexpected error ended on this node, and were replaced."""
    failed: int = 0
    """Of the completed Works, those that raised an error on their last attempt (dead-lettered)."""
    dead_lettered: int = 0
    """Of the completed Works, those that went to the dead letters (failed, undecodable, or that
    killed their process ``max_recoveries`` times)."""


class DeadLetterInfo(BaseModel):
    """A Work that failed for good, kept for a re-run.

    ``damaged`` marks an entry that cannot be decoded: ``error`` says why, ``position`` where it
    is stored, ``size`` its bytes; the fields it could not give are ``?``. It is never re-run.
    """

    id: str
    queue: str
    type: str
    category: str | None
    error: str
    failed_at: str | None
    size: int
    damaged: bool = False
    position: str | None = None
    traceback: str = ""
    """Where the error was raised (its end), when the dead letter kept it."""


class Processing(BaseModel):
    """A processing switch."""

    enabled: bool


def queue_info(node: Conveyor, queue_id: str) -> QueueInfo:
    """One queue of the node's WorkManager (404 when unknown)."""
    manager = node.work_manager
    if queue_id not in manager.queue_ids():
        not_found(f"unknown work queue {queue_id!r}; queues: {', '.join(manager.queue_ids())}")
    cfg = manager.queue_config(queue_id)
    metrics = manager.metrics(queue_id)
    return QueueInfo(
        id=queue_id,
        name=cfg.name or queue_id,
        categories=list(cfg.categories),
        max_threads=cfg.max_threads,
        capacity=cfg.capacity,
        processing=manager.is_processing_enabled(queue_id),
        scheduled=metrics.scheduled,
        running=metrics.running,
        completed=metrics.completed,
        canceled=metrics.canceled,
        worker_restarts=metrics.worker_restarts,
        failed=metrics.failed,
        dead_lettered=metrics.dead_lettered,
    )


def queue_infos(node: Conveyor) -> list[QueueInfo]:
    """Every queue of the node's WorkManager."""
    return [queue_info(node, qid) for qid in node.work_manager.queue_ids()]


def dead_letter_infos(node: Conveyor, limit: int | None = None) -> list[DeadLetterInfo]:
    """The dead letters not re-run yet, oldest first (at most ``limit``); damaged entries marked."""
    from conveyor.work.dlq import DamagedDeadLetter

    letters = node.work_manager.dead_letters()
    if limit is not None:
        letters = letters[:limit]
    return [
        DeadLetterInfo(
            id=letter.id,
            queue=letter.queue,
            type=letter.type,
            category=letter.category,
            error=letter.error,
            failed_at=dt.datetime.fromtimestamp(letter.failed_at, tz=dt.UTC).isoformat()
            if letter.failed_at
            else None,
            size=len(letter.data),
            damaged=isinstance(letter, DamagedDeadLetter),
            position=letter.position if isinstance(letter, DamagedDeadLetter) else None,
            traceback=getattr(letter, "traceback", "") or "",
        )
        for letter in letters
    ]


def dead_letter_count(node: Conveyor) -> int:
    """How many dead letters wait for a re-run (cheap: the lag of the re-run group)."""
    from conveyor.work.dlq import DLQ_RERUN_GROUP, DLQ_STREAM

    manager = node.log_manager
    if not manager.exists(DLQ_STREAM):
        return 0
    return manager.lag(DLQ_STREAM, DLQ_RERUN_GROUP).lag


@router.get("/queues", summary="Work queues with scheduled, running, completed and canceled counts")
def queues(node: NodeDep) -> list[QueueInfo]:
    """Every queue of this node's WorkManager."""
    return queue_infos(node)


@router.get("/queues/{queue_id}", summary="One work queue")
def queue(node: NodeDep, queue_id: str) -> QueueInfo:
    """The counts and configuration of ``queue_id``."""
    return queue_info(node, queue_id)


@router.put("/queues/{queue_id}/processing", summary="Start or stop running a queue on this node")
def set_processing(node: NodeDep, queue_id: str, body: Annotated[Processing, Body()]) -> QueueInfo:
    """``{"enabled": false}`` stops running ``queue_id`` here (Works stay queued); true resumes."""
    queue_info(node, queue_id)
    node.work_manager.enable_processing(queue_id, body.enabled)
    return queue_info(node, queue_id)


@router.put("/processing", summary="Start or stop running every queue on this node")
def set_all_processing(node: NodeDep, body: Annotated[Processing, Body()]) -> list[QueueInfo]:
    """``{"enabled": false}`` stops every queue of this node; true resumes them."""
    node.work_manager.enable_processing(None, body.enabled)
    return queue_infos(node)


@router.get("/dead-letters", summary="Works that failed for good")
def dead_letters(node: NodeDep, limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> list[DeadLetterInfo]:
    """The dead letters not re-run yet, oldest first, with their error."""
    return dead_letter_infos(node, limit)


@router.post("/dead-letters/rerun", summary="Schedule the dead letters again")
def rerun(
    node: NodeDep,
    category: Annotated[str | None, Query(max_length=200, description="Only this category")] = None,
) -> dict[str, Any]:
    """Re-schedule every dead letter (of ``category`` only, if given); returns how many."""
    return {"rerun": node.work_manager.rerun_failed(category), "category": category}
