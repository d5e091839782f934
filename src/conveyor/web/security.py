"""Who may use the management API: loopback only by default, a bearer token otherwise.

Binding an address other than the loopback one requires a token (``[web] token`` or the
``CONVEYOR_WEB_TOKEN`` environment variable); without one the server refuses to start. When a
token is set every route but ``/health`` and ``/static`` asks for it, as ``Authorization: Bearer
<token>`` (API clients, Prometheus) or as the cookie the dashboard's sign-in form sets.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Mapping

from fastapi import HTTPException, Request, status

from conveyor.errors import ConfigurationError
from conveyor.registry import redact_url

__all__ = [
    "COOKIE_NAME",
    "PUBLIC_PATHS",
    "PUBLIC_PREFIXES",
    "TOKEN_ENV",
    "check_bind",
    "is_authorized",
    "is_loopback",
    "is_public_path",
    "redact",
    "request_token",
    "require_token",
    "resolve_token",
    "token_matches",
]

TOKEN_ENV = "CONVEYOR_WEB_TOKEN"
COOKIE_NAME = "conveyor_token"
PUBLIC_PATHS = frozenset({"/", "/health", "/login", "/favicon.ico"})
"""Paths served without a token: probes, the sign-in page, and the dashboard page (which sends
visitors without a valid token to the sign-in page itself)."""
PUBLIC_PREFIXES = ("/static/",)

MIN_TOKEN_LENGTH = 16


def resolve_token(configured: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The API token: the configured one, else ``$CONVEYOR_WEB_TOKEN``, else None."""
    environ = os.environ if env is None else env
    token = configured or environ.get(TOKEN_ENV) or None
    if token is not None:
        token = token.strip()
        if len(token) < MIN_TOKEN_LENGTH:
            raise ConfigurationError(
                f"web token is too short ({len(token)} characters): use at least {MIN_TOKEN_LENGTH}"
            )
    return token


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (``127.0.0.0/8``, ``::1``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse (``ConfigurationError``) to serve on a non-loopback ``host`` without a token."""
    if not is_loopback(host) and not token:
        raise ConfigurationError(
            f"refusing to serve the management API on {host!r} without an API token: "
            f"set [web] token in the configuration or the {TOKEN_ENV} environment variable "
            "(or bind 127.0.0.1)"
        )


def token_matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a presented token with the expected one."""
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def request_token(request: Request) -> str | None:
    """The token a request presents: bearer header first, then the dashboard cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE_NAME)


def is_public_path(path: str) -> bool:
    """Whether ``path`` is served without a token."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def is_authorized(request: Request) -> bool:
    """Whether the app has no token or the request presents it."""
    expected: str | None = request.app.state.token
    return expected is None or token_matches(expected, request_token(request))


def require_token(request: Request) -> None:
    """FastAPI dependency: 401 unless the app has no token or the request presents it."""
    if is_public_path(request.url.path):
        return
    if not is_authorized(request):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid API token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


def redact(url: str) -> str:
    """``url`` with its password masked (``redis://:***@host``)."""
    return redact_url(url)
