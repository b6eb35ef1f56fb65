"""The browser side of realtime: the WebSocket endpoint ``/_rt/ws?cid=<client id>``.

It speaks the JSON messages of the platform's ``RealtimeClient``. Client to server: ``{"action":
"subscribe" | "unsubscribe" | "publish" | "presence:join" | "presence:update" |
"presence:leave" | "ping", "channel", "data", "userId", "metadata", "lastEventId"}``. Server to
client: ``{"event", "channel", "data", "from", "userId", "ts", "metadata"}`` with ``event`` one
of ``message``, ``presence:join|update|leave``, ``subscribed`` (after a ``subscribe``, once
any catch-up asked for with ``lastEventId`` was sent), ``pong`` and ``error``.

Invariants:

- Memory per connection is bounded: each has an outbox of at most ``outbox`` messages. A client
  that does not read fast enough to keep its outbox from filling is dropped (closed with 1013),
  never buffered without bound; it reconnects and catches up from history if it wants.
- A connection that ends leaves the presence it joined after ``grace_ms`` (so a page reload
  does not flicker a leave/join), unless the same member joined again in the meantime (from a
  reconnect of the same client, or another connection).
- The hub only uses ``platform.realtime``; every message and presence change reaches it through
  the realtime state's listeners, whichever process made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from typing import Any

import orjson
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from platform_shim.clock import Clock, TimerHandle
from platform_shim.services.realtime import RealtimeService, check_channel

__all__ = ["DEFAULT_GRACE_MS", "DEFAULT_OUTBOX", "Connection", "RealtimeHub", "routes"]

log = logging.getLogger("host.realtime")

DEFAULT_GRACE_MS = 5000
"""How long a disconnected client's presence lingers before it leaves."""
DEFAULT_OUTBOX = 256
"""Messages queued for one connection before it counts as too slow and is dropped."""
MAX_FRAME = 256 * 1024
"""The largest message a client may send (bytes)."""

_CLOSE = object()


class Connection:
    """One WebSocket: its subscriptions, its presence and its bounded outbox."""

    def __init__(self, websocket: WebSocket, cid: str, outbox: int) -> None:
        self.websocket = websocket
        self.cid = cid
        self.channels: set[str] = set()
        self.presence: dict[str, str] = {}  # channel -> user id joined through this connection
        self.metadata: dict[str, Any] = {}  # channel -> the metadata it last joined with
        self.outbox: asyncio.Queue[bytes | object] = asyncio.Queue(maxsize=outbox)
        self.dropped = False

    def offer(self, frame: bytes) -> bool:
        """Queue ``frame``; False when the outbox is full (the client is too slow)."""
        if self.dropped:
            return True
        try:
            self.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        return True

    async def write(self) -> None:
        """Send queued frames until closed."""
        while True:
            frame = await self.outbox.get()
            if frame is _CLOSE:
                return
            assert isinstance(frame, bytes)
            await self.websocket.send_text(frame.decode())


