"""The fold of ``realtime.jsonl``: kept channel history, presence, and the history settings.

Invariants:

- A message on a history channel is one line of ``realtime.jsonl``; its ``seq`` is assigned
  inside the log's commit cycle (under the cross-process append lock, after catching up with
  every other process), so ``seq`` increases strictly per channel whichever process published,
  and it never goes back, also across trimming and compaction (compaction writes the last
  ``seq`` of every channel).
- At most ``max_messages`` messages are kept per channel; older ones are dropped as new ones
  arrive (a ``deque`` with ``maxlen``).
- Presence is a fold of ``join``/``update``/``leave`` lines. The worker writes a ``reset`` line
  when it starts: presence describes live connections, and those that went through the last
  worker died with it. Listeners hear ``presence:reset`` (never sent to a client), so that a
  host whose connections are still open (a standby, a second host) joins their members again.
- Listeners (the WebSocket hub) hear every message and presence change once, in log order,
  and only once it is written: a change this process writes is applied before its write
  commits (the next one must see it) and waits in ``_own`` until the write is done (one whose
  write failed is never heard); another process's change first lets ours committed before it
  through. Each change carries its writer (``w``, a token per process) and that writer's
  count (``n``, increasing in log order); ``_heard`` keeps the last count heard of each
  writer, so a replay of the log (another process compacted it; on PostgreSQL a commit failed
  and the state is read again) announces nothing already heard. Compaction keeps the ``w``
  and ``n`` of what it writes again, in the order it was applied.

Line shapes (``o`` is the op): ``{"o": "cfg", "channels": [glob], "max": n}``,
``{"o": "msg", "ch", "seq" (0 = not kept), "d", "u", "ts"}``, ``{"o": "seq", "ch", "seq"}``,
``{"o": "join" | "update", "ch", "u", "meta", "ts"}``, ``{"o": "leave", "ch", "u", "ts"}``,
``{"o": "reset"}``; messages, presence changes and resets also carry ``w`` and ``n`` (lines
written before they did are heard at every replay, as they always were).
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from platform_shim.keypattern import compile_key_pattern
from platform_shim.services.ownwrites import HeldUntilWritten, Write
from platform_shim.store.protocol import Record

__all__ = ["DEFAULT_MAX_MESSAGES", "HistoryConfig", "Listener", "RealtimeState"]

DEFAULT_MAX_MESSAGES = 1000
"""Messages kept per history channel unless the configuration says otherwise."""

F = TypeVar("F", bound="asyncio.Future[Any]")

Listener = Callable[[dict[str, Any]], None]
"""Gets each realtime event: ``{"event", "channel", "data", "from", "userId", "ts", "metadata"}``
(``event`` is ``message`` or ``presence:join|update|leave``; kept messages carry ``seq``)."""


@dataclass(frozen=True)
class HistoryConfig:
    """Which channels keep a replayable history (globs, ``*`` = any run of characters), and
    how many messages each keeps."""

    channels: tuple[str, ...] = ()
    max_messages: int = DEFAULT_MAX_MESSAGES
    _matchers: tuple[Callable[[str], bool], ...] = field(
        default=(), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        channels: object = self.channels  # typed as a tuple, but it comes from user config
        if isinstance(channels, str) or not all(isinstance(c, str) and c for c in self.channels):
            raise ValueError(
                f"realtime history channels must be a list of non-empty glob strings, "
                f"not {self.channels!r}"
            )
        if (
            isinstance(self.max_messages, bool)
            or not isinstance(self.max_messages, int)
            or self.max_messages < 1
        ):
            raise ValueError(
                f"realtime history max_messages must be a positive integer, "
                f"not {self.max_messages!r}"
            )
        object.__setattr__(self, "channels", tuple(self.channels))
        object.__setattr__(self, "_matchers", tuple(compile_key_pattern(c) for c in self.channels))

    def keeps(self, channel: str) -> bool:
        return any(match(channel) for match in self._matchers)

    def to_record(self) -> Record:
        return {"o": "cfg", "channels": list(self.channels), "max": self.max_messages}


@dataclass
class Member:
    user_id: str
    metadata: Any
    joined_at: int
    last_seen: int
    origin: dict[str, Any] = field(default_factory=dict)  # w, n and order of its last change

    def to_dict(self) -> dict[str, Any]:
        return {"userId": self.user_id, "metadata": self.metadata, "lastSeen": self.last_seen}


class RealtimeState:
    """History, sequence numbers and presence, as applied from the log."""

    def __init__(self) -> None:
        self.config = HistoryConfig()
        self.history: dict[str, deque[dict[str, Any]]] = {}
        self.last_seq: dict[str, int] = {}
        self.presence: dict[str, dict[str, Member]] = {}
        self.listeners: list[Listener] = []
        self.loading = True  # no listener hears the replay of the log at open
        self.writer = secrets.token_hex(6)  # ``w`` of the changes this process writes
        self._count = 0  # ``n`` of the last one
        self._heard: dict[str, int] = {}  # per writer, the last ``n`` listeners heard
        self._own: HeldUntilWritten[tuple[dict[str, Any], str, int]] = HeldUntilWritten(
            lambda item: self._announce(*item)
        )
        self._order = 0  # how many changes were applied: compaction writes them in this order

    # ----------------------------------------------------------------- the Consumer protocol

    def reset(self) -> None:
        self._own.clear()
        self.config = HistoryConfig()
        self.history.clear()
        self.last_seq.clear()
        self.presence.clear()

    def apply(self, record: Record, line: bytes) -> None:
        op = record.get("o")
        if op == "msg":
            self.apply_message(record)
        elif op in ("join", "update"):
            self.apply_join(record)
        elif op == "leave":
            self.apply_leave(record)
        elif op == "cfg":
            self.config = HistoryConfig(tuple(record["channels"]), int(record["max"]))
            self._trim_all()
        elif op == "seq":
            self.last_seq[record["ch"]] = max(self.last_seq.get(record["ch"], 0), record["seq"])
        elif op == "reset":
            self.reset_presence(record)

    # ------------------------------------------------------------------------ applying

    def track(self, future: F, write: Write) -> F:
        """``future`` writes the change whose apply got ``write``: heard once it is done."""
        return self._own.track(future, write)

    def next_seq(self, channel: str) -> int:
        """The seq the next kept message of ``channel`` gets (call inside the commit cycle)."""
        return self.last_seq.get(channel, 0) + 1

    def origin(self) -> dict[str, Any]:
        """``w`` and ``n`` for the next change this process writes (call inside the commit
        cycle, so that ``n`` increases in log order)."""
        self._count += 1
        return {"w": self.writer, "n": self._count}

    def apply_message(self, record: Record, write: Write | None = None) -> None:
        """Apply a message; ``write``: ours, heard once that write is done."""
        channel, seq = record["ch"], record.get("seq", 0)
        if seq:
            self.last_seq[channel] = max(self.last_seq.get(channel, 0), seq)
            kept = self.history.get(channel)
            if kept is None:
                kept = self.history[channel] = deque(maxlen=self.config.max_messages)
            kept.append(
                {"seq": seq, "channel": channel, "data": record.get("d"), "uid": record.get("u"),
                 "ts": record["ts"], "_origin": self._stamp(record)}
            )  # fmt: skip
        event = {
            "event": "message",
            "channel": channel,
            "data": record.get("d"),
            "from": record.get("u"),
            "userId": record.get("u"),
            "ts": record["ts"],
        }
        if seq:
            event["seq"] = seq
        self._notify(event, record, write)

    def apply_join(self, record: Record, write: Write | None = None) -> None:
        channel, user_id, ts = record["ch"], record["u"], record["ts"]
        members = self.presence.setdefault(channel, {})
        member = members.get(user_id)
        if member is None:
            member = members[user_id] = Member(user_id, record.get("meta"), ts, ts)
            kind = "presence:join"
        else:
            member.metadata, member.last_seen = record.get("meta"), ts
            kind = "presence:update" if record["o"] == "update" else "presence:join"
        member.origin = self._stamp(record)
        event = self._presence_event(kind, channel, user_id, record.get("meta"), ts)
        self._notify(event, record, write)

    def reset_presence(self, record: Record | None = None, write: Write | None = None) -> None:
        """Forget every member (a worker started: they described the last one's connections).
        Listeners hear ``presence:reset`` so that a host whose connections are still open
        announces their members again."""
        self.presence.clear()
        self._notify({"event": "presence:reset", "channel": ""}, record or {}, write)

    def apply_leave(self, record: Record, write: Write | None = None) -> None:
        channel, user_id = record["ch"], record["u"]
        members = self.presence.get(channel)
        member = members.pop(user_id, None) if members else None
        if members is not None and not members:
            del self.presence[channel]
        if member is not None:
            event = self._presence_event(
                "presence:leave", channel, user_id, member.metadata, record["ts"]
            )
            self._notify(event, record, write)

    @staticmethod
    def _presence_event(
        kind: str, channel: str, user_id: str, metadata: Any, ts: int
    ) -> dict[str, Any]:
        return {
            "event": kind,
            "channel": channel,
            "data": None,
            "from": user_id,
            "userId": user_id,
            "ts": ts,
            "metadata": metadata,
        }

    def _stamp(self, record: Record) -> dict[str, Any]:
        self._order += 1
        w = record.get("w")
        return {"w": w, "n": record.get("n"), "order": self._order} if w else {"order": self._order}

    def _notify(self, event: dict[str, Any], record: Record, write: Write | None) -> None:
        writer, count = record.get("w"), record.get("n")
        if not isinstance(writer, str) or type(count) is not int:
            writer, count = "", 0  # a line from before changes carried their writer
        if self.loading:
            if writer and count > self._heard.get(writer, 0):
                self._heard[writer] = count
            return
        if write is not None:
            self._own.hold((event, writer, count), write)
            return
        # Another process's change (or a replay): ours before it were committed before it.
        self._own.release()
        self._announce(event, writer, count)

    def _announce(self, event: dict[str, Any], writer: str, count: int) -> None:
        if writer:
            if count <= self._heard.get(writer, 0):
                return  # heard before this replay
            self._heard[writer] = count
        for listener in list(self.listeners):
            listener(event)

    def _trim_all(self) -> None:
        size = self.config.max_messages
        for channel, kept in list(self.history.items()):
            if not self.config.keeps(channel):
                del self.history[channel]
            elif kept.maxlen != size:
                self.history[channel] = deque(kept, maxlen=size)

    # ---------------------------------------------------------------------- compaction

    def live_count(self) -> int:
        return (
            1
            + len(self.last_seq)
            + sum(map(len, self.history.values()))
            + sum(map(len, self.presence.values()))
        )

    def live_records(self) -> Iterator[bytes]:
        """Every line a fresh log needs to fold back to this state (listeners hear none)."""
        yield orjson.dumps(self.config.to_record())
        for channel, seq in self.last_seq.items():
            yield orjson.dumps({"o": "seq", "ch": channel, "seq": seq})
        # Messages and members in the order they were applied, each with its writer and count:
        # a process replaying the new log hears none of them again (each writer's counts still
        # increase), and one that had not read them yet hears them in order.
        live: list[tuple[int, dict[str, Any]]] = []
        for kept in self.history.values():
            for m in kept:
                origin = m["_origin"]
                live.append((origin["order"], {
                    "o": "msg", "ch": m["channel"], "seq": m["seq"], "d": m["data"],
                    "u": m["uid"], "ts": m["ts"], **_id_of(origin)
                }))  # fmt: skip
        for channel, members in self.presence.items():
            for member in members.values():
                live.append((member.origin.get("order", 0), {
                    "o": "join", "ch": channel, "u": member.user_id, "meta": member.metadata,
                    "ts": member.last_seen, **_id_of(member.origin)
                }))  # fmt: skip
        live.sort(key=lambda item: item[0])
        for _, record in live:
            yield orjson.dumps(record)


def _id_of(origin: dict[str, Any]) -> dict[str, Any]:
    return {"w": origin["w"], "n": origin["n"]} if "w" in origin else {}
