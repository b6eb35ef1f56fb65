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
- Listeners (the WebSocket hub) see every message and presence change this process applies,
  its own and other processes', exactly once, in log order.

Line shapes (``o`` is the op): ``{"o": "cfg", "channels": [glob], "max": n}``,
``{"o": "msg", "ch", "seq" (0 = not kept), "d", "u", "ts"}``, ``{"o": "seq", "ch", "seq"}``,
``{"o": "join" | "update", "ch", "u", "meta", "ts"}``, ``{"o": "leave", "ch", "u", "ts"}``,
``{"o": "reset"}``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from platform_shim.keypattern import compile_key_pattern
from platform_shim.store.protocol import Record

__all__ = ["DEFAULT_MAX_MESSAGES", "HistoryConfig", "Listener", "RealtimeState"]

DEFAULT_MAX_MESSAGES = 1000
"""Messages kept per history channel unless the configuration says otherwise."""

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

    # ----------------------------------------------------------------- the Consumer protocol

    def reset(self) -> None:
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
            self.reset_presence()

    # ------------------------------------------------------------------------ applying

    def next_seq(self, channel: str) -> int:
        """The seq the next kept message of ``channel`` gets (call inside the commit cycle)."""
        return self.last_seq.get(channel, 0) + 1

    def apply_message(self, record: Record) -> None:
        channel, seq = record["ch"], record.get("seq", 0)
        if seq:
            self.last_seq[channel] = max(self.last_seq.get(channel, 0), seq)
            kept = self.history.get(channel)
            if kept is None:
                kept = self.history[channel] = deque(maxlen=self.config.max_messages)
            kept.append(
                {"seq": seq, "channel": channel, "data": record.get("d"), "uid": record.get("u"),
                 "ts": record["ts"]}
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
        self._notify(event)

    def apply_join(self, record: Record) -> None:
        channel, user_id, ts = record["ch"], record["u"], record["ts"]
        members = self.presence.setdefault(channel, {})
        member = members.get(user_id)
        if member is None:
            members[user_id] = Member(user_id, record.get("meta"), ts, ts)
            kind = "presence:join"
        else:
            member.metadata, member.last_seen = record.get("meta"), ts
            kind = "presence:update" if record["o"] == "update" else "presence:join"
        self._notify(self._presence_event(kind, channel, user_id, record.get("meta"), ts))

    def reset_presence(self) -> None:
        """Forget every member (a worker started: they described the last one's connections).
        Listeners hear ``presence:reset`` so that a host whose connections are still open
        announces their members again."""
        self.presence.clear()
        self._notify({"event": "presence:reset", "channel": ""})

    def apply_leave(self, record: Record) -> None:
        channel, user_id = record["ch"], record["u"]
        members = self.presence.get(channel)
        member = members.pop(user_id, None) if members else None
        if members is not None and not members:
            del self.presence[channel]
        if member is not None:
            self._notify(
                self._presence_event(
                    "presence:leave", channel, user_id, member.metadata, record["ts"]
                )
            )

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

    def _notify(self, event: dict[str, Any]) -> None:
        if self.loading:
            return
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
        for kept in self.history.values():
            for m in kept:
                yield orjson.dumps(
                    {"o": "msg", "ch": m["channel"], "seq": m["seq"], "d": m["data"],
                     "u": m["uid"], "ts": m["ts"]}
                )  # fmt: skip
        for channel, members in self.presence.items():
            for member in members.values():
                yield orjson.dumps(
                    {"o": "join", "ch": channel, "u": member.user_id, "meta": member.metadata,
                     "ts": member.last_seen}
                )  # fmt: skip
