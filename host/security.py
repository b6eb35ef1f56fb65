"""What keeps the web pages a user visits from driving the host: one ASGI middleware per concern.

A host on 127.0.0.1 without a token answers anyone who can reach it, and every page open in
the user's browser can: it may send requests to ``http://127.0.0.1:3001`` (it cannot read the
answers, but a POST needs no answer to cancel a run), and a domain whose DNS answer turns into
127.0.0.1 after the page loaded (DNS rebinding) makes the host the page's own origin, answers
readable. Careful dev servers (Jupyter, Vite) close both doors; so do these middlewares:

- ``TrustedHostMiddleware``: the ``Host`` header must name a loopback address (127.0.0.0/8,
  ``localhost``, ``[::1]``, any port) or a name the user configured (``PLATFORM_ALLOWED_HOSTS``).
  A rebinding page's requests carry its own domain, so they get a 403, reads included.
- ``SameOriginMiddleware``: a POST, PUT, PATCH or DELETE to the platform's routes whose ``Origin``
  is not the host itself (or, without ``Origin``, whose ``Sec-Fetch-Site`` says another site)
  gets a 403, as does a WebSocket handshake from another origin. Browsers send ``Origin`` on
  every such request, the dashboard's own included (its origin is the host's); the npm client
  (Node's fetch), curl and scripts send neither header and pass.
- ``JsonBodyMiddleware``: the platform's JSON routes refuse bodies typed as a form or as plain
  text (415). Those are the only types a page can send to another origin without the browser
  first asking permission (a CORS preflight, which this host never grants), so even a browser
  that omitted ``Origin`` could not reach a JSON route.

The first two guard the default mode only: with a token every platform request must carry
``Authorization: Bearer``, which no page can add to a request for another origin, and a host
bound to another address is reached under names only its user knows. The third always holds.
The user's own routes (``routes/``) are behind the host check but choose their own policy
otherwise: they are the app's public face. Each class lists what it refuses in ``refusals``
(``host.middleware.Refusal``) and decides with the same predicate; ``/openapi.json`` derives its
403 and 415 answers from them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from host.config import is_loopback
from host.errors import error_response
from host.middleware import Refusal

__all__ = [
    "JsonBodyMiddleware",
    "SameOriginMiddleware",
    "TrustedHostMiddleware",
    "is_platform_path",
]

_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# What a page may send cross-origin without a preflight (the Fetch standard's CORS-safelisted
# request content types).
_SIMPLE_TYPES = frozenset(
    {"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}
)
_PLATFORM_PREFIXES = ("/api/", "/_platform/", "/_rt/")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def is_platform_path(path: str) -> bool:
    """The platform's own routes (API, dashboard, realtime), not the user's."""
    return path.startswith(_PLATFORM_PREFIXES) or path in ("/api", "/_platform")


def _split_host(value: str) -> tuple[str, int | None] | None:
    """``host[:port]`` of a Host header as (lower-case host without brackets, port); None if bad."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
    else:
        host, _, port_text = value.partition(":")
        rest = ":" + port_text if port_text or value.endswith(":") else ""
    if not host:
        return None
    if not rest:
        return host, None
    if not rest.startswith(":") or not rest[1:].isdigit() or not rest[1:].isascii():
        return None
    return host, int(rest[1:])


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    if scope["type"] == "websocket":
        # Closing before accepting is answered with a 403 by the server.
        await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
        return
    await error_response(status, detail)(scope, receive, send)


