"""``GET /_platform/api/runs/search``: find runs by id (exact or prefix) or by text in their
input, output or error, within a time range.

Bounded like every dashboard endpoint: one request reads at most ``SCAN_MAX`` runs, newest first,
through the same paged ``workflows.list`` as the runs page (so it works however runs are stored),
and answers a ``next`` cursor to scan on from where it stopped. An exact run id is found at once.
The time range bounds the scan too: listing is newest first, so the scan stops at the first run
created before ``from``.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from host.dashboard.common import query_limit, query_text
from host.dashboard.runs import run_summary
from host.errors import ApiError, json_response
from platform_shim.platform import Platform
from platform_shim.workflows.records import WorkflowRun

__all__ = ["SCAN_MAX", "routes"]

SCAN_MAX = 1000
"""Runs one search request reads at most; the answer's ``next`` continues from there."""

_BATCH = 500
_RESULTS_DEFAULT = 50
_RESULTS_MAX = 500
_QUERY_MAX = 200


def _time(request: Request, name: str) -> int | None:
    raw = query_text(request, name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise ApiError(400, f"query parameter {name!r} must be epoch milliseconds, not {raw!r}")
    return int(raw)


def _text_of(run: WorkflowRun) -> str:
    """What a text search looks in: the run's input, output and error, as JSON, lowercased."""
    parts = [run.input, run.output, run.error]
    return orjson.dumps(parts).decode("utf-8", errors="replace").lower()


def _needles(needle: str) -> tuple[str, ...]:
    """The text to look for, also as compact JSON (``"n": 12`` finds ``{"n":12}``)."""
    lowered = needle.lower()
    compact = lowered.replace('": ', '":').replace(', "', ',"')
    return (lowered,) if compact == lowered else (lowered, compact)


def _matches(run: WorkflowRun, needle: str | None, texts: tuple[str, ...]) -> bool:
    if needle is None:
        return True
    if run.run_id.startswith(needle):
        return True
    text = _text_of(run)
    return any(t in text for t in texts)


async def search(request: Request) -> Response:
    """``?q=&from=&to=&workflowId=&status=&limit=&before=``: ``{"runs", "next", "scanned",
    "exact"}``. ``q`` matches a run id exactly or by prefix, or any text (case-insensitive) in
    a run's input, output or error; ``from``/``to`` bound its creation time (epoch ms)."""
    platform: Platform = request.app.state.platform
    workflows = platform.workflows
    needle = query_text(request, "q")
    if needle is not None:
        needle = needle.strip() or None
    if needle is not None and len(needle) > _QUERY_MAX:
        raise ApiError(400, f"'q' is {len(needle)} characters; at most {_QUERY_MAX}")
    start, end = _time(request, "from"), _time(request, "to")
    if start is not None and end is not None and start > end:
        raise ApiError(400, f"'from' ({start}) is after 'to' ({end})")
    limit = query_limit(request, _RESULTS_DEFAULT, _RESULTS_MAX)
    workflow_id = query_text(request, "workflowId")
    status = query_text(request, "status")
    before = query_text(request, "before")
    if before is not None and await workflows.handle(before).status() is None:
        raise ApiError(400, f"'before' names no run: {before!r} (pruned, or a typo)")

    exact = None
    if needle is not None and before is None:
        exact = await workflows.handle(needle).status()
    if exact is not None:
        return json_response(
            {"runs": [run_summary(exact)], "next": None, "scanned": 1, "exact": True}
        )

    texts = _needles(needle) if needle is not None else ()
    found: list[WorkflowRun] = []
    scanned = 0
    cursor = before
    done = False
    while not done and scanned < SCAN_MAX and len(found) < limit:
        asked = min(_BATCH, SCAN_MAX - scanned)
        batch = await workflows.list(
            workflow_id=workflow_id, status=status, limit=asked, before=cursor
        )
        done = len(batch) < asked  # a short page: the list ends here
        for run in batch:
            scanned += 1
            cursor = run.run_id
            if start is not None and run.created_at < start:
                done = True  # newest first: every run after this one is older still
                break
            if (end is None or run.created_at <= end) and _matches(run, needle, texts):
                found.append(run)
                if len(found) >= limit:
                    done = done and run is batch[-1]
                    break
    return json_response(
        {
            "runs": [run_summary(run) for run in found],
            "next": None if done else cursor,
            "scanned": scanned,
            "exact": False,
        }
    )


routes: list[BaseRoute] = [Route("/_platform/api/runs/search", search, methods=["GET"])]
