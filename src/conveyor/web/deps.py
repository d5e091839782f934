"""What every route module shares: the node behind the app, and clear 404s."""

from __future__ import annotations

from typing import Annotated, NoReturn

from fastapi import Depends, HTTPException, Request, status

from conveyor.runtime.node import Conveyor

__all__ = ["NodeDep", "bad_request", "get_node", "not_found"]


def get_node(request: Request) -> Conveyor:
    """FastAPI dependency: the node this app manages."""
    node: Conveyor = request.app.state.node
    return node


def not_found(message: str) -> NoReturn:
    """Raise a 404 whose body says what was not found (``{"detail": message}``)."""
    raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=message)


def bad_request(message: str) -> NoReturn:
    """Raise a 400 whose body says what was wrong."""
    raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail=message)


NodeDep = Annotated[Conveyor, Depends(get_node)]
"""A route parameter receiving the node."""
