"""``platform.events``: put custom events on the platform stream."""

from __future__ import annotations

from typing import Any

from platform_shim.jsonvalue import dumps
from platform_shim.services.stream import EventStream

__all__ = ["RESERVED_PREFIXES", "EventsService"]

RESERVED_PREFIXES = ("kv.", "db.", "storage.", "queue.")
"""Event types the services' folds read; ``publish`` refuses them."""


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
        if not isinstance(t, str) or not t:
            raise ValueError(f"event type must be a non-empty string, not {t!r}")
        if not t.isprintable():
            raise ValueError(f"event type {t!r} contains control characters")
        if t.startswith(RESERVED_PREFIXES):
            # The services' state is a fold of these types: a look-alike would change state in
            # every process that reads it back, and not in this one.
            raise ValueError(
                f"event type {t!r} is reserved for the platform's services "
                f"({', '.join(p + '*' for p in RESERVED_PREFIXES)}); use another name"
            )
        for name, value in (("r", r), ("ns", ns), ("k", k)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"event field {name!r} must be a string or None, not {value!r}")
        if not isinstance(r, str) or not r:
            raise ValueError(f"event resource 'r' must be a non-empty string, not {r!r}")
        body = dumps(data, f"data of event {t!r}")
        eid = await self._stream.submit(t, r, ns, k, body, lambda eid, ts: eid)
        assert eid is not None
        return eid

    async def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest events still in memory, oldest first."""
        self._stream.fresh()
        return [event.to_dict() for event in self._stream.events[-limit:]]
