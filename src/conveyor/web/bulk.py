"""Bulk commands over HTTP, as Nuxeo's ``/api/v1/bulk``: submit (actions marked ``http_enabled``
only), status, abort, list, and the result download of ``csvExport``.

Every status carries, besides the Bulk Service's fields, ``progress`` (0..1, None while the total
is unknown), ``rate`` (documents per second since processing started) and ``eta_s``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, status
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from conveyor.web.deps import NodeDep, not_found

if TYPE_CHECKING:
    from conveyor.runtime.node import Conveyor

__all__ = ["BulkSubmission", "bulk_available", "router", "status_data", "statuses_data"]

router = APIRouter(prefix="/api/v1/bulk", tags=["bulk"])

TERMINAL = frozenset({"COMPLETED", "ABORTED", "UNKNOWN"})
STATES = ("SCHEDULED", "SCROLLING_RUNNING", "RUNNING", "COMPLETED", "ABORTED", "UNKNOWN")


class BulkSubmission(BaseModel):
    """The body of a submit: the NXQL query selecting documents, and the action's parameters."""

    query: str = Field(min_length=1, max_length=10_000)
    params: dict[str, Any] = Field(default_factory=dict)
    username: str = Field(default="system", min_length=1, max_length=200)
    bucket_size: int | None = Field(default=None, ge=1, le=100_000)
    batch_size: int | None = Field(default=None, ge=1, le=100_000)
    query_limit: int | None = Field(default=None, ge=1)


def bulk_available() -> bool:
    """Whether the Bulk Service (``conveyor.bulk``) is installed in this process."""
    try:
        from conveyor.bulk import open_bulk_service  # noqa: F401
    except ImportError:
        return False
    return True


def _service(node: Conveyor) -> Any:
    if not bulk_available():
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "the Bulk Service (conveyor.bulk) is not installed"
        )
    return node.bulk_service


def _state(value: Any) -> str:
    return str(getattr(value, "value", value))


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return value / 1000.0 if value > 10**11 else float(value)
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value).timestamp()
    return None


def status_data(bulk_status: Any) -> dict[str, Any]:
    """A bulk status as JSON-able data, with ``progress``, ``rate`` and ``eta_s`` computed."""
    data: dict[str, Any] = dict(bulk_status.to_dict())
    data["state"] = _state(bulk_status.state)
    processed = int(data.get("processed") or 0) + int(data.get("skip_count") or 0)
    total = int(data.get("total") or 0)
    scroll_done = data.get("scroll_end_time") is not None
    progress: float | None = None
    if data["state"] == "COMPLETED":
        progress = 1.0
    elif total > 0 and scroll_done:
        progress = min(1.0, processed / total)
    started = _epoch(getattr(bulk_status, "processing_start_time", None) or data.get("processing_start_time"))
    ended = _epoch(getattr(bulk_status, "completed_time", None) or data.get("completed_time"))
    rate: float | None = None
    if started is not None and processed:
        elapsed = max((ended or dt.datetime.now(dt.UTC).timestamp()) - started, 1e-3)
        rate = processed / elapsed
    eta: float | None = None
    if rate and total and scroll_done and data["state"] not in TERMINAL:
        eta = max(0.0, (total - processed) / rate)
    data |= {
        "progress": progress,
        "rate": None if rate is None else round(rate, 3),
        "eta_s": None if eta is None else round(eta, 1),
    }
    return data


def statuses_data(
    node: Conveyor, username: str | None = None, state: str | None = None
) -> list[dict[str, Any]]:
    """The statuses the Bulk Service keeps (of ``username`` / in ``state`` only), newest first."""
    service = _service(node)
    found = [_listed(s) for s in service.statuses(username)]
    if state:
        found = [s for s in found if s["state"] == state.upper()]
    return sorted(found, key=lambda s: s.get("submit_time") or "", reverse=True)


def _listed(bulk_status: Any) -> dict[str, Any]:
    """:func:`status_data` for a listing: ``damaged`` is true (state UNKNOWN, ``error_message``
    saying why) for a stored status that cannot be decoded or shown, so the others still list."""
    from conveyor.bulk.status import BulkStatus

    error = bulk_status.error_message
    if not getattr(bulk_status, "damaged", False):
        try:
            return status_data(bulk_status) | {"damaged": False}
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:  # decoded, but nonsense
            error = f"stored status cannot be shown: {type(exc).__name__}: {exc}"
    data = status_data(BulkStatus.unknown_of(bulk_status.command_id))
    data |= {"error_message": error, "damaged": True}
    if hasattr(bulk_status, "size"):
        data["size"] = bulk_status.size
    return data


