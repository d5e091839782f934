"""``GET /health``: probes of the backends and of the computations, Nuxeo's ``streamStatus`` included.

200 with ``"status": "ok"`` when every probe passes, 503 with ``"status": "failed"`` otherwise;
each probe says what it checked (URLs with passwords masked) and why it failed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from conveyor.registry import redact_url
from conveyor.web.deps import NodeDep

if TYPE_CHECKING:
    from conveyor.runtime.node import Conveyor

__all__ = ["health_report", "router"]

router = APIRouter(tags=["health"])


def _probe(check: Callable[[], dict[str, Any] | None], **info: Any) -> dict[str, Any]:
    try:
        extra = check() or {}
    except Exception as exc:  # a probe reports any failure instead of raising it
        return {"status": "failed", **info, "error": f"{type(exc).__name__}: {exc}"}
    return {"status": "ok", **info, **extra}


def stream_status(node: Conveyor) -> dict[str, Any]:
    """Nuxeo's ``streamStatus``: failed when a computation failed or terminated on its own."""
    failures = 0
    broken: list[str] = []
    from conveyor.web.streams import all_processors

    processors = all_processors(node)
    for name, processor in processors.items():
        for status in processor.status().values():
            failures += status.failures
            if status.state in ("failed", "terminated"):
                broken.append(f"{name}/{status.name}: {status.state} ({status.last_error or 'no error'})")
    if broken:
        return {"status": "failed", "failures": failures, "error": "; ".join(broken)}
    return {"status": "ok", "failures": failures, "processors": len(processors)}


class _ProbeFailed(Exception):
    pass


def _raise_failed(status: dict[str, Any]) -> dict[str, Any]:
    if status.pop("status") != "ok":
        raise _ProbeFailed(status.pop("error"))
    return status


def health_report(node: Conveyor) -> dict[str, Any]:
    """Every probe's result, and the overall ``status``."""
    settings = node.settings
    checks = {
        "log": _probe(
            lambda: {"streams": len(node.log_manager.list_all())}, url=redact_url(node.url(settings.log.url))
        ),
        "kv": _probe(lambda: {"nodes": len(node.nodes())}, url=redact_url(node.url(settings.kv.url))),
        "work": _probe(
            lambda: {"queues": len(node.work_manager.queue_ids())},
            url=redact_url(node.url(settings.work.url)),
        ),
        "streamStatus": _probe(lambda: _raise_failed(stream_status(node))),
    }
    ok = all(check["status"] == "ok" for check in checks.values())
    return {"status": "ok" if ok else "failed", "node_id": node.node_id, "checks": checks}


@router.get(
    "/health",
    summary="Health probes: backends reachable, computations not terminated",
    responses={503: {"description": "A probe failed"}},
)
def health(node: NodeDep) -> JSONResponse:
    """Probe results; status code 200 when healthy, 503 otherwise."""
    report = health_report(node)
    return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)
