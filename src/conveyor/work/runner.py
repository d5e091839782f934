"""Running one Work: attempts with exponential backoff, suspension, cancellation and cleanup."""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from conveyor.logcontext import log_context
from conveyor.work.api import Work, _Runtime

__all__ = ["Outcome", "RunResult", "run_work"]

logger = logging.getLogger("conveyor.work")


class Outcome(enum.Enum):
    """How a run of a Work ended."""

    COMPLETED = "completed"
    FAILED = "failed"
    SUSPENDED = "suspended"
    CANCELED = "canceled"


@dataclass(frozen=True)
class RunResult:
    """The outcome of a run, the last error (if any) and the number of attempts made."""

    outcome: Outcome
    error: BaseException | None = None
    attempts: int = 0


async def _await(aw: Awaitable[Any]) -> Any:
    return await aw


def _call(work: Work) -> None:
    result = work.work()
    if inspect.isawaitable(result):
        asyncio.run(_await(result))


def run_work(work: Work, rt: _Runtime, retry_delay: float = 0.1, max_retry_delay: float = 10.0) -> RunResult:
    """Run ``work`` (already given its runtime ``rt``) up to ``retry_count + 1`` times.

    A failed attempt is retried after ``retry_delay * 2**n`` seconds (at most ``max_retry_delay``);
    the wait ends early when the Work is asked to suspend, and the Work is then suspended with
    its fields as they are. ``cleanup(ok, error)`` is called once, after the last attempt.
    Everything logged meanwhile carries the Work's id and type.
    """
    with log_context(work_id=work.id, work_type=type(work).type_name, category=type(work).category):
        return _run_work(work, rt, retry_delay, max_retry_delay)


def _run_work(work: Work, rt: _Runtime, retry_delay: float, max_retry_delay: float) -> RunResult:
    attempts_allowed = max(0, int(type(work).retry_count)) + 1
    error: BaseException | None = None
    attempts = 0
    suspended = False
    for attempt in range(attempts_allowed):
        if rt.suspending.is_set():
            suspended = True
            break
        attempts += 1
        try:
            _call(work)
            error = None
            break
        except Exception as exc:
            error = exc
            if rt.suspended:
                break
            if attempt + 1 < attempts_allowed:
                logger.info(
                    "Work %s %s failed (attempt %d of %d), retrying: %r",
                    type(work).type_name,
                    work.id,
                    attempt + 1,
                    attempts_allowed,
                    exc,
                )
                delay = min(max_retry_delay, retry_delay * (2**attempt))
                if rt.suspending.wait(delay):
                    suspended = True
                    break
    suspended = suspended or rt.suspended
    ok = error is None and not suspended
    try:
        work.cleanup(ok, error)
    except Exception:  # a failing cleanup must not change the outcome
        logger.exception("cleanup of Work %s %s failed", type(work).type_name, work.id)
    if rt.cancel:
        return RunResult(Outcome.CANCELED, error, attempts)
    if suspended:
        return RunResult(Outcome.SUSPENDED, error, attempts)
    if error is not None:
        return RunResult(Outcome.FAILED, error, attempts)
    return RunResult(Outcome.COMPLETED, None, attempts)
