"""The dashboard: one server-rendered page (Jinja2) that a small script refreshes from
``GET /api/v1/overview``; and the sign-in page used when the node has an API token."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from conveyor.runtime.node import Conveyor
from conveyor.web.deps import NodeDep
from conveyor.web.security import COOKIE_NAME, is_authorized, token_matches

__all__ = ["overview_data", "router"]

logger = logging.getLogger("conveyor.web")
router = APIRouter(tags=["dashboard"])
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")

MAX_BULK_ROWS = 20
MAX_DEAD_LETTERS = 20
FAVICON = Path(__file__).parent / "static" / "favicon.ico"


def _section(name: str, gather: Any) -> tuple[Any, str | None]:
    try:
        return gather(), None
    except HTTPException as exc:
        return [], str(exc.detail)
    except Exception as exc:  # the page shows what failed and keeps the other sections
        logger.exception("dashboard: cannot read %s", name)
        return [], f"{type(exc).__name__}: {exc}"


def overview_data(node: Conveyor) -> dict[str, Any]:
    """Everything the dashboard shows, in one JSON-able dict (errors per section)."""
    from conveyor.web.bulk import bulk_available, statuses_data
    from conveyor.web.nodes import node_infos
    from conveyor.web.streams import consumer_infos, processor_infos, stream_infos
    from conveyor.web.work import dead_letter_count, dead_letter_infos, queue_infos

    errors: dict[str, str] = {}
    sections: dict[str, Any] = {}
    gatherers: dict[str, Any] = {
        "nodes": lambda: [n.model_dump() for n in node_infos(node)],
        "queues": lambda: [q.model_dump() for q in queue_infos(node)],
        "streams": lambda: [s.model_dump() for s in stream_infos(node)],
        "consumers": lambda: [c.model_dump() for c in consumer_infos(node)],
        "processors": lambda: processor_infos(node),
        "dead_letters": lambda: [d.model_dump() for d in dead_letter_infos(node, MAX_DEAD_LETTERS)],
        "dead_letter_count": lambda: dead_letter_count(node),
        "bulk": (lambda: statuses_data(node)[:MAX_BULK_ROWS]) if bulk_available() else list,
    }
    for name, gather in gatherers.items():
        sections[name], error = _section(name, gather)
        if error:
            errors[name] = error
    return {
        "node_id": node.node_id,
        "time": time.time(),
        "bulk_available": bulk_available(),
        **sections,
        "errors": errors,
    }


@router.get("/api/v1/overview", summary="Everything the dashboard shows, in one call")
def overview(node: NodeDep) -> dict[str, Any]:
    """Nodes, queues, streams, consumers (lag and latency), processors, dead letters and the most
    recent bulk commands; ``errors`` names the sections that could not be read."""
    return overview_data(node)


@router.get("/", include_in_schema=False, response_model=None)
def page(request: Request, node: NodeDep) -> Response:
    """The dashboard (or the sign-in page, when the node has a token the browser did not give)."""
    if not is_authorized(request):
        return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    return templates.TemplateResponse(request, "dashboard.html", {"data": overview_data(node)})


@router.get("/favicon.ico", include_in_schema=False, response_class=FileResponse)
def favicon() -> FileResponse:
    """The dashboard's icon (public, as browsers ask for it without credentials)."""
    return FileResponse(FAVICON, media_type="image/x-icon", headers={"Cache-Control": "max-age=86400"})


@router.get("/login", include_in_schema=False, response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    """A form asking for the API token."""
    return templates.TemplateResponse(request, "login.html", {})


class Login(BaseModel):
    """The API token, given once by the browser to get a session cookie."""

    token: str = Field(min_length=1, max_length=1000)


@router.post("/login", include_in_schema=False)
def login(request: Request, body: Annotated[Login, Body()]) -> Response:
    """Check the token and set it as an HttpOnly, SameSite=Strict cookie."""
    expected: str | None = request.app.state.token
    if expected is not None and not token_matches(expected, body.token):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid API token")
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.set_cookie(
        COOKIE_NAME, body.token, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response
