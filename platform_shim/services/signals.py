"""``send_event`` made visible on the realtime channel ``workflows:signals``.

The workflows services are subclassed, not changed: ``send_event`` first records the event
exactly as before (same no-race rule, same count), then announces ``{"type", "payload",
"count"}`` on ``SIGNALS_CHANNEL``. An announcement that fails (a payload too deep to encode
again, say) is logged and never undoes or fails the recorded event.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from platform_shim.workflows.service import ClientWorkflows, EngineWorkflows

if TYPE_CHECKING:
    from platform_shim.platform import Platform
    from platform_shim.services.realtime import RealtimeService
    from platform_shim.workflows.engine import Engine

__all__ = ["RelayingClientWorkflows", "RelayingEngineWorkflows"]

log = logging.getLogger("platform_shim.realtime")


async def _announce(realtime: RealtimeService, event_type: str, payload: Any, count: int) -> None:
    try:
        await realtime.relay_signal(event_type, payload, count)
    except Exception:
        log.exception("event %r was sent; announcing it on the signals channel failed", event_type)


class RelayingEngineWorkflows(EngineWorkflows):
    """The worker's ``platform.workflows``, announcing every ``send_event``."""

    def __init__(self, engine: Engine, realtime: RealtimeService) -> None:
        super().__init__(engine)
        self._realtime = realtime

    async def send_event(self, event_type: str, payload: Any = None) -> int:
        count = await super().send_event(event_type, payload)
        await _announce(self._realtime, event_type, payload, count)
        return count


class RelayingClientWorkflows(ClientWorkflows):
    """A client's ``platform.workflows``, announcing every ``send_event``."""

    def __init__(self, platform: Platform) -> None:
        super().__init__(platform)
        self._realtime = platform.realtime

    async def send_event(self, event_type: str, payload: Any = None) -> int:
        count = await super().send_event(event_type, payload)
        await _announce(self._realtime, event_type, payload, count)
        return count
