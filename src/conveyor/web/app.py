"""``create_app(node, token=None)``: the FastAPI application of the management API and dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from conveyor.errors import (
    BackendUnavailableError,
    ConsumerGroupActiveError,
    ConveyorError,
    LogNotFoundError,
    TailerAlreadyExistsError,
)
from conveyor.runtime.node import Conveyor
from conveyor.web import bulk, dashboard, health, history, metrics, nodes, streams, work
from conveyor.web.security import RequestGuard, is_loopback, require_token

__all__ = ["API_VERSION", "create_app"]

API_VERSION = "1"
HERE = Path(__file__).parent

DESCRIPTION = """Management API of a Conveyor node, following Nuxeo's management REST API where it
has one: bulk commands, streams and consumers, work queues, the cluster's nodes, health probes
and Prometheus metrics. When the node has an API token, send it as `Authorization: Bearer <token>`
(every route but `/health`). Without the token, a state-changing request (POST, PUT, PATCH, DELETE)
must send `Content-Type: application/json` (403 otherwise); request bodies are limited to
`[web] max_body_bytes` (413)."""


def _status_for(exc: ConveyorError) -> int:
    if isinstance(exc, LogNotFoundError):
        return 404
    if isinstance(exc, (TailerAlreadyExistsError, ConsumerGroupActiveError)):
        return 409
    if isinstance(exc, BackendUnavailableError):
        return 503
    if isinstance(exc, (ValueError, LookupError)):
        return 400
    return 500


async def _conveyor_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ConveyorError)
    code = _status_for(exc)
    detail = str(exc)
    if isinstance(exc, TailerAlreadyExistsError):
        detail += " (stop the consumers of this group first)"
    return JSONResponse({"detail": detail, "error": type(exc).__name__}, status_code=code)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    kept: history.History = app.state.history
    kept.start()
    try:
        yield
    finally:
        await asyncio.to_thread(kept.stop)


def _printable(value: Any) -> Any:
    """``value`` with its bytes (a body sent with a non-JSON content type) decoded, replacing what
    is not UTF-8, and its infinite or NaN numbers (``1e400``, ``NaN`` in a JSON body) as strings:
    FastAPI's own encoding of a validation error fails on both (HTTP 500)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {key: _printable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_printable(item) for item in value]
    return value


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": jsonable_encoder(_printable(exc.errors()))}, status_code=422)


def create_app(
    node: Conveyor,
    token: str | None = None,
    *,
    host: str | None = None,
    history_interval_s: float | None = None,
    history_window_s: float | None = None,
) -> FastAPI:
    """The management app of ``node``; with ``token``, every route but ``/health`` requires it.

    ``host`` is the address the server binds (default ``[web] host``): on a non-loopback one
    without ``[web] allowed_hosts`` any ``Host`` header is accepted (the token being required
    there), otherwise only loopback names, the connection's own address and ``allowed_hosts``.
    While the app runs (its lifespan), it samples the dashboard's charts every
    ``history_interval_s`` seconds over ``history_window_s`` (see :mod:`conveyor.web.history`).
    """
    web = node.settings.web
    bind = host or web.host
    app = FastAPI(
        title="Conveyor management API",
        version=API_VERSION,
        description=DESCRIPTION,
        dependencies=[Depends(require_token)],
        lifespan=_lifespan,
    )
    app.state.node = node
    app.state.token = token
    app.state.metrics_registry = metrics.registry_for(node)
    app.state.history = history.History(
        node,
        history.SAMPLE_INTERVAL_S if history_interval_s is None else history_interval_s,
        history.WINDOW_S if history_window_s is None else history_window_s,
    )
    app.add_exception_handler(ConveyorError, _conveyor_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for module in (health, metrics, nodes, work, streams, bulk, history, dashboard):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_middleware(
        RequestGuard,
        token=token,
        allowed_hosts=web.allowed_hosts,
        any_host=not web.allowed_hosts and not is_loopback(bind),
        max_body_bytes=web.max_body_bytes,
    )
    return app
