"""A local serverless-style platform for Python: services, durable workflows, event handlers.

from platform_shim import get_platform, open_platform
from platform_shim.workflows import define_workflow
from platform_shim.events import on_kv_change, on_db_change, on_storage_change, on_queue, define_event
"""

from platform_shim.platform import Platform, get_platform
from platform_shim.runtime import open_platform

__all__ = ["Platform", "get_platform", "open_platform"]
