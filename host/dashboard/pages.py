"""The dashboard's HTML pages and their static files (``static/``, shipped in the package).

The pages are static shells: every piece of data is fetched and rendered by the page's script
with ``textContent``, never put into HTML here, so user data cannot inject markup. The one thing
filled in server-side is the ``?token=`` a page was opened with, appended to its stylesheet and
script URLs (behind a token every ``/_platform`` request needs it, and a browser sends no
``Authorization`` header for ``<script src>``); it is HTML-escaped like any other text.
"""

from __future__ import annotations

import html
from importlib import resources
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from host.errors import ApiError
from host.middleware import query_token
from platform_shim.platform import Platform

__all__ = ["routes"]

# RFC 3986 query characters, less the ones that mean something in a form-encoded query (&=+;#).
_QUERY_SAFE = "!$'()*,/:?@~"
_STATIC = resources.files("host.dashboard") / "static"
_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}

# Defence in depth behind "textContent only": no inline script, nothing from elsewhere, and no
# Referer carrying a ?token= to another site.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def _token_query(request: Request) -> str:
    """``?token=...`` carrying the token the page was opened with (the one the host checked:
    ``query_token``), or ``""``. Percent-encoded again, keeping what a URL's query may hold as
    it is (so ``?token=tok'en`` stays ``tok'en``); the host decodes it back to the same token."""
    token = query_token(request.query_params)
    return "" if token is None else "?token=" + quote(token, safe=_QUERY_SAFE)


def _page(name: str, request: Request, status: int = 200) -> Response:
    text = (_STATIC / name).read_text(encoding="utf-8")
    text = text.replace("{{token}}", html.escape(_token_query(request), quote=True))
    return Response(
        text, status_code=status, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS
    )


async def runs_page(request: Request) -> Response:
    return _page("runs.html", request)


async def run_page(request: Request) -> Response:
    # The page says "no such run" itself; the status tells scripts and crawlers the same.
    run_id = request.path_params["run_id"]
    platform: Platform = request.app.state.platform
    known = await platform.workflows.handle(run_id).status() is not None
    return _page("run.html", request, 200 if known else 404)


async def events_page(request: Request) -> Response:
    return _page("events.html", request)


async def workflows_page(request: Request) -> Response:
    return _page("workflows.html", request)


async def data_page(request: Request) -> Response:
    return _page("data.html", request)


async def to_runs(request: Request) -> Response:
    return RedirectResponse("/_platform/" + _token_query(request), status_code=308)


async def static_file(request: Request) -> Response:
    name: str = request.path_params["name"]
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or suffix not in _TYPES or not (_STATIC / name).is_file():
        raise ApiError(404, f"no dashboard file {name!r}")
    return Response(
        (_STATIC / name).read_bytes(),
        media_type=_TYPES[suffix],
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
    )


routes: list[BaseRoute] = [
    Route("/_platform", to_runs, methods=["GET"]),
    Route("/_platform/", runs_page, methods=["GET"]),
    Route("/_platform/runs/{run_id}", run_page, methods=["GET"]),
    Route("/_platform/events", events_page, methods=["GET"]),
    Route("/_platform/workflows", workflows_page, methods=["GET"]),
    Route("/_platform/data", data_page, methods=["GET"]),
    Route("/_platform/static/{name}", static_file, methods=["GET"]),
]