class RealtimeHub:
    """Fans realtime events out to WebSocket connections; applies their actions."""

    def __init__(
        self,
        realtime: RealtimeService,
        clock: Clock,
        *,
        grace_ms: int = DEFAULT_GRACE_MS,
        outbox: int = DEFAULT_OUTBOX,
    ) -> None:
        self.realtime = realtime
        self.clock = clock
        self.grace_ms = grace_ms
        self.outbox = outbox
        self.connections: set[Connection] = set()
        self.subscribers: dict[str, set[Connection]] = {}
        self._pending_leaves: dict[tuple[str, str], TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        realtime.subscribe(self.deliver)
        realtime.subscribed = self.subscribed_channels

    def rebind(self, realtime: RealtimeService) -> None:
        """Follow ``realtime`` instead (a standby host became the worker): open connections
        and their subscriptions stay; what they send now goes to the worker's service."""
        self.realtime.unsubscribe(self.deliver)
        self.realtime.subscribed = tuple
        self.realtime = realtime
        realtime.subscribe(self.deliver)
        realtime.subscribed = self.subscribed_channels
        # The new worker reset presence when it started, before this hub followed it.
        self._announce_presence()

    def _announce_presence(self) -> None:
        """Join again every member this host's open connections hold (after a reset)."""
        joined: dict[tuple[str, str], Any] = {}
        for conn in self.connections:
            for channel, user in conn.presence.items():
                joined[(channel, user)] = conn.metadata.get(channel)
        for (channel, user), metadata in joined.items():
            self._spawn(self.realtime.presence.join(channel, user, metadata))

    def close(self) -> None:
        """Detach from the realtime service (a reload or shutdown builds a new hub)."""
        self.realtime.unsubscribe(self.deliver)
        for timer in self._pending_leaves.values():
            timer.cancel()
        self._pending_leaves.clear()

    def subscribed_channels(self) -> list[str]:
        return [channel for channel, conns in self.subscribers.items() if conns]

    # -------------------------------------------------------------------------- fan-out

    def deliver(self, event: dict[str, Any]) -> None:
        """Send ``event`` to its channel's subscribers (and, for presence, to its members)."""
        if event["event"] == "presence:reset":
            self._announce_presence()  # the service's own, never a client's
            return
        channel = event.get("channel", "")
        targets = set(self.subscribers.get(channel, ()))
        if event["event"].startswith("presence:"):
            targets.update(c for c in self.connections if channel in c.presence)
        if not targets:
            return
        frame = orjson.dumps(event)
        for conn in targets:
            if not conn.offer(frame):
                self.drop(conn, "too slow: its outbox is full")

    def send(self, conn: Connection, event: dict[str, Any]) -> None:
        if not conn.offer(orjson.dumps(event)):
            self.drop(conn, "too slow: its outbox is full")

    def drop(self, conn: Connection, reason: str) -> None:
        """Stop serving ``conn``: a slow reader costs us nothing more."""
        if conn.dropped:
            return
        conn.dropped = True
        log.warning("realtime client %r dropped: %s", conn.cid, reason)
        self._forget(conn)
        self._spawn(self._close_socket(conn, reason))

    async def _close_socket(self, conn: Connection, reason: str) -> None:
        with contextlib.suppress(Exception):
            await conn.websocket.close(code=1013, reason=reason[:100])

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------- connections

    def connected(self, conn: Connection) -> None:
        self.connections.add(conn)

    def disconnected(self, conn: Connection) -> None:
        self._forget(conn)

    def _forget(self, conn: Connection) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        for channel in conn.channels:
            subs = self.subscribers.get(channel)
            if subs is not None:
                subs.discard(conn)
                if not subs:
                    del self.subscribers[channel]
        for channel, user in conn.presence.items():
            self._leave_later(channel, user)
        conn.presence.clear()
        conn.metadata.clear()
        with contextlib.suppress(asyncio.QueueFull):
            conn.outbox.put_nowait(_CLOSE)

    def _leave_later(self, channel: str, user: str) -> None:
        if any(c.presence.get(channel) == user for c in self.connections):
            return  # another connection still holds this member
        key = (channel, user)
        old = self._pending_leaves.pop(key, None)
        if old is not None:
            old.cancel()

        def leave() -> None:
            self._pending_leaves.pop(key, None)
            self._spawn(self.realtime.presence.leave(channel, user))

        self._pending_leaves[key] = self.clock.call_at(self.clock.now_ms() + self.grace_ms, leave)

    # ------------------------------------------------------------------------ actions

    async def handle(self, conn: Connection, message: dict[str, Any]) -> None:
        """Apply one client message; a bad one gets an ``error`` event, never a disconnect."""
        action = message.get("action")
        try:
            if action == "ping":
                self.send(conn, {"event": "pong", "ts": self.clock.now_ms()})
            elif action == "subscribe":
                await self._subscribe(conn, message)
            elif action == "unsubscribe":
                channel = check_channel(message.get("channel"))
                conn.channels.discard(channel)
                subs = self.subscribers.get(channel)
                if subs is not None:
                    subs.discard(conn)
                    if not subs:
                        del self.subscribers[channel]
            elif action == "publish":
                user = message.get("userId")
                await self.realtime.publish(
                    check_channel(message.get("channel")), message.get("data"), user_id=user
                )
            elif action in ("presence:join", "presence:update"):
                await self._presence(conn, action, message)
            elif action == "presence:leave":
                channel = check_channel(message.get("channel"))
                user = conn.presence.pop(channel, None)
                conn.metadata.pop(channel, None)
                if user is not None and not any(
                    c.presence.get(channel) == user for c in self.connections
                ):
                    await self.realtime.presence.leave(channel, user)
            else:
                raise ValueError(f"unknown action {action!r}")
        except (ValueError, TypeError) as exc:
            self.send(
                conn,
                {
                    "event": "error",
                    "channel": message.get("channel") if action != "publish" else None,
                    "data": {"action": action, "message": str(exc)},
                    "ts": self.clock.now_ms(),
                },
            )

    async def _subscribe(self, conn: Connection, message: dict[str, Any]) -> None:
        channel = check_channel(message.get("channel"))
        after = message.get("lastEventId")
        if after is not None:
            # Catch-up first, then the live feed: history up to now is read and queued before
            # the connection joins the subscribers, in one step of the loop, so nothing
            # published in between is missed or sent twice.
            for kept in await self.realtime.history(channel, after=after):
                self.send(
                    conn,
                    {
                        "event": "message",
                        "channel": channel,
                        "data": kept["data"],
                        "from": kept["uid"],
                        "userId": kept["uid"],
                        "ts": kept["ts"],
                        "seq": kept["seq"],
                    },
                )
        conn.channels.add(channel)
        self.subscribers.setdefault(channel, set()).add(conn)
        self.send(conn, {"event": "subscribed", "channel": channel, "ts": self.clock.now_ms()})

    async def _presence(self, conn: Connection, action: str, message: dict[str, Any]) -> None:
        channel = check_channel(message.get("channel"))
        user = message.get("userId")
        if not isinstance(user, str) or not user:
            raise ValueError(f"{action} needs a non-empty string 'userId', not {user!r}")
        previous = conn.presence.get(channel)
        conn.presence[channel] = user
        timer = self._pending_leaves.pop((channel, user), None)
        if timer is not None:
            timer.cancel()  # a reconnect within the grace period: the member never left
        if previous is not None and previous != user:
            self._leave_later(channel, previous)
        metadata = message.get("metadata")
        conn.metadata[channel] = metadata
        if action == "presence:join":
            await self.realtime.presence.join(channel, user, metadata)
        else:
            await self.realtime.presence.update(channel, user, metadata)


async def realtime_socket(websocket: WebSocket) -> None:
    """``/_rt/ws?cid=``: one ``RealtimeClient`` connection."""
    host = websocket.app.state.host
    hub: RealtimeHub | None = host.realtime_hub
    token = host.config.token
    if token and not hmac.compare_digest(
        websocket.query_params.get("token", "").encode(), token.encode()
    ):
        await websocket.close(code=1008, reason="missing or wrong ?token=")
        return
    cid = websocket.query_params.get("cid", "")
    if hub is None or not cid or len(cid) > 256 or not cid.isprintable():
        await websocket.close(code=1008, reason="a printable ?cid=<client id> is required")
        return
    await websocket.accept()
    conn = Connection(websocket, cid, hub.outbox)
    hub.connected(conn)
    writer = asyncio.get_running_loop().create_task(conn.write())
    try:
        while not conn.dropped:
            received = await websocket.receive()
            if received["type"] == "websocket.disconnect":
                break
            text = received.get("text")
            if text is None:
                hub.send(conn, {"event": "error", "data": {"message": "send JSON text frames"}})
                continue
            if len(text) > MAX_FRAME:
                hub.send(conn, {"event": "error", "data": {"message": "message too large"}})
                continue
            try:
                message = orjson.loads(text)
            except orjson.JSONDecodeError:
                message = None
            if not isinstance(message, dict):
                hub.send(conn, {"event": "error", "data": {"message": "not a JSON object"}})
                continue
            await hub.handle(conn, message)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client went away (or we dropped it); RuntimeError: receive after close
    finally:
        hub.disconnected(conn)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer


routes: list[BaseRoute] = [WebSocketRoute("/_rt/ws", realtime_socket)]
