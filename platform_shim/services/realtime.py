"""``platform.realtime``: publish to channels, presence, and opt-in replayable history.

Every process on a data folder shares ``realtime.jsonl`` (folded by ``RealtimeState``):

- A message on a channel the history settings name is written durably (fsync'd under the
  default durability) before ``publish`` returns, with its per-channel ``seq``.
- Any other message is written without an fsync, so that every other process following the
  store (the worker, standby hosts serving WebSockets) broadcasts it to its listeners.
  Compaction drops it.
- Listeners hear every change once it is written, once, in log order (``realtime_state.py``);
  our own one turn of the loop after ``publish`` wrote it, like any other.
- Presence changes are written without an fsync (they describe live connections, which do not
  outlive the worker: the worker resets presence when it starts).

Workflow signals are visible on the channel ``SIGNALS_CHANNEL``: every ``send_event`` appears
there as ``{"type", "payload", "count"}``, and publishing ``{"type", "payload"}`` to it sends
that event to waiting runs (through ``platform.workflows.send_event``: same no-race rule, same
count).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import orjson

from platform_shim.clock import Clock
from platform_shim.jsonvalue import dumps, loads
from platform_shim.services.ownwrites import Write
from platform_shim.services.realtime_state import HistoryConfig, Listener, RealtimeState
from platform_shim.services.selfcompact import SelfCompacting
from platform_shim.store.protocol import Log, Prepare, Store

__all__ = [
    "MAX_REPLAY",
    "SIGNALS_CHANNEL",
    "PresenceService",
    "RealtimeService",
    "check_channel",
]

SIGNALS_CHANNEL = "workflows:signals"
"""Where ``send_event`` is visible, and where a publish sends an event to waiting runs."""

MAX_REPLAY = 500
"""At most this many messages per ``history`` call (the platform's cap)."""

MAX_CHANNEL_LENGTH = 256

T = TypeVar("T")

SendEvent = Callable[[str, Any], Awaitable[int]]


def check_channel(channel: object) -> str:
    """``channel`` if it is a usable channel name, else ``ValueError`` naming it."""
    if not isinstance(channel, str) or not channel:
        raise ValueError(f"a channel must be a non-empty string, not {channel!r}")
    if len(channel) > MAX_CHANNEL_LENGTH or not channel.isprintable():
        raise ValueError(
            f"channel {channel[:40]!r} must be printable and at most {MAX_CHANNEL_LENGTH} characters"
        )
    return channel


def _check_user(user_id: object, what: str = "user id") -> str:
    if not isinstance(user_id, str) or not user_id or len(user_id) > 256:
        raise ValueError(
            f"a {what} must be a non-empty string (at most 256 characters), not {user_id!r}"
        )
    return user_id


def _encode(record: dict[str, Any], payload: bytes | None = None, key: str = "d") -> bytes:
    if payload is not None:
        record[key] = orjson.Fragment(payload)
    return orjson.dumps(record)


class PresenceService:
    """``platform.realtime.presence``: who is on a channel."""

    def __init__(self, realtime: RealtimeService) -> None:
        self._rt = realtime

    async def join(self, channel: str, user_id: str, metadata: Any = None) -> bool:
        """Mark ``user_id`` present on ``channel``; True if it was not already."""
        return await self._rt._presence("join", channel, user_id, metadata)

    async def update(self, channel: str, user_id: str, metadata: Any = None) -> bool:
        """Replace a member's metadata (joins if absent); True if it was not present before."""
        return await self._rt._presence("update", channel, user_id, metadata)

    async def leave(self, channel: str, user_id: str) -> bool:
        """Remove ``user_id`` from ``channel``; True if it was present."""
        return await self._rt._presence("leave", channel, user_id, None)

    async def members(self, channel: str) -> list[dict[str, Any]]:
        """``[{"userId", "metadata", "lastSeen"}]``, in join order."""
        check_channel(channel)
        state = self._rt.state
        self._rt.log.fresh()
        return [m.to_dict() for m in state.presence.get(channel, {}).values()]


class RealtimeService:
    """``platform.realtime``: ``publish``, ``channels``, ``history`` and ``presence``."""

    def __init__(self, store: Store, clock: Clock, *, is_worker: Callable[[], bool]) -> None:
        self.state = RealtimeState()
        self.log: Log = store.open_log("realtime", self.state)
        self.state.loading = False
        self._clock = clock
        self._is_worker = is_worker
        self.presence = PresenceService(self)
        self.send_event: SendEvent | None = None  # set by the platform: workflows.send_event
        self.subscribed: Callable[[], Iterable[str]] = tuple  # live WebSocket subscriptions
        self.compaction = SelfCompacting(
            self.log, self.state.live_count, self.compact, is_worker=is_worker
        )

    # ------------------------------------------------------------------------ publishing

    async def publish(self, channel: str, data: Any = None, *, user_id: str | None = None) -> None:
        """Send ``data`` (JSON) to every subscriber of ``channel``; kept in its history when the
        channel is configured for it (durable before this returns)."""
        check_channel(channel)
        if user_id is not None:
            _check_user(user_id)
        if channel == SIGNALS_CHANNEL:
            await self._publish_signal(data)
            return
        payload = dumps(data, f"data published to channel {channel!r}")
        await self._publish(channel, payload, user_id)

    async def _publish(self, channel: str, payload: bytes, user_id: str | None) -> None:
        state = self.state
        ts = self._clock.now_ms()
        decoded = loads(payload)
        kept = state.config.keeps(channel)
        write: Write = []

        def prepare() -> tuple[bytes, Callable[[], None]]:
            seq = state.next_seq(channel) if state.config.keeps(channel) else 0
            record = {"o": "msg", "ch": channel, "seq": seq, "u": user_id, "ts": ts}
            record.update(state.origin())
            line = _encode(record, payload)
            apply_record = {**record, "d": decoded}
            return line, lambda: state.apply_message(apply_record, write)

        await self._submit(prepare, write, durable=kept)
        self.compaction.check()

    def _submit(self, prepare: Prepare[T], write: Write, *, durable: bool) -> asyncio.Future[T]:
        """Submit a change whose apply hands ``write`` to the state: listeners hear it once
        this write is done (before whoever awaits it resumes)."""
        return self.state.track(self.log.submit(prepare, durable=durable), write)

    async def _publish_signal(self, data: Any) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("type"), str) or not data["type"]:
            raise ValueError(
                f"a message on {SIGNALS_CHANNEL!r} must be an object "
                f'{{"type": <event type>, "payload": <JSON>}}, not {data!r}'
            )
        if self.send_event is None:
            raise RuntimeError("this platform has no workflows service to send the event to")
        # send_event announces the event on this channel itself (relay_signal), with its count.
        await self.send_event(data["type"], data.get("payload"))

    async def relay_signal(self, event_type: str, payload: Any, count: int) -> None:
        """Announce a ``send_event`` on ``SIGNALS_CHANNEL`` (called after it was recorded)."""
        body = dumps(
            {"type": event_type, "payload": payload, "count": count},
            f"payload of event {event_type!r}",
        )
        await self._publish(SIGNALS_CHANNEL, body, None)

    # ------------------------------------------------------------------------- presence

    async def _presence(self, op: str, channel: str, user_id: str, metadata: Any) -> bool:
        check_channel(channel)
        _check_user(user_id)
        meta = dumps(metadata, f"presence metadata of {user_id!r} on {channel!r}")
        state = self.state
        ts = self._clock.now_ms()

        write: Write = []

        def prepare() -> tuple[bytes | None, Callable[[], bool]]:
            present = user_id in state.presence.get(channel, {})
            if op == "leave":
                if not present:
                    return None, lambda: False
                record: dict[str, Any] = {"o": "leave", "ch": channel, "u": user_id, "ts": ts}
                record.update(state.origin())
                line = _encode(dict(record))
            else:
                record = {"o": op, "ch": channel, "u": user_id, "ts": ts}
                record.update(state.origin())
                line = _encode(dict(record), meta, "meta")
                record["meta"] = loads(meta)

            def apply() -> bool:
                if op == "leave":
                    state.apply_leave(record, write)
                    return True
                state.apply_join(record, write)
                return not present

            return line, apply

        result = await self._submit(prepare, write, durable=False)
        self.compaction.check()
        return result

    # --------------------------------------------------------------------------- reading

    async def channels(self) -> list[str]:
        """Active channels: with a live subscriber, a present member, or kept history."""
        self.log.fresh()
        state = self.state
        active = set(self.subscribed()) | set(state.presence) | set(state.history)
        return sorted(active)

    async def history(
        self, channel: str, limit: int | None = None, after: int | None = None
    ) -> list[dict[str, Any]]:
        """Kept messages ``[{seq, channel, data, uid, ts}]`` oldest first, with ``seq > after``;
        at most ``limit`` (and at most ``MAX_REPLAY``): the newest ones when ``after`` is None,
        the ones right after ``after`` otherwise. Empty for a channel without history."""
        check_channel(channel)
        for name, value in (("limit", limit), ("after", after)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise ValueError(f"history {name} must be a non-negative integer, not {value!r}")
        self.log.fresh()
        kept = self.state.history.get(channel)
        if not kept:
            return []
        cap = MAX_REPLAY if limit is None else min(limit, MAX_REPLAY)
        if after is None:
            selected = list(kept)[-cap:] if cap else []
        else:
            selected = [m for m in kept if m["seq"] > after][:cap]
        return [{k: v for k, v in m.items() if k != "_origin"} for m in selected]

    async def history_length(self, channel: str) -> int:
        """How many messages ``channel`` keeps now; 0 for one without history, or unknown."""
        self.log.fresh()
        return len(self.state.history.get(channel, ()))

    # ------------------------------------------------------------------------- listening

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with every message and presence change this process applies from
        now on, its own and other processes', once each, in log order (the WebSocket hub)."""
        self.state.listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        """Stop calling ``listener``; one that is not subscribed changes nothing."""
        with contextlib.suppress(ValueError):
            self.state.listeners.remove(listener)

    # ------------------------------------------------------------------ worker's duties

    async def configure(self, config: HistoryConfig) -> None:
        """Record the project's history settings (the worker does this when it starts), and
        reset presence: the connections it described ended with the previous worker."""
        state = self.state

        write: Write = []

        def prepare() -> tuple[bytes, Callable[[], None]]:
            reset = {"o": "reset", **state.origin()}
            lines = [orjson.dumps(reset)]
            if config != state.config:
                lines.append(orjson.dumps(config.to_record()))

            def apply() -> None:
                state.reset_presence(reset, write)
                state.apply(config.to_record(), b"")

            return b"\n".join(lines), apply

        await self._submit(prepare, write, durable=True)

    async def compact(self) -> None:
        """Rewrite ``realtime.jsonl`` with only what is live (worker only), off the loop."""
        await self.log.rewrite(lambda: list(self.state.live_records()))
