"""The host's own ASGI middleware: one class per concern, each refusing one kind of request.

- ``BearerTokenMiddleware``: with a token configured, a request to ``/api`` or ``/_platform``
  without ``Authorization: Bearer <token>`` gets a 401 (``?token=`` stands in for the header on
  the SSE stream and the dashboard only, where a browser cannot send headers).
- ``BodyLimitMiddleware``: a body over the host's limit gets a 413 (from ``Content-Length``
  before the body is read, or while it arrives); a ``Content-Length`` that is not a number, a 400.
- ``PlatformContextMiddleware``: refuses nothing; makes ``get_platform()`` answer inside routes.

The invariant: a middleware that refuses says so in its ``refusals`` (status, what, and to which
method and path), and decides with the same ``Refusal.guards`` it publishes, so ``/openapi.json``
(which derives its 401/403/413/415 answers from them) cannot list a refusal the code does not
give, nor miss one it does. ``host.security`` holds the browser guards, built the same way.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from host.errors import ApiError, error_response
from platform_shim.platform import current_platform

if TYPE_CHECKING:
    from platform_shim.platform import Platform

__all__ = [
    "BearerTokenMiddleware",
    "BodyLimitMiddleware",
    "PlatformContextMiddleware",
    "Refusal",
    "Refuses",
    "query_token",
]


def _any_request(kind: str, method: str, path: str) -> bool:
    return True


@dataclass(frozen=True)
class Refusal:
    """One answer a middleware gives instead of passing a request on.

    ``guards(kind, method, path)`` says which requests it may refuse: ``kind`` is ``"http"`` or
    ``"websocket"``, ``method`` upper-case (``"GET"`` for a handshake), ``path`` a concrete path
    or an OpenAPI path template (the checks are on prefixes, so both read the same)."""

    status: int
    description: str
    guards: Callable[[str, str, str], bool] = _any_request


class Refuses(Protocol):
    """A middleware class that publishes what it refuses."""

    refusals: ClassVar[tuple[Refusal, ...]]


def query_token(query: QueryParams) -> str | None:
    """The ``?token=`` of a query, the first when there are several (as the dashboard pages echo)."""
    values = query.getlist("token")
    return values[0] if values else None


def _needs_token(kind: str, method: str, path: str) -> bool:
    return kind == "http" and (path.startswith("/api") or path.startswith("/_platform"))


class BearerTokenMiddleware:
    """401 for a request to ``/api`` or ``/_platform`` without the host's bearer token.

    Off when no token is configured. The WebSocket (``/_rt/ws``) checks its token itself."""

    refusals: ClassVar[tuple[Refusal, ...]] = (
        Refusal(
            401,
            "the host has a token and the request did not carry it"
            " ('Authorization: Bearer <token>')",
            _needs_token,
        ),
    )

    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.token
            and scope["type"] == "http"
            and _needs_token("http", scope["method"], scope["path"])
            and not self.authorized(scope)
        ):
            await error_response(
                401,
                "missing or wrong 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def authorized(self, scope: Scope) -> bool:
        """Whether the request carries the token, in its header or (where allowed) its query."""
        expected = (self.token or "").encode()
        given = Headers(scope=scope).get("authorization", "")
        if given.startswith("Bearer "):
            return hmac.compare_digest(given[7:].encode(), expected)
        # EventSource cannot send headers: the SSE stream and the dashboard take ?token= too
        # (only those: a token in a URL ends up in logs and histories).
        path: str = scope["path"]
        if not (path == "/api/events/stream" or path.startswith("/_platform")):
            return False
        token = query_token(QueryParams(scope.get("query_string", b"")))
        return token is not None and hmac.compare_digest(token.encode(), expected)


def _bad_length(length: str) -> bool:
    # isdigit() alone admits "²" and other non-ASCII digits, which int() then rejects or misreads.
    return not (length.isascii() and length.isdigit())


class BodyLimitMiddleware:
    """413 for a request body over ``max_body`` bytes; 400 for a ``Content-Length`` that is not
    a number.

    A declared length is checked before anything reads the body; a chunked body is counted as
    it arrives, and the read that passes the limit raises the 413 (``ApiError``)."""

    refusals: ClassVar[tuple[Refusal, ...]] = (
        Refusal(413, "the body is over the host's limit (10 MiB by default, --max-body)"),
        Refusal(400, "a Content-Length that is not a number"),
    )

    def __init__(self, app: ASGIApp, *, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body
        length = Headers(scope=scope).get("content-length")
        if length is not None and (_bad_length(length) or int(length) > limit):
            status, detail = (
                (400, "bad Content-Length")
                if _bad_length(length)
                else (413, f"the body is over the {limit}-byte limit")
            )
            await error_response(status, detail)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise ApiError(413, f"the body is over the {limit}-byte limit")
            return message

        await self.app(scope, limited_receive, send)


class PlatformContextMiddleware:
    """``get_platform()`` returns the host's platform while a request is handled (refuses nothing).

    ``platform()`` is entered per request: there is none before the lifespan started the host,
    and a standby host's client platform is held (kept open) until the request ends."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        platform: Callable[[], AbstractContextManager[Platform | None]],
    ) -> None:
        self.app = app
        self.platform = platform

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self.platform() as platform:
            if platform is None:
                await self.app(scope, receive, send)
                return
            token = current_platform.set(platform)
            try:
                await self.app(scope, receive, send)
            finally:
                current_platform.reset(token)
