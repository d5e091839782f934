"""Who may use the management API: loopback only by default, a bearer token otherwise.

Binding an address other than the loopback one requires a token (``[web] token`` or the
``CONVEYOR_WEB_TOKEN`` environment variable); without one the server refuses to start. When a
token is set every route but ``/health`` and ``/static`` asks for it, as ``Authorization: Bearer
<token>`` (API clients, Prometheus) or as the cookie the dashboard's sign-in form sets.

:class:`RequestGuard` (an ASGI middleware around the whole app) decides from the request line and
headers alone, before any body is read: a ``Host`` not allowed (DNS rebinding) gets 400, a missing
token 401, a cross-site state-changing request 403, a body larger than ``[web] max_body_bytes``
413, a path or query string that is not percent-encoded UTF-8 400. A rejected request whose client
is still sending a large body is answered with ``Connection: close`` rather than drained.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import re
from collections.abc import Mapping, Sequence
from urllib.parse import unquote_to_bytes, urlsplit

from fastapi import HTTPException, Request, status
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.errors import ConfigurationError
from conveyor.registry import redact_url

__all__ = [
    "COOKIE_NAME",
    "PUBLIC_PATHS",
    "PUBLIC_PREFIXES",
    "TOKEN_ENV",
    "UNSAFE_METHODS",
    "RequestGuard",
    "check_bind",
    "host_matches",
    "is_authorized",
    "is_loopback",
    "is_public_path",
    "redact",
    "request_token",
    "require_token",
    "resolve_token",
    "split_authority",
    "token_matches",
]

TOKEN_ENV = "CONVEYOR_WEB_TOKEN"
COOKIE_NAME = "conveyor_token"
PUBLIC_PATHS = frozenset(
    {"/", "/health", "/login", "/favicon.ico", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
)
"""Paths served without a token: probes, the sign-in page, the API's description, and the
dashboard page (which sends visitors without a valid token to the sign-in page itself)."""
PUBLIC_PREFIXES = ("/static/",)

MIN_TOKEN_LENGTH = 16
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""Methods that change state: refused without a token unless the request is same-origin or JSON."""


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


_AUTHORITY = re.compile(r"^(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9_.-]+))(?::(?P<port>[0-9]{1,5}))?$")
_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def split_authority(authority: str) -> tuple[str, int | None] | None:
    """``(host, port)`` of a ``Host`` header value (``name:port``, ``[v6]:port``), the host lower-case
    and without brackets or trailing dot; None when it is not a valid authority."""
    match = _AUTHORITY.match(authority.strip().lower())
    if match is None:
        return None
    host = match["v6"] or match["name"].rstrip(".")
    if match["v6"]:
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            return None
    port = int(match["port"]) if match["port"] else None
    return host, port


def host_matches(host: str, patterns: Sequence[str]) -> bool:
    """Whether ``host`` (lower-case) matches one of ``patterns``: a name or IP address, ``*.domain``
    (its subdomains), or ``*`` (anything)."""
    for pattern in patterns:
        if pattern in ("*", host) or (pattern.startswith("*.") and host.endswith(pattern[1:])):
            return True
    return False


def _same_address(host: str, address: str) -> bool:
    try:
        return ipaddress.ip_address(host) == ipaddress.ip_address(address)
    except ValueError:
        return False


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _decoding_error(what: str, raw: bytes) -> str | None:
    if _BAD_PERCENT.search(raw):
        return f"bad percent-encoding in the {what} (a '%' must be followed by two hex digits)"
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return f"the {what} is not UTF-8 once percent-decoded (e.g. an unpaired surrogate)"
    return None


def _json_error(body: bytes) -> str | None:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "the JSON body is not valid UTF-8"
    try:
        value = json.loads(text)
    except ValueError:
        return None  # the route answers 422 with where the JSON is broken
    except RecursionError:
        return "the JSON body is nested too deeply"
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return "the JSON body holds an unpaired surrogate escape (\\ud800 to \\udfff)"
    except RecursionError:
        return "the JSON body is nested too deeply"
    return None


def _error(status_code: int, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status_code, headers=headers or None)


