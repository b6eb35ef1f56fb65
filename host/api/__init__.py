"""The HTTP API of SPEC §3, as Starlette routes."""

from starlette.routing import BaseRoute

from host.api import auth, data, realtime, workflows

__all__ = ["api_routes"]


def api_routes() -> list[BaseRoute]:
    return [*workflows.routes, *data.routes, *realtime.routes, *auth.routes]