class TrustedHostMiddleware:
    """403 for a request whose ``Host`` is neither loopback nor a configured name (any path)."""

    refusals: ClassVar[tuple[Refusal, ...]] = (
        Refusal(
            403,
            "the Host header is neither a loopback address nor a name in PLATFORM_ALLOWED_HOSTS"
            " (no token configured)",
        ),
    )

    def __init__(self, app: ASGIApp, *, allowed: Iterable[str] = (), enabled: bool = True) -> None:
        self.app = app
        self.allowed = frozenset(
            name.strip().lower().strip("[]") for name in allowed if name.strip()
        )
        self.enabled = enabled

    def trusted(self, host_header: str | None) -> bool:
        if host_header is None:
            # Browsers always send Host; a client without one (HTTP/1.0) is no web page.
            return True
        parsed = _split_host(host_header)
        if parsed is None:
            return False
        host = parsed[0]
        return is_loopback(host) or host in self.allowed or "*" in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host")
        if not self.trusted(host):
            await _refuse(
                scope,
                receive,
                send,
                403,
                f"Host {host!r} is not this host's: it answers to 127.0.0.1, localhost and [::1]"
                " (add other names to PLATFORM_ALLOWED_HOSTS)",
            )
            return
        await self.app(scope, receive, send)


def _same_origin(origin: str, host_header: str | None, scheme: str) -> bool:
    """Whether ``Origin`` names the host the request was sent to (scheme, name and port)."""
    if host_header is None:
        return False
    try:
        parts = urlsplit(origin.strip())
        origin_port = parts.port
    except ValueError:
        return False
    target = _split_host(host_header)
    if target is None or not parts.hostname:
        return False
    scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    if parts.scheme != scheme:
        return False
    default = _DEFAULT_PORTS.get(scheme)
    return parts.hostname == target[0] and (origin_port or default) == (target[1] or default)


def _cross_site_guarded(kind: str, method: str, path: str) -> bool:
    return is_platform_path(path) and (kind == "websocket" or method in _UNSAFE)


class SameOriginMiddleware:
    """403 for a state-changing request (or a WebSocket) to the platform from another site."""

    refusals: ClassVar[tuple[Refusal, ...]] = (
        Refusal(
            403,
            "a POST, PUT, PATCH or DELETE (or a WebSocket handshake) from a web page of another"
            " origin (no token configured)",
            _cross_site_guarded,
        ),
    )

    def __init__(self, app: ASGIApp, *, enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if (
            not self.enabled
            or kind not in ("http", "websocket")
            or not _cross_site_guarded(kind, scope.get("method", "GET"), scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is not None:
            # "null" (a sandboxed frame, a page from a file) is never this host.
            allowed = _same_origin(origin, headers.get("host"), scope.get("scheme", "http"))
            why = f"Origin {origin!r} is not this host"
        else:
            site = headers.get("sec-fetch-site", "none").strip().lower()
            # "same-site" includes another port of localhost: another dev server's pages.
            allowed = site in ("same-origin", "none")
            why = f"a request from another site (Sec-Fetch-Site: {site})"
        if not allowed:
            method = scope.get("method", "WebSocket")
            await _refuse(
                scope,
                receive,
                send,
                403,
                f"{why}: {method} {scope['path']} is refused to web pages of other origins",
            )
            return
        await self.app(scope, receive, send)


def _json_route(kind: str, method: str, path: str) -> bool:
    # Storage objects are bytes of any type.
    return (
        kind == "http"
        and method in _UNSAFE
        and is_platform_path(path)
        and not path.startswith("/api/storage/")
    )


class JsonBodyMiddleware:
    """415 for a form or plain-text body sent to one of the platform's JSON routes."""

    refusals: ClassVar[tuple[Refusal, ...]] = (
        Refusal(
            415,
            "a form or plain-text body (send JSON with 'Content-Type: application/json')",
            _json_route,
        ),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _json_route("http", scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        content_type = Headers(scope=scope).get("content-type")
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media in _SIMPLE_TYPES:
            await _refuse(
                scope,
                receive,
                send,
                415,
                f"{scope['method']} {scope['path']} takes a JSON body, not {media}: send it with"
                " 'Content-Type: application/json' (curl: --json '...' or"
                " -H 'Content-Type: application/json')",
            )
            return
        await self.app(scope, receive, send)