class RequestGuard:
    """ASGI middleware that checks a request before the app (or anything else) reads its body.

    In order: the ``Host`` header must be a loopback name or address, the address the connection
    came to, or match ``allowed_hosts`` (any Host with ``any_host``), else 400; with ``token``, a
    non-public path needs it (bearer header or dashboard cookie), else 401; a state-changing
    request (:data:`UNSAFE_METHODS`) without the bearer token must have a same-origin ``Origin``
    (or, without one, ``Referer``), or no such header and a JSON content type, else 403; a body
    declared larger than ``max_body_bytes`` gets 413, and so does a chunked one once it passes
    the limit; a path or query string that is not percent-encoded UTF-8 gets 400, and so does a
    JSON body with invalid UTF-8 or an unpaired surrogate escape. A body within the limit is read
    here and handed to the app whole.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        allowed_hosts: Sequence[str] = (),
        any_host: bool = False,
        max_body_bytes: int = 1024 * 1024,
    ) -> None:
        self.app = app
        self.token = token
        self.allowed_hosts = tuple(allowed_hosts)
        self.any_host = any_host
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = _content_length(headers)
        has_body = length is None or length > 0
        rejection = self._rejection(scope, headers, length)
        if rejection is not None:
            if has_body and (length is None or length > self.max_body_bytes):
                # close rather than drain what the client is still sending
                rejection.headers["connection"] = "close"
            await rejection(scope, receive, send)
            return
        if not has_body:
            await self.app(scope, receive, send)
            return
        body = await self._read_body(receive)
        if isinstance(body, JSONResponse):
            await body(scope, receive, send)
            return
        if body is None:
            return  # the client went away
        if _is_json(headers.get("content-type")) and (problem := _json_error(body)):
            await _error(status.HTTP_400_BAD_REQUEST, problem)(scope, receive, send)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _rejection(self, scope: Scope, headers: Headers, length: int | None) -> JSONResponse | None:
        host = split_authority(headers.get("host", ""))
        if not self._host_allowed(host, scope):
            shown = headers.get("host", "")[:100]
            return _error(
                status.HTTP_400_BAD_REQUEST,
                f"Host {shown!r} is not allowed: add the name clients use to [web] allowed_hosts "
                "(CONVEYOR_WEB_ALLOWED_HOSTS)",
            )
        if (
            self.token is not None
            and not is_public_path(scope["path"])
            and not token_matches(self.token, request_token(Request(scope)))
        ):
            return _error(
                status.HTTP_401_UNAUTHORIZED,
                "missing or invalid API token: send 'Authorization: Bearer <token>'",
                **{"www-authenticate": "Bearer"},
            )
        if (
            scope["method"] in UNSAFE_METHODS
            and not self._bearer_matches(headers)
            and not self._same_origin_or_json(headers, host)
        ):
            return _error(
                status.HTTP_403_FORBIDDEN,
                "cross-site request refused: a state-changing request without "
                "'Authorization: Bearer <token>' must come from this server's own pages "
                "(same-origin Origin or Referer) or have 'Content-Type: application/json'",
            )
        if length is not None and length > self.max_body_bytes:
            return _error(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"request body of {length} bytes is larger than [web] max_body_bytes ({self.max_body_bytes})",
            )
        for what, raw in (("path", scope.get("raw_path")), ("query string", scope.get("query_string"))):
            if isinstance(raw, bytes) and (problem := _decoding_error(what, raw)):
                return _error(status.HTTP_400_BAD_REQUEST, problem)
        return None

    def _host_allowed(self, host: tuple[str, int | None] | None, scope: Scope) -> bool:
        if self.any_host:
            return True
        if host is None:
            return False
        name = host[0]
        if is_loopback(name) or host_matches(name, self.allowed_hosts):
            return True
        # An IP literal naming the address the connection came to cannot be a rebound DNS name
        server: tuple[str, int | None] | None = scope.get("server")
        return server is not None and _same_address(name, str(server[0]))

    def _bearer_matches(self, headers: Headers) -> bool:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        return (
            self.token is not None and scheme.lower() == "bearer" and token_matches(self.token, value.strip())
        )

    def _same_origin_or_json(self, headers: Headers, host: tuple[str, int | None] | None) -> bool:
        source = headers.get("origin")
        if source is None:
            source = headers.get("referer")
        if source is None:
            return _is_json(headers.get("content-type"))
        try:
            parts = urlsplit(source)
            port = parts.port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        default = 443 if parts.scheme == "https" else 80
        name = parts.hostname.rstrip(".")
        if host is not None and host[0] == name and (host[1] or default) == (port or default):
            return True
        # behind a reverse proxy the Host header may be the upstream's: trust the configured names
        return host_matches(name, [p for p in self.allowed_hosts if p != "*"])

    async def _read_body(self, receive: Receive) -> bytes | JSONResponse | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return _error(
                    status.HTTP_413_CONTENT_TOO_LARGE,
                    f"request body larger than [web] max_body_bytes ({self.max_body_bytes})",
                    connection="close",
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _content_length(headers: Headers) -> int | None:
    """The declared body length: 0 without body, None when chunked (unknown)."""
    if "transfer-encoding" in headers:
        return None
    try:
        return int(headers.get("content-length", "0"))
    except ValueError:
        return None
