"""The cluster's nodes (from their heartbeats) and this node's own description."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from pydantic import BaseModel

from conveyor.web.deps import NodeDep, not_found

if TYPE_CHECKING:
    from conveyor.runtime.node import Conveyor

__all__ = ["NodeInfo", "node_infos", "router"]

router = APIRouter(prefix="/api/v1", tags=["nodes"])


class NodeInfo(BaseModel):
    """A node as it advertises itself, with the age of its last heartbeat.

    ``damaged`` marks a heartbeat that cannot be decoded: ``error`` says why, the other fields
    are empty.
    """

    node_id: str
    host: str
    started_at: float
    heartbeat_at: float
    heartbeat_age_s: float
    queues: list[str]
    processors: list[str]
    this_node: bool
    damaged: bool = False
    error: str | None = None


def node_infos(node: Conveyor) -> list[NodeInfo]:
    """The nodes that sent a heartbeat recently (this one always included once started)."""
    now = time.time()
    seen = node.nodes()
    if not any(info["node_id"] == node.node_id for info in seen):
        seen.append(node.describe())
    return sorted(
        (
            NodeInfo(
                node_id=info["node_id"],
                host=info.get("host", ""),
                started_at=info.get("started_at", 0.0),
                heartbeat_at=info.get("heartbeat_at", 0.0),
                heartbeat_age_s=round(max(0.0, now - info.get("heartbeat_at", now)), 3),
                queues=list(info.get("queues", [])),
                processors=list(info.get("processors", [])),
                this_node=info["node_id"] == node.node_id,
                damaged=bool(info.get("damaged", False)),
                error=info.get("error"),
            )
            for info in seen
        ),
        key=lambda n: n.node_id,
    )


@router.get("/nodes", summary="The cluster's nodes with their heartbeat, queues and computations")
def nodes(node: NodeDep) -> list[NodeInfo]:
    """Every node with a recent heartbeat."""
    return node_infos(node)


@router.get("/nodes/{node_id}", summary="One node of the cluster")
def one_node(node: NodeDep, node_id: str) -> NodeInfo:
    """The node ``node_id`` (404 when it sent no recent heartbeat)."""
    for info in node_infos(node):
        if info.node_id == node_id:
            return info
    not_found(f"unknown node {node_id!r} (no recent heartbeat)")


@router.get("/node", summary="This node: id, uptime and effective configuration (secrets masked)")
def this_node(node: NodeDep) -> dict[str, Any]:
    """The node serving this API, with its settings (passwords in URLs and the token masked)."""
    return {
        "node_id": node.node_id,
        "started_at": node.started_at,
        "uptime_s": round(time.time() - node.started_at, 3),
        "processors": sorted(node.processors),
        "settings": node.settings.redacted(),
    }
