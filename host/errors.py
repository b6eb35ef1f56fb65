"""Turning failures into JSON answers: a client's mistake is a 4xx, never a 500.

Every error answer is ``{"error": <code>, "detail": <message>}``. Errors raised by the
platform for bad input (``ValueError``, ``TypeError``, ``DuplicateKey``, unknown ids) map to
4xx; anything else is logged in full and answered with a bare 500 message, never a traceback.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from platform_shim.errors import (
    DuplicateKey,
    RunIdConflict,
    StoreError,
    UnknownRun,
    UnknownWorkflow,
)

__all__ = ["ApiError", "error_response", "exception_handlers", "json_response"]

log = logging.getLogger("host.http")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """An answer to give instead of a result."""

    def __init__(self, status: int, detail: Any, code: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code or _CODES.get(status, "error")


def json_response(
    content: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(content), status_code=status, media_type="application/json", headers=headers
    )


def error_response(
    status: int, detail: Any, code: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    if status in _UNREAD_BODY:
        # Answered without reading the request body (the token check, the body limit): the
        # server closes the connection after it, so say so, or a client reusing it would
        # send its next request into a closing socket.
        headers = {**(headers or {}), "Connection": "close"}
    return json_response(
        {"error": code or _CODES.get(status, "error"), "detail": detail}, status, headers
    )


_UNREAD_BODY = frozenset({401, 403, 413, 415})


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.detail, exc.code)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers) if exc.headers else None
    if request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers:
        # No route read this request's body (404, 405): the connection closes after the answer.
        headers = {**(headers or {}), "Connection": "close"}
    detail: Any = exc.detail
    if exc.status_code == 404:
        detail = f"no route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        allowed = (headers or {}).get("Allow", "")
        detail = f"method {request.method} is not allowed on {request.url.path}" + (
            f"; allowed: {allowed}" if allowed else ""
        )
    return error_response(exc.status_code, detail, headers=headers)


async def _client_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, RecursionError):
        # A filter like {"$and": [{"$and": [...]}]} 500 levels deep is valid JSON (orjson
        # parses up to 1024 levels) but deeper than the query compiler's recursion.
        return error_response(400, "the request is nested too deeply to evaluate")
    if isinstance(exc, UnknownWorkflow | UnknownRun):
        return error_response(404, str(exc))
    if isinstance(exc, DuplicateKey):
        return error_response(409, str(exc), "duplicate_key")
    if isinstance(exc, RunIdConflict):
        return error_response(409, str(exc), "conflict")
    return error_response(400, str(exc))


async def _store_error(request: Request, exc: Exception) -> Response:
    log.error("storage failure on %s %s: %s", request.method, request.url.path, exc)
    code = getattr(exc, "errno", None)
    reason = os.strerror(code) if isinstance(code, int) else "write failed"
    # The reason only: the full message names paths on the server, which are none of the client's business.
    return error_response(503, f"the store could not be written ({reason})", "storage_unavailable")


async def _client_gone(request: Request, exc: Exception) -> Response:
    # The client hung up mid-body: nobody will read this answer, and nothing was written.
    return error_response(400, "the client disconnected before the body was complete")


async def _internal(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal error; the host log has the details")


exception_handlers: dict[Any, Any] = {
    ApiError: _api_error,
    HTTPException: _http_exception,
    StoreError: _store_error,
    ClientDisconnect: _client_gone,
    UnknownWorkflow: _client_error,
    UnknownRun: _client_error,
    DuplicateKey: _client_error,
    RunIdConflict: _client_error,
    ValueError: _client_error,
    RecursionError: _client_error,
    TypeError: _client_error,
    Exception: _internal,
}
