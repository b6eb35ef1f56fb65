"""The ``ctx`` argument user code gets: the platform's services as attributes, plus which run
(a workflow's) or which handler (an event handler's) this is.

This module imports no other module of the package at run time (``Platform`` only for types),
so the engine and the dispatcher can build contexts without importing ``platform.py``, which
imports them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from platform_shim.platform import Platform

__all__ = ["HandlerContext", "ServicesContext", "WorkflowContext"]


class ServicesContext:
    """The platform's services as attributes: what a workflow's and a handler's ``ctx`` share."""

    __slots__ = (
        "auth",
        "database",
        "db",
        "events",
        "kv",
        "platform",
        "queue",
        "realtime",
        "storage",
        "workflows",
    )

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.kv = platform.kv
        self.database = self.db = platform.database
        self.storage = platform.storage
        self.queue = platform.queue
        self.workflows = platform.workflows
        self.events = platform.events
        self.realtime = platform.realtime
        self.auth = platform.auth


class WorkflowContext(ServicesContext):
    """The ``ctx`` argument of a workflow handler: the services, and which run this is."""

    __slots__ = ("attempt", "run_id", "workflow_id")

    def __init__(self, platform: Platform, run_id: str, workflow_id: str, attempt: int) -> None:
        super().__init__(platform)
        self.run_id = run_id
        self.workflow_id = workflow_id
        self.attempt = attempt


class HandlerContext(ServicesContext):
    """The ``ctx`` argument of an event handler: the services, and which handler this is."""

    __slots__ = ("handler_id",)

    def __init__(self, platform: Platform, handler_id: str) -> None:
        super().__init__(platform)
        self.handler_id = handler_id
