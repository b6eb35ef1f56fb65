"""``platform.events``: put custom events on the platform stream."""

from __future__ import annotations

from typing import Any

from platform_shim.services.stream import EventStream

__all__ = ["EventsService"]


class EventsService:
    """Publishes custom events (how ``auth.user.registered`` is simulated locally)."""

    def __init__(self, stream: EventStream) -> None:
        self._stream = stream

    async def publish(
        self,
        t: str,
        data: Any = None,
        *,
        r: str = "custom",
        ns: str | None = None,
        k: str | None = None,
    ) -> int:
        """Append ``{"t": t, "r": r, "ns": ns, "k": k, "data": data}`` to the stream; returns its id."""
        return await self._stream.publish(t, data, r=r, ns=ns, k=k)

    async def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest events still in memory, oldest first."""
        self._stream.fresh()
        return [event.to_dict() for event in self._stream.events[-limit:]]
