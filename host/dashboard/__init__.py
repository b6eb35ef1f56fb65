"""The dashboard at ``/_platform/``: runs, one run's step timeline, events, and a data browser.

Plain HTML, CSS and JavaScript shipped in ``static/`` (no build step, nothing fetched from the
internet); the pages render everything client-side with ``textContent`` from the JSON endpoints
under ``/_platform/api/`` (runs, search, workflows, data) and the host's own ``/api/...``.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from host.dashboard import bulk, data, links, pages, people, runs, search, workflows

__all__ = ["dashboard_routes"]


def dashboard_routes() -> list[BaseRoute]:
    """The dashboard's pages, static files and JSON endpoints."""
    # search first: its path would otherwise be taken for a run id
    return [
        *search.routes,
        *bulk.routes,
        *runs.routes,
        *workflows.routes,
        *links.routes,
        *data.routes,
        *people.routes,
        *pages.routes,
    ]
