"""``platform.realtime``: publish, history (opt-in, bounded, per-channel seq, durable across
processes and restarts), presence, and the workflow signals channel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from platform_shim.platform import Platform, open_client
from platform_shim.runtime import open_platform
from platform_shim.services.realtime import MAX_REPLAY, SIGNALS_CHANNEL
from platform_shim.services.realtime_state import HistoryConfig
from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow

CHAT = HistoryConfig(("chat:*",), max_messages=5)


def heard(platform: Platform) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    platform.realtime.subscribe(events.append)
    return events


async def test_history_is_opt_in_bounded_and_numbered(data_dir: Path, clock: FakeClock) -> None:
    async with open_platform(data_dir, clock=clock, realtime_history=CHAT) as platform:
        rt = platform.realtime
        events = heard(platform)
        for i in range(7):
            await rt.publish("chat:lobby", {"n": i}, user_id="ann")
        await rt.publish("cursor", {"x": 1})
        kept = await rt.history("chat:lobby")
        assert [m["seq"] for m in kept] == [3, 4, 5, 6, 7]
        assert kept[0] == {
            "seq": 3, "channel": "chat:lobby", "data": {"n": 2}, "uid": "ann", "ts": clock.now_ms()
        }  # fmt: skip
        assert await rt.history("cursor") == []
        assert [m["seq"] for m in await rt.history("chat:lobby", after=5)] == [6, 7]
        assert [m["seq"] for m in await rt.history("chat:lobby", limit=2)] == [6, 7]
        assert [m["seq"] for m in await rt.history("chat:lobby", limit=1, after=3)] == [4]
        assert len(events) == 8
        assert events[-1]["channel"] == "cursor" and "seq" not in events[-1]
        assert events[0]["seq"] == 1 and events[0]["userId"] == "ann"
        assert await rt.channels() == ["chat:lobby"]
    # Durable: a restart keeps the history and carries on the numbering.
    async with open_platform(data_dir, clock=clock, realtime_history=CHAT) as platform:
        await platform.realtime.publish("chat:lobby", "again")
        assert [m["seq"] for m in await platform.realtime.history("chat:lobby")] == [4, 5, 6, 7, 8]


async def test_seq_increases_across_processes_and_compaction(
    data_dir: Path, clock: FakeClock
) -> None:
    async with open_platform(data_dir, clock=clock, realtime_history=CHAT) as platform:
        events = heard(platform)
        client = open_client(data_dir, clock=clock)
        try:
            await client.realtime.publish("chat:a", 1)
            await client.realtime.publish("other", "broadcast only")
            await platform.realtime.publish("chat:a", 2)
            await platform.realtime.compact()
            await client.realtime.publish("chat:a", 3)
            assert [m["seq"] for m in await client.realtime.history("chat:a")] == [1, 2, 3]
        finally:
            client.close()
        platform.worker.refresh()  # type: ignore[union-attr]
        assert [(e["channel"], e["data"], e.get("seq")) for e in events] == [
            ("chat:a", 1, 1), ("other", "broadcast only", None), ("chat:a", 2, 2), ("chat:a", 3, 3)
        ]  # fmt: skip
        assert [m["seq"] for m in await platform.realtime.history("chat:a")] == [1, 2, 3]


async def test_replay_is_capped(data_dir: Path, clock: FakeClock) -> None:
    big = HistoryConfig(("log",), max_messages=MAX_REPLAY + 10)
    async with open_platform(data_dir, clock=clock, realtime_history=big) as platform:
        for i in range(MAX_REPLAY + 5):
            await platform.realtime.publish("log", i)
        assert len(await platform.realtime.history("log")) == MAX_REPLAY
        assert len(await platform.realtime.history("log", limit=10_000)) == MAX_REPLAY


async def test_presence(platform: Platform, clock: FakeClock) -> None:
    presence = platform.realtime.presence
    events = heard(platform)
    assert await presence.join("room", "ann", {"name": "Ann"}) is True
    assert await presence.join("room", "ann", {"name": "Annie"}) is False
    assert await presence.join("room", "bob") is True
    assert await presence.members("room") == [
        {"userId": "ann", "metadata": {"name": "Annie"}, "lastSeen": clock.now_ms()},
        {"userId": "bob", "metadata": None, "lastSeen": clock.now_ms()},
    ]
    assert await platform.realtime.channels() == ["room"]
    assert await presence.leave("room", "ann") is True
    assert await presence.leave("room", "ann") is False
    assert [e["event"] for e in events] == [
        "presence:join", "presence:join", "presence:join", "presence:leave"
    ]  # fmt: skip
    assert await presence.leave("room", "bob") is True
    assert await platform.realtime.channels() == []


async def test_a_new_worker_resets_presence(data_dir: Path, clock: FakeClock) -> None:
    async with open_platform(data_dir, clock=clock) as platform:
        await platform.realtime.presence.join("room", "ann")
    async with open_platform(data_dir, clock=clock) as platform:
        assert await platform.realtime.presence.members("room") == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda rt: rt.publish("", 1), "non-empty string"),
        (lambda rt: rt.publish("a\nb", 1), "printable"),
        (lambda rt: rt.publish("x" * 300, 1), "at most 256"),
        (lambda rt: rt.publish("c", {1, 2}), "channel 'c'"),
        (lambda rt: rt.publish("c", 1, user_id=""), "user id"),
        (lambda rt: rt.presence.join("c", 5), "user id"),
        (lambda rt: rt.history("c", limit=-1), "limit"),
        (lambda rt: rt.history("c", after="x"), "after"),
        (lambda rt: rt.publish(SIGNALS_CHANNEL, {"payload": 1}), '"type"'),
    ],
)
async def test_bad_input_is_refused_naming_it(platform: Platform, call: Any, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        await call(platform.realtime)
    assert await platform.realtime.channels() == []


@define_workflow({"id": "approval"})
async def approval(input: Any, step: Any, ctx: Any) -> Any:
    return await step.wait_for_event("wait", type="approved", match={"id": input["id"]})


async def test_signals_channel_both_ways(data_dir: Path, clock: FakeClock) -> None:
    async with open_platform(data_dir, workflows=[approval], clock=clock) as platform:
        events = heard(platform)
        first = await platform.workflows.start("approval", {"id": 1})
        second = await platform.workflows.start("approval", {"id": 2})
        await platform.settle()
        # Publishing to the channel sends the event to waiting runs...
        await platform.realtime.publish(SIGNALS_CHANNEL, {"type": "approved", "payload": {"id": 1}})
        assert await first.result(timeout=10) == {"id": 1}
        # ... and send_event is visible on it, with its count.
        assert await platform.workflows.send_event("approved", {"id": 2}) == 1
        assert await second.result(timeout=10) == {"id": 2}
        assert await platform.workflows.send_event("approved", {"id": 3}) == 0
        assert [e["data"] for e in events if e["channel"] == SIGNALS_CHANNEL] == [
            {"type": "approved", "payload": {"id": 1}, "count": 1},
            {"type": "approved", "payload": {"id": 2}, "count": 1},
            {"type": "approved", "payload": {"id": 3}, "count": 0},
        ]


async def test_ctx_realtime_in_workflows(data_dir: Path, clock: FakeClock) -> None:
    async def announce(input: Any, step: Any, ctx: Any) -> None:
        await step.run("say", lambda: ctx.realtime.publish("news", {"hi": input}))

    wf = define_workflow({"id": "announce"}, announce)
    async with open_platform(data_dir, workflows=[wf], clock=clock) as platform:
        events = heard(platform)
        await (await platform.workflows.start("announce", "there")).result(timeout=10)
        assert [e["data"] for e in events] == [{"hi": "there"}]


async def test_ctx_realtime_and_auth_in_handlers(data_dir: Path, clock: FakeClock) -> None:
    from platform_shim.events import define_event

    @define_event({"t": "greet"})
    async def greet(event: Any, ctx: Any) -> None:
        await ctx.realtime.publish("greetings", event["data"])
        assert ctx.auth is ctx.platform.auth

    async with open_platform(data_dir, handlers=[greet], clock=clock) as platform:
        events = heard(platform)
        await platform.events.publish("greet", {"to": "ann"})
        await platform.settle()
        assert [e["data"] for e in events] == [{"to": "ann"}]