def _known(node: Conveyor, command_id: str) -> Any:
    """The status of ``command_id`` (a damaged one included); 404 when unknown."""
    found = _service(node).status(command_id)
    if _state(found.state) == "UNKNOWN" and not getattr(found, "damaged", False):
        not_found(f"unknown bulk command {command_id!r}")
    return found


def _http_enabled(service: Any, action: str) -> bool:
    """Whether ``action`` may be submitted over HTTP (404 when unknown or disabled)."""
    from conveyor.errors import BulkValidationError

    try:
        spec = service.action_spec(action)
    except BulkValidationError as exc:
        not_found(str(exc))
    return bool(spec.http_enabled)


@router.get("", summary="Bulk command statuses, filtered by user and state")
def list_statuses(
    node: NodeDep,
    user: Annotated[str | None, Query(max_length=200, description="Only this user's commands")] = None,
    state: Annotated[str | None, Query(pattern="^[A-Za-z_]+$", max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[dict[str, Any]]:
    """The known bulk commands, newest first."""
    if state is not None and state.upper() not in STATES:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"unknown state {state!r}; states: {', '.join(STATES)}"
        )
    return statuses_data(node, user, state)[:limit]


@router.post(
    "/{action}",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Submit a bulk command (actions marked http_enabled only)",
    responses={
        403: {"description": "The action is not enabled over HTTP"},
        404: {"description": "Unknown action"},
    },
)
def submit(node: NodeDep, action: str, body: Annotated[BulkSubmission, Body()]) -> dict[str, Any]:
    """Run ``action`` over the documents ``query`` selects; returns the new command's status."""
    from conveyor.bulk import BulkCommand

    service = _service(node)
    if not _http_enabled(service, action):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"bulk action {action!r} is not enabled over HTTP (set http_enabled in [[bulk.actions]])",
        )
    args: dict[str, Any] = {
        "action": action,
        "query": body.query,
        "params": body.params,
        "username": body.username,
    }
    for name in ("bucket_size", "batch_size", "query_limit"):
        if getattr(body, name) is not None:
            args[name] = getattr(body, name)
    command_id = service.submit(BulkCommand(**args))
    return status_data(service.status(command_id))


@router.get(
    "/{command_id}", summary="The status of a bulk command", responses={404: {"description": "Unknown"}}
)
def get_status(node: NodeDep, command_id: str) -> dict[str, Any]:
    """State, counters, times, progress, rate and ETA of ``command_id`` (``damaged`` when its
    stored status cannot be decoded)."""
    found = _known(node, command_id)
    return _listed(found) if getattr(found, "damaged", False) else status_data(found)


@router.put(
    "/{command_id}/abort", summary="Abort a bulk command", responses={404: {"description": "Unknown"}}
)
def abort(node: NodeDep, command_id: str) -> dict[str, Any]:
    """Stop ``command_id``: no more buckets are processed; returns its status. A damaged stored
    status is replaced by an ABORTED one (``error_message`` says so; its counters are lost)."""
    _known(node, command_id)
    return status_data(_service(node).abort(command_id))


@router.get(
    "/{command_id}/result",
    summary="Download the result of a bulk command (csvExport)",
    responses={
        404: {"description": "Unknown command or no downloadable result"},
        409: {"description": "Not completed yet"},
    },
)
def result(node: NodeDep, command_id: str) -> Response:
    """The file a command produced (``csvExport``'s CSV), once it completed."""
    found = _known(node, command_id)
    if getattr(found, "damaged", False):
        raise HTTPException(status.HTTP_409_CONFLICT, f"bulk command {command_id!r}: {found.error_message}")
    if _state(found.state) != "COMPLETED":
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"bulk command {command_id!r} is {_state(found.state)}, its result is ready once COMPLETED",
        )
    blob = _service(node).download(command_id)
    if blob is None:
        not_found(f"bulk command {command_id!r} has no downloadable result")
    filename = blob.filename or f"{found.action or 'result'}-{command_id}"
    media_type = blob.mimetype or "application/octet-stream"
    if blob.path is not None and Path(blob.path).is_file():
        return FileResponse(blob.path, filename=filename, media_type=media_type)
    return Response(
        blob.read_bytes(),
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
